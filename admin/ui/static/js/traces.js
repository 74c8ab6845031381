// traces.js: trace recordings (trace.manage). Start one (POST
// /api/v1/traces) with a client id pattern, a topic filter, the packet
// types and a duration and size limit; list them (refreshed every two
// seconds while open), stop, delete, and download one or all as a zip.

import * as api from "./api.js";
import { el, replace, help, table, fmtTime, fmtBytes, fmtNumber, fmtDuration, isTime } from "./dom.js";
import { Poller } from "./poll.js";

const interval = 2000;

// packetTypes are the MQTT packet types a recording can select.
const packetTypes = ["CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
  "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"];

export function render(root, route, ctx) {
  const clientID = el("input", { id: "trace-client", name: "client_id", placeholder: "all clients", spellcheck: "false" });
  const topic = el("input", { id: "trace-topic", name: "topic_filter", placeholder: "all topics", spellcheck: "false" });
  const duration = el("input", { id: "trace-duration", name: "duration", type: "number", min: "1", max: "86400", value: "600" });
  const maxMiB = el("input", { id: "trace-max", name: "max_mib", type: "number", min: "0", step: "1", value: "0" });
  const boxes = packetTypes.map((p) => el("input", { type: "checkbox", value: p, "data-packet": p }));
  const result = el("div", { id: "traces-result" }, el("p", { class: "muted" }, "Loading…"));
  const form = el("form", { class: "trace-form card", id: "trace-start", onsubmit: start },
    el("h2", {}, "Start a recording"),
    el("div", { class: "grid" },
      el("label", {}, "Client id pattern", clientID,
        el("span", { class: "help" }, "a glob: ", el("code", {}, "sensor-*"), ", ", el("code", {}, "app-?"), "; empty records every client")),
      el("label", {}, "Topic filter", topic,
        el("span", { class: "help" }, "matched against PUBLISH topics and SUBSCRIBE filters, with MQTT wildcards; empty records every topic")),
      el("label", {}, "Duration (seconds)", duration, el("span", { class: "help" }, "1 to 86400; the recording stops by itself after it")),
      el("label", {}, "Size limit (MiB)", maxMiB, el("span", { class: "help" }, "0: the default, 64 MiB; never more than trace.max_total_size"))),
    el("fieldset", { class: "packets" }, el("legend", {}, "Packet types (none ticked: every type)"),
      boxes.map((b) => el("label", { class: "check" }, b, b.value))),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", id: "trace-submit" }, "Start recording")));

  replace(root,
    el("h1", {}, "Trace recordings"),
    help("A recording writes every matching MQTT packet, in and out, with its time, client id, direction and decoded fields, to files in the broker's data folder ",
      "(one JSON object per line). It stops at its duration or size limit, or when you stop it. Recording costs nothing while none runs. ",
      "Passwords are never recorded", ctx.can("userproperties.view") ? "." : "; user properties are left out of your downloads, as your roles lack userproperties.view."),
    form,
    el("div", { class: "list-head" }, el("h2", {}, "Recordings"),
      el("button", { type: "button", id: "trace-download-all", onclick: () => save(api.download("/traces/download", "propolis-traces.zip")) }, "Download all (zip)")),
    result);

  let stopped = false;
  let failed = ""; // the error the last poll showed, until one succeeds
  const poller = new Poller(load, interval);

  async function start(ev) {
    ev.preventDefault();
    const body = {
      client_id: clientID.value,
      topic_filter: topic.value,
      packets: boxes.filter((b) => b.checked).map((b) => b.value),
      duration_seconds: Number(duration.value) || 0,
      max_bytes: Math.round((Number(maxMiB.value) || 0) * 1024 * 1024),
    };
    await ctx.act(() => api.post("/traces", body),
      (r) => `Recording ${r && r.id ? r.id + " " : ""}started.`, () => poller.now());
  }

  async function load() {
    try {
      const data = await api.get("/traces");
      if (stopped) return;
      form.hidden = false;
      show(data.recordings || []);
      if (failed) {
        ctx.clear(failed);
        failed = "";
      }
    } catch (e) {
      if (stopped) return;
      if (e.status === 409) {
        // recordings are off in this broker's configuration
        form.hidden = true;
        replace(result, el("p", { class: "error", id: "traces-off" }, e.message));
      } else {
        failed = ctx.fail(e);
      }
    }
  }

  // save awaits a download (api.download: the CSRF header, not a token
  // in the address); a refusal shows the API's own message.
  async function save(downloading) {
    try {
      await downloading;
    } catch (e) {
      ctx.fail(e);
    }
  }

  function show(list) {
    const rows = list.map((r) => {
      const s = spec(r);
      const running = r.state === "recording";
      return el("tr", { "data-recording": r.id },
        el("td", {}, el("code", {}, r.id)),
        el("td", {}, el("span", { class: "state " + (running ? "running" : "stopped") }, r.state),
          !running && r.stop_reason ? el("span", { class: "help" }, r.stop_reason) : null),
        el("td", {}, describe(s)),
        el("td", {}, fmtTime(r.started_at), isTime(r.stopped_at) ? el("span", { class: "help" }, "stopped " + fmtTime(r.stopped_at)) : null),
        el("td", { class: "num" }, fmtNumber(r.packets)),
        el("td", { class: "num" }, fmtBytes(r.bytes), r.files ? el("span", { class: "help" }, `${r.files} file${r.files === 1 ? "" : "s"}`) : null),
        el("td", { class: "row-actions" },
          running ? el("button", { type: "button", "data-action": "stop", onclick: () => stopRec(r) }, "Stop") : null,
          el("button", { type: "button", "data-action": "download", onclick: () => save(api.download(`/traces/${api.seg(r.id)}/download`, `propolis-trace-${r.id}.zip`)) }, "Download"),
          running ? null : el("button", { type: "button", class: "danger", "data-action": "delete", onclick: () => remove(r) }, "Delete")));
    });
    replace(result, table(["Recording", "State", "Selects", "Started", "Packets", "Size", ""], rows,
      "No recording yet: start one above.", { class: "traces" }));
  }

  async function stopRec(r) {
    await ctx.act(() => api.post(`/traces/${api.seg(r.id)}/stop`), `Recording ${r.id} stopped.`, () => poller.now());
  }

  async function remove(r) {
    const ok = await ctx.confirm(`Delete recording ${r.id}?`,
      "Its files are removed from the data folder. Download it first if you need it. This cannot be undone.", "Delete");
    if (!ok) return;
    await ctx.act(() => api.del(`/traces/${api.seg(r.id)}`), `Recording ${r.id} deleted.`, () => poller.now());
  }

  poller.now();
  return () => {
    stopped = true;
    poller.stop();
  };
}

// spec returns a recording's selection, whether the API nests it under
// "spec" or not.
function spec(r) {
  return r.spec || r;
}

// describe says in words what a recording selects.
function describe(s) {
  const who = s.client_id ? `clients ${s.client_id}` : "every client";
  const what = s.topic_filter ? `topics ${s.topic_filter}` : "every topic";
  const types = Array.isArray(s.packet_types || s.packets) && (s.packet_types || s.packets).length
    ? (s.packet_types || s.packets).join(", ") : "every packet type";
  const dur = s.duration_seconds ? `for ${fmtDuration(s.duration_seconds)}` : "";
  const max = s.max_bytes ? `up to ${fmtBytes(s.max_bytes)}` : "";
  return [who, what, types, dur, max].filter((x) => x).join("; ");
}
