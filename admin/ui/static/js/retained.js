// retained.js: retained messages by topic filter (GET /api/v1/retained)
// and one message (GET /api/v1/retained/message) with its payload as
// text, hex or JSON (retained.payload) and its properties; delete with
// retained.delete. User properties are shown only when the API sends
// them, which it does only to users with userproperties.view.

import * as api from "./api.js";
import { el, replace, help, table, fields, fmtBytes, fmtNumber, fmtDuration } from "./dom.js";

const pageSize = 100;

export function render(root, route, ctx) {
  if (route.rest[0] === "message") return message(root, route.params, ctx);
  return list(root, route.params, ctx);
}

function list(root, params, ctx) {
  const filter = params.get("filter") || "#";
  const input = el("input", { id: "retained-filter", name: "filter", value: filter, spellcheck: "false" });
  const result = el("div", { id: "retained-result" }, el("p", { class: "muted" }, "Loading…"));
  replace(root,
    el("h1", {}, "Retained messages"),
    help("The last retained message of each topic, which the broker sends to every new subscriber of a matching filter. ",
      "Filter with MQTT wildcards: ", el("code", {}, "+"), " matches one topic level, ", el("code", {}, "#"),
      " every level below (", el("code", {}, "sensors/+/temperature"), ", ", el("code", {}, "sensors/#"), ")."),
    el("form", { class: "search", onsubmit: (ev) => {
      ev.preventDefault();
      ctx.go("#/retained" + api.query({ filter: input.value || "#" }));
    } }, el("label", {}, "Topic filter", input), el("button", { type: "submit", id: "retained-search", class: "primary" }, "List")),
    result);

  const cursors = [""];
  let page = 0;
  let stopped = false;
  async function load() {
    try {
      const data = await api.get("/retained" + api.query({ filter, after: cursors[page], limit: pageSize }));
      if (stopped) return;
      cursors[page + 1] = data.next || "";
      const rows = (data.messages || []).map((m) => el("tr", { "data-topic": m.topic },
        el("td", {}, el("a", { class: "topic-link", href: "#/retained/message" + api.query({ topic: m.topic }) }, m.topic)),
        el("td", { class: "num" }, m.qos),
        el("td", { class: "num" }, fmtBytes(m.payload_size)),
        el("td", {}, m.content_type || ""),
        el("td", {}, payloadFormat(m.payload_format))));
      replace(result,
        el("p", { class: "count" }, rows.length ? `${fmtNumber(page * pageSize + 1)}–${fmtNumber(page * pageSize + rows.length)} of ${fmtNumber(data.total)}` : ""),
        table(["Topic", "QoS", "Payload", "Content type", "Payload format"], rows,
          "No retained message matches this filter.", { class: "retained" }),
        el("div", { class: "pager" },
          el("button", { type: "button", disabled: page === 0, onclick: () => { page--; load(); } }, "← Previous"),
          el("button", { type: "button", disabled: !data.next, onclick: () => { page++; load(); } }, "Next →")));
    } catch (e) {
      if (!stopped) {
        replace(result);
        ctx.fail(e);
      }
    }
  }
  load();
  return () => {
    stopped = true;
  };
}

function payloadFormat(v) {
  if (v === 1 || v === "utf-8" || v === "utf8") return "UTF-8 text";
  if (v === 0 || v === "bytes" || v === "" || v === undefined || v === null) return "unspecified";
  return String(v);
}

function message(root, params, ctx) {
  const topic = params.get("topic") || "";
  // encoding is what the address asks for; "" lets the broker choose
  // (text, or hex when the payload is not UTF-8), and the answer says
  // which it chose.
  let encoding = params.get("encoding") || "";
  const box = el("div", { id: "retained-message" }, el("p", { class: "muted" }, "Loading…"));
  replace(root,
    el("p", { class: "crumbs" }, el("a", { href: "#/retained" }, "← Retained messages")),
    el("h1", {}, "Retained message on ", el("code", { id: "retained-topic" }, topic)),
    box);
  let stopped = false;
  // last is the message as last shown: its properties and Delete stay
  // when the payload cannot be shown in another encoding.
  let last = null;

  async function load() {
    try {
      const m = await api.get("/retained/message" + api.query({ topic, encoding }));
      if (stopped) return;
      if (m.encoding) encoding = m.encoding;
      last = m;
      show(m, null);
    } catch (e) {
      if (stopped) return;
      if (e.status === 404) {
        last = null;
        replace(box, el("p", { id: "retained-gone" }, `No retained message on topic "${topic}" (deleted, expired, or never retained).`));
        return;
      }
      if (e.status === 400 && encoding) {
        // the payload is not valid in this encoding: say so beside the
        // switch, so that another encoding can be chosen, keeping the
        // message's properties and actions
        if (!last) {
          try {
            last = await api.get("/retained/message" + api.query({ topic }));
          } catch {
            // the error below says what is wrong with the first answer
          }
          if (stopped) return;
        }
        show(last, e.message);
        return;
      }
      replace(box);
      ctx.fail(e);
    }
  }

  function switcher() {
    return el("div", { class: "segmented", role: "group", "aria-label": "Payload encoding" },
      ["text", "hex", "json"].map((enc) => el("button", {
        type: "button", id: "encoding-" + enc, class: enc === encoding ? "on" : "",
        "aria-pressed": enc === encoding ? "true" : "false",
        onclick: () => {
          encoding = enc;
          history.replaceState(null, "", "#/retained/message" + api.query({ topic, encoding }));
          load();
        },
      }, { text: "Text", hex: "Hex", json: "JSON" }[enc])));
  }

  function show(m, payloadError) {
    const parts = [];
    if (m && ctx.can("retained.delete")) {
      parts.push(el("div", { class: "actions" },
        el("button", { type: "button", id: "retained-delete", class: "danger", onclick: remove }, "Delete")));
    }
    let payload;
    if (payloadError) {
      // the error stands in the payload's place, beside the switch
      payload = el("p", { class: "error", id: "payload-error" }, payloadError);
    } else if (!m || m.payload_hidden || !ctx.can("retained.payload")) {
      payload = el("p", { class: "muted", id: "payload-hidden" },
        "The payload is hidden: your roles lack the permission retained.payload.");
    } else {
      let text = m.payload === undefined || m.payload === null ? "" : m.payload;
      if (encoding === "json" && typeof text !== "string") text = JSON.stringify(text, null, 2);
      payload = el("pre", { id: "payload", class: "code payload" }, text === "" ? el("span", { class: "muted" }, "(empty)") : text);
    }
    parts.push(el("h2", {}, "Payload"));
    if (ctx.can("retained.payload")) {
      parts.push(switcher(),
        help("Text shows the payload as UTF-8, Hex byte by byte, JSON indented; the broker says when the payload is not valid in the chosen form."));
    }
    parts.push(payload);
    if (m) {
      parts.push(el("h2", {}, "Properties"), fields([
        ["QoS", m.qos],
        ["Payload size", fmtBytes(m.payload_size)],
        ["Content type", m.content_type || ""],
        ["Payload format", payloadFormat(m.payload_format)],
        ["Message expiry", m.message_expiry ? `${fmtDuration(m.message_expiry)} left` : "none", "seconds left before the broker discards it"],
        ["Response topic", ctx.can("retained.payload") ? m.response_topic || "" : "hidden (needs the permission retained.payload)"],
        ["Correlation data", !ctx.can("retained.payload") ? "hidden (needs the permission retained.payload)" : m.correlation_data ? el("code", {}, m.correlation_data) : ""],
      ], { id: "retained-properties" }));
      if (Array.isArray(m.user_properties)) {
        parts.push(el("section", { id: "user-properties" }, el("h2", {}, "User properties"),
          table(["Key", "Value"], m.user_properties.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.key)), el("td", {}, el("code", {}, p.value)))),
            "No user property.")));
      }
    }
    replace(box, parts);
  }

  async function remove() {
    const ok = await ctx.confirm("Delete this retained message?",
      `The retained message on "${topic}" is removed: new subscribers no longer receive it. Clients that have it already keep it. This cannot be undone.`,
      "Delete");
    if (!ok) return;
    await ctx.act(() => api.del("/retained/message" + api.query({ topic })),
      `Retained message on ${topic} deleted.`, () => ctx.go("#/retained"));
  }

  load();
  return () => {
    stopped = true;
  };
}
