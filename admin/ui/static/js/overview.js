// overview.js: the broker at a glance. It polls /api/v1/broker every two
// seconds while the page is open and draws connections, message rates and
// the stress level on canvas charts; the broker's warnings (no security
// extension, allow-all loaded) go to the red banner at the top.

import * as api from "./api.js";
import { el, replace, help, table, fields, fmtTime, fmtDuration, fmtNumber, fmtBytes, hashLink } from "./dom.js";
import { LineChart } from "./chart.js";
import { Poller } from "./poll.js";

// interval is the polling period in milliseconds.
const interval = 2000;

// labels name the summary's figures; keys not listed are shown by name.
const labels = {
  connections: ["Connected clients", "clients with an open network connection"],
  sessions: ["Sessions", "connected clients and the stored sessions of offline ones"],
  sessions_offline: ["Offline sessions", "stored sessions whose client is not connected"],
  subscriptions: ["Subscriptions", "topic filters the sessions hold, online and offline; a shared subscription once per member"],
  queued: ["Queued messages", "waiting for offline clients, or beyond a client's in-flight window"],
  retained: ["Retained messages", "one per topic at most"],
  messages_received: ["Messages received", "PUBLISH packets from clients since start"],
  messages_sent: ["Messages sent", "PUBLISH packets to clients since start"],
  messages_dropped: ["Messages dropped", "discarded since start: queue full, too large for the client, expired"],
  bytes_received: ["Bytes received", "since start, every packet", "bytes"],
  bytes_sent: ["Bytes sent", "since start, every packet", "bytes"],
  connects_accepted: ["Connections accepted", "CONNECT packets accepted since start"],
  connects_refused: ["Connections refused", "CONNECT packets refused since start (bad credentials, no security extension, ...)"],
};

export function render(root, route, ctx) {
  const conn = el("canvas", { id: "chart-connections", class: "chart", "aria-label": "connected clients over time" });
  const rates = el("canvas", { id: "chart-rates", class: "chart", "aria-label": "messages per second over time" });
  const stress = el("canvas", { id: "chart-stress", class: "chart", "aria-label": "stress level over time" });
  const facts = el("div", { id: "broker-facts" });
  const summary = el("div", { id: "broker-summary" });
  const exts = el("div", { id: "overview-extensions" });
  // Shown on a cluster node only (/api/v1/broker names the node).
  const clusterBox = el("div", { id: "overview-cluster" });
  const clusterSection = el("section", { hidden: true }, el("h2", {}, "Cluster"),
    help("The cluster as this node sees it (GET /api/v1/cluster, `propolis cluster status`); docs/cluster.md explains the states."),
    clusterBox);
  const cfg = ctx.can("config.view") ? configSection(ctx) : null;

  replace(root,
    el("h1", {}, "Overview"),
    help("Live figures of this broker, refreshed every two seconds while this page is open and visible. The charts keep the last three minutes."),
    el("section", { class: "charts" },
      el("figure", {}, el("figcaption", {}, "Connected clients"), conn),
      el("figure", {}, el("figcaption", {}, "Messages per second"), rates),
      el("figure", {}, el("figcaption", {}, "Stress level (0 idle to 10 overloaded)"), stress)),
    el("div", { class: "columns" },
      el("section", {}, el("h2", {}, "Broker"), facts),
      el("section", {}, el("h2", {}, "Totals"), summary)),
    clusterSection,
    ctx.can("extensions.view") ? el("section", {}, el("h2", {}, "Extensions"), exts) : null,
    cfg);

  const connChart = new LineChart(conn, [{ label: "connected" }]);
  const rateChart = new LineChart(rates, [{ label: "received/s" }, { label: "sent/s" }]);
  const stressChart = new LineChart(stress, [{ label: "stress", color: "#b3261e" }], { max: 10 });

  let prev = null;
  let stopped = false;
  let failed = ""; // the error this page's last poll showed, until a poll succeeds

  async function tick() {
    try {
      const b = await api.get("/broker");
      if (stopped) return;
      ctx.warnings(b.warnings, b.cluster_mismatch, b.node);
      const s = b.summary || {};
      const now = performance.now();
      let rin = null, rout = null;
      if (prev) {
        const dt = (now - prev.t) / 1000;
        const din = s.messages_received - prev.s.messages_received;
        const dout = s.messages_sent - prev.s.messages_sent;
        if (dt > 0 && din >= 0) rin = din / dt;
        if (dt > 0 && dout >= 0) rout = dout / dt;
      }
      prev = { t: now, s };
      connChart.push([numberOr(s.connections)]);
      rateChart.push([rin, rout]);
      stressChart.push([numberOr(b.stress_level)]);
      showFacts(facts, b);
      showSummary(summary, s);
      clusterSection.hidden = !b.node;
      if (b.node) {
        const st = await api.get("/cluster");
        if (stopped) return;
        ctx.nodeHealth(st.healthy, st.problems);
        showCluster(clusterBox, st);
      }
      if (ctx.can("extensions.view")) showExtensions(exts, await api.get("/extensions"));
      if (failed && !stopped) {
        ctx.clear(failed); // polling recovered: the error no longer holds
        failed = "";
      }
    } catch (e) {
      if (!stopped) failed = ctx.fail(e);
    }
  }
  const poller = new Poller(tick, interval);
  poller.now();
  return () => {
    stopped = true;
    poller.stop();
  };
}

function numberOr(v) {
  return typeof v === "number" ? v : null;
}

function showFacts(box, b) {
  const sec = b.security_extensions || [];
  replace(box, fields([
    ["Version", b.version, b.abi ? `extension ABI ${b.abi}` : ""],
    ["Started", fmtTime(b.started_at), b.uptime_seconds !== undefined ? `up ${fmtDuration(b.uptime_seconds)}` : ""],
    ["Stress level", typeof b.stress_level === "number" ? `${b.stress_level.toFixed(1)} / 10` : undefined,
      "0 is idle, 10 overloaded; from overload.throttle_level on, the broker slows the heaviest senders down", "stress-level"],
    ["Security extensions", sec.length ? sec.join(", ") : el("span", { class: "error" }, "none: every CONNECT is refused"),
      "the extensions that decide who may connect"],
  ]), el("h3", {}, "Listeners"),
  table(["Name", "Type", "Address"], (b.listeners || []).map((l) =>
    el("tr", {}, el("td", {}, l.name), el("td", {}, l.type), el("td", {}, el("code", {}, l.address)))),
  "No MQTT listener is open."));
}

// showCluster draws the cluster's status: health and problems, the
// replication factor, the nodes and the streams and buckets.
function showCluster(box, st) {
  const problems = st.problems || [];
  replace(box, fields([
    ["Cluster", st.cluster],
    ["This node", st.node],
    ["Health", st.healthy ? el("span", { class: "state running" }, "healthy") : el("span", { class: "state failed" }, "UNHEALTHY"),
      problems.length ? problems.join("; ") : "", "cluster-health"],
    ["Replication factor", `${st.replicas} in force`, `cluster.replicas is ${st.configured_replicas}, capped by the number of nodes`],
  ]), el("h3", {}, "Nodes"),
  table(["Node", "State", "Version", "Stress", "Clients", "Last seen"], (st.nodes || []).map((n) =>
    el("tr", { "data-node": n.name }, el("td", {}, n.name), el("td", {}, el("span", { class: "state " + (n.state === "alive" ? "running" : "failed") }, n.state)),
      el("td", {}, n.version || "-"), el("td", { class: "num" }, n.registered ? n.stress.toFixed(1) : "-"),
      el("td", { class: "num" }, n.registered ? fmtNumber(n.clients) : "-"), el("td", {}, n.last_seen ? fmtTime(n.last_seen) : "-"))),
  "No node is known."),
  el("h3", {}, "Streams and buckets"),
  table(["Name", "Kind", "Replicas", "Leader", "Messages", "Health"], (st.streams || []).map((x) =>
    el("tr", {}, el("td", {}, x.name), el("td", {}, x.kind), el("td", { class: "num" }, String(x.replicas)), el("td", {}, x.leader || "-"),
      el("td", { class: "num" }, fmtNumber(x.messages)), el("td", {}, x.healthy ? "ok" : el("span", { class: "error" }, x.problem)))),
  "No stream yet."));
}

function showSummary(box, s) {
  // the figures named in labels first, in that order, then the others
  const known = Object.keys(labels).filter((k) => k in s);
  const rest = Object.keys(s).filter((k) => !(k in labels)).sort();
  const rows = known.concat(rest).map((k) => {
    const v = s[k];
    const [label, explain, unit] = labels[k] || [k.replace(/_/g, " "), ""];
    return el("tr", { "data-key": k }, el("th", { scope: "row" }, label, explain ? el("span", { class: "help" }, explain) : null),
      el("td", { class: "num" }, unit === "bytes" ? fmtBytes(v) : fmtNumber(v)));
  });
  replace(box, table(["Figure", "Value"], rows, "The broker reported no totals."));
}

function showExtensions(box, data) {
  const list = (data && data.extensions) || [];
  replace(box, table(["Extension", "Version", "State"], list.map((x) =>
    el("tr", {}, el("td", {}, hashLink("#/extensions", x.id)), el("td", {}, x.version),
      el("td", {}, el("span", { class: "state " + x.state }, x.state), x.reason ? el("span", { class: "help" }, x.reason) : null))),
  "No extension is installed: with no security extension every CONNECT is refused."));
}

// configSection shows the configuration in effect (config.view), loaded
// when the user opens it.
function configSection(ctx) {
  const pre = el("pre", { id: "config-json", class: "code" }, "Loading…");
  const d = el("details", { class: "config" },
    el("summary", {}, "Configuration in effect"),
    help("As the broker runs it, secrets (password hashes, token hashes) replaced by REDACTED."),
    pre);
  let loaded = false;
  d.addEventListener("toggle", async () => {
    if (!d.open || loaded) return;
    loaded = true;
    try {
      pre.textContent = JSON.stringify(await api.get("/broker/config"), null, 2);
    } catch (e) {
      loaded = false;
      pre.textContent = "";
      ctx.fail(e);
    }
  });
  return el("section", {}, d);
}
