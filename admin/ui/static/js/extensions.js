// extensions.js: every extension folder with its state (GET
// /api/v1/extensions, refreshed every two seconds while open), and enable
// or disable (extensions.manage): the same action as `propolis extensions
// enable|disable ID`, the DISABLED file in the extension's folder. On a
// node of a cluster, each row also enables or disables the extension on
// every node (POST /api/v1/cluster/extensions/ID/enable|disable, as
// `propolis extensions enable|disable ID --cluster`), each node in its
// own folder.

import * as api from "./api.js";
import { el, replace, help, table } from "./dom.js";
import { Poller } from "./poll.js";

const interval = 2000;

export function render(root, route, ctx) {
  const result = el("div", { id: "extensions-result" }, el("p", { class: "muted" }, "Loading…"));
  replace(root,
    el("h1", {}, "Extensions"),
    help("The WebAssembly extensions in the broker's extensions folder. A disabled extension has a ", el("code", {}, "DISABLED"),
      " file in its folder (as ", el("code", {}, "propolis extensions disable ID"), " makes): the broker stops it within two seconds and ",
      "starts it again once it is enabled. Disabling the only security extension makes the broker refuse every CONNECT."),
    result);
  let stopped = false;
  let failed = ""; // the error the last poll showed, until one succeeds

  async function load() {
    try {
      const data = await api.get("/extensions");
      if (stopped) return;
      show(data.extensions || [], !!data.cluster);
      if (failed) {
        ctx.clear(failed);
        failed = "";
      }
      await ctx.refreshWarnings(); // what the banner warns about follows the extensions' states
    } catch (e) {
      if (!stopped) failed = ctx.fail(e);
    }
  }
  const poller = new Poller(load, interval);

  function show(list, cluster) {
    const manage = ctx.can("extensions.manage");
    const rows = list.map((x) => el("tr", { "data-extension": x.id },
      el("td", {}, el("strong", {}, x.id)),
      el("td", {}, x.version || ""),
      el("td", {}, el("span", { class: "state " + x.state }, x.state),
        x.reason ? el("span", { class: "help reason" }, x.reason) : null),
      el("td", { class: "num" }, x.priority, x.start_priority !== undefined ? el("span", { class: "help" }, `start priority ${x.start_priority}`) : null),
      el("td", {}, names(x.callbacks)),
      el("td", {}, names(x.services)),
      el("td", { class: "num activity" }, activity(x.counters)),
      manage ? el("td", {}, x.disabled
        ? el("button", { type: "button", class: "primary", "data-action": "enable", onclick: () => act(x, "enable") }, "Enable")
        : el("button", { type: "button", class: "danger", "data-action": "disable", onclick: () => act(x, "disable") }, "Disable"),
        cluster ? el("span", { class: "cluster-actions" },
          el("button", { type: "button", "data-action": "cluster-enable", title: "every node of the cluster removes the DISABLED file in its own folder",
            onclick: () => actCluster(x, "enable") }, "Enable on every node"),
          el("button", { type: "button", class: "danger", "data-action": "cluster-disable", title: "every node of the cluster creates the DISABLED file in its own folder",
            onclick: () => actCluster(x, "disable") }, "Disable on every node")) : null) : null));
    replace(result, table(
      [el("span", {}, "Extension"), "Version", "State",
        el("span", { title: "the order of the chains: a higher priority is called first; the start priority orders the starts" }, "Priority"),
        "Callbacks", "Services granted",
        el("span", { title: "calls into the running version and those that failed (each failed closed); below, what else the host counts for it" }, "Activity")].concat(manage ? ["Action"] : []),
      rows, "No extension is installed: with no security extension every CONNECT is refused.", { class: "extensions" }));
  }

  async function act(x, what) {
    if (what === "disable") {
      const ok = await ctx.confirm(`Disable ${x.id}?`,
        `The broker stops ${x.id} within two seconds; its callbacks are no longer called until it is enabled again.` +
        ((x.callbacks || []).includes("authenticate") ? " It authenticates clients: if no other security extension serves, every CONNECT is refused." : ""),
        "Disable");
      if (!ok) return;
    }
    const seg = api.seg(x.id);
    await ctx.act(() => (what === "enable" ? api.post(`/extensions/${seg}/enable`) : api.post(`/extensions/${seg}/disable`)),
      `Extension ${x.id} ${what}d: the broker ${what === "enable" ? "starts" : "stops"} it within two seconds.`,
      () => poller.now());
  }

  // actCluster enables or disables x on every node of the cluster; the
  // message bar names each node, and fails naming those that did not do
  // it (their error, or no answer within 5 s).
  async function actCluster(x, what) {
    if (what === "disable") {
      const ok = await ctx.confirm(`Disable ${x.id} on every node?`,
        `Every node of the cluster stops ${x.id} within two seconds; its callbacks are no longer called on any node until it is enabled again.` +
        ((x.callbacks || []).includes("authenticate") ? " It authenticates clients: a node with no other security extension refuses every CONNECT." : ""),
        "Disable on every node");
      if (!ok) return;
    }
    const seg = api.seg(x.id);
    await ctx.act(async () => {
      const r = await (what === "enable" ? api.post(`/cluster/extensions/${seg}/enable`) : api.post(`/cluster/extensions/${seg}/disable`));
      const nodes = r.nodes || [];
      // The nodes not asked, being not alive, keep their folder as it is.
      const skipped = (r.not_asked || []).map((n) => `${n.node} (${n.reason})`);
      const notAsked = skipped.length ? ` Not asked, not changed there: ${skipped.join("; ")}.` : "";
      if (!r.ok) {
        const failed = nodes.filter((n) => !n.ok).map((n) => `${n.node}: ${n.error}`);
        const done = nodes.filter((n) => n.ok).map((n) => n.node);
        throw new Error(`Extension ${x.id} not ${what}d on every node: ${failed.join("; ")}` +
          (done.length ? ` (${what}d on ${done.join(", ")})` : "") + notAsked);
      }
      return { nodes, notAsked };
    }, ({ nodes, notAsked }) => `Extension ${x.id} ${what}d on ${nodes.length === 1 ? "the one node" : `all ${nodes.length} nodes`} asked (${nodes.map((n) => n.node).join(", ")}): ` +
      `each ${what === "enable" ? "starts" : "stops"} it within two seconds.` + notAsked,
    () => poller.now());
  }

  poller.now();
  return () => {
    stopped = true;
    poller.stop();
  };
}

// activity writes an extension's counters (GET /api/v1/extensions): its
// calls (start and stop not counted) and failed calls, then what else is
// not zero.
function activity(c) {
  if (!c) return "";
  const n = (v) => Number(v || 0).toLocaleString("en-US");
  // [count, singular, plural]
  const more = [
    [c.instances, "instance", "instances"],
    [c.auth_cache_hits, "CONNECT answered from its cache", "CONNECTs answered from its cache"],
    [c.authorize_cache_hits, "authorization from kept verdicts", "authorizations from kept verdicts"],
    [c.instance_waits, "wait for an instance", "waits for an instance"],
    [c.events_dropped, "event dropped", "events dropped"], [c.records_too_large, "record too large", "records too large"],
    [c.ticks_skipped, "tick skipped", "ticks skipped"], [c.reloads, "reload", "reloads"],
    [c.crash_loop_stops, "crash-loop stop", "crash-loop stops"],
  ].filter(([v]) => v > 0).map(([v, one, many]) => `${n(v)} ${v === 1 ? one : many}`);
  return [el("span", { class: c.errors > 0 ? "calls failing" : "calls" }, `${n(c.calls)} ${c.calls === 1 ? "call" : "calls"}, ${n(c.errors)} failed`),
    more.length ? el("span", { class: "help" }, more.join(" · ")) : null];
}

// names writes a list separated by commas, "none" when it is empty.
function names(list) {
  return list && list.length ? list.join(", ") : el("span", { class: "muted" }, "none");
}
