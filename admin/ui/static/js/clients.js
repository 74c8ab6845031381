// clients.js: search sessions (GET /api/v1/clients, one page at a time
// with the API's cursor) and one session's detail (GET
// /api/v1/clients/ID) with disconnect (clients.disconnect) and invalidate
// (sessions.invalidate), each asked for in a confirmation dialog.

import * as api from "./api.js";
import { el, replace, help, table, fields, fmtTime, fmtNumber, protocol, isTime } from "./dom.js";

// pageSize is how many sessions one page lists.
const pageSize = 50;

export function render(root, route, ctx) {
  if (route.rest.length > 0) return detail(root, route.rest.join("/"), ctx);
  return list(root, route.params, ctx);
}

function list(root, params, ctx) {
  const q = {
    prefix: params.get("prefix") || "",
    username: params.get("username") || "",
    listener: params.get("listener") || "",
    state: params.get("state") || "all",
  };
  const prefix = el("input", { id: "search-prefix", name: "prefix", value: q.prefix, placeholder: "e.g. sensor-", spellcheck: "false" });
  const username = el("input", { id: "search-username", name: "username", value: q.username, spellcheck: "false" });
  const listener = el("input", { id: "search-listener", name: "listener", value: q.listener, placeholder: "e.g. tcp", spellcheck: "false" });
  const state = el("select", { id: "search-state", name: "state" },
    ["all", "connected", "offline"].map((s) => el("option", { value: s, selected: s === q.state }, s)));
  const result = el("div", { id: "clients-result" }, el("p", { class: "muted" }, "Loading…"));
  const form = el("form", { class: "search", onsubmit: (ev) => {
    ev.preventDefault();
    ctx.go("#/clients" + api.query({ prefix: prefix.value, username: username.value, listener: listener.value, state: state.value === "all" ? "" : state.value }));
  } },
  el("label", {}, "Client id starts with", prefix),
  el("label", {}, "User name (exact)", username),
  el("label", {}, "Listener", listener),
  el("label", {}, "State", state),
  el("button", { type: "submit", id: "search-submit", class: "primary" }, "Search"));

  replace(root,
    el("h1", {}, "Clients"),
    help("Every session the broker keeps: connected clients, and offline ones whose session has not expired yet. ",
      "Open a client to see its limits, subscriptions and session attributes",
      ctx.can("clients.disconnect") || ctx.can("sessions.invalidate") ? ", and to disconnect it or invalidate its session. " : ". ",
      el("a", { href: "#/subscriptions" }, "Who subscribes to a topic filter?")),
    form, result);

  // cursors[i] is the "after" cursor of page i; page 0 starts at "".
  const cursors = [""];
  let page = 0;
  let stopped = false;

  async function load() {
    try {
      const data = await api.get("/clients" + api.query(Object.assign({}, q, {
        state: q.state === "all" ? "" : q.state, after: cursors[page], limit: pageSize,
      })));
      if (stopped) return;
      cursors[page + 1] = data.next || "";
      show(data);
    } catch (e) {
      if (!stopped) {
        replace(result);
        ctx.fail(e);
      }
    }
  }

  function show(data) {
    const rows = (data.clients || []).map((c) => el("tr", { "data-client": c.client_id },
      el("td", {}, el("a", { href: "#/clients/" + api.seg(c.client_id), class: "client-link" }, c.client_id)),
      el("td", {}, c.username || el("span", { class: "muted" }, "—")),
      el("td", {}, el("span", { class: "state " + (c.connected ? "connected" : "offline") }, c.connected ? "connected" : "offline")),
      el("td", {}, c.listener || ""),
      el("td", {}, c.remote_address ? el("code", {}, c.remote_address) : ""),
      el("td", {}, protocol(c.protocol_version)),
      el("td", {}, c.connected ? fmtTime(c.connected_since) : fmtTime(c.offline_since))));
    const from = page * pageSize + 1;
    const to = page * pageSize + rows.length;
    const more = !!data.next;
    replace(result,
      el("p", { class: "count", id: "clients-count" }, rows.length
        ? `${fmtNumber(from)}–${fmtNumber(to)} of ${fmtNumber(data.total)} matching sessions`
        : ""),
      table(["Client id", "User name", "State", "Listener", "Remote address", "Protocol", "Since"], rows,
        "No session matches this search.", { class: "clients" }),
      el("div", { class: "pager" },
        el("button", { type: "button", id: "page-prev", disabled: page === 0, onclick: () => { page--; load(); } }, "← Previous"),
        el("button", { type: "button", id: "page-next", disabled: !more, onclick: () => { page++; load(); } }, "Next →")));
  }

  load();
  return () => {
    stopped = true;
  };
}

// helpText explains each field of the detail.
const helpText = {
  keepalive: "seconds; the broker closes a connection that sends nothing for one and a half times this",
  session_expiry: "seconds the session is kept once the client disconnects (MQTT 5 Session Expiry Interval); 0: removed at disconnect",
  expires_at: "when this offline session will be removed if the client does not come back",
  receive_maximum: "QoS 1 and 2 PUBLISH packets the broker accepts from this client unacknowledged (mqtt.receive_maximum, or the authenticating extension's setting)",
  inflight_window: "QoS 1 and 2 messages the broker sends this client before it waits for acknowledgements: the client's own Receive Maximum, or the window an extension set",
  queued: "messages waiting for the client: while it is offline, or beyond its in-flight window",
  queue_full_policy: "what the broker does with a new message when the queue is full",
  authenticated_by: "the extension whose decision let this client connect (empty for a session restored at start until it reconnects)",
};

function detail(root, id, ctx) {
  let stopped = false;
  const box = el("div", { id: "client-detail" }, el("p", { class: "muted" }, "Loading…"));
  replace(root,
    el("p", { class: "crumbs" }, el("a", { href: "#/clients" }, "← Clients")),
    el("h1", {}, "Client ", el("code", { id: "client-id" }, id)),
    box);

  async function load() {
    try {
      const c = await api.get(`/clients/${api.seg(id)}`);
      if (!stopped) show(c);
    } catch (e) {
      if (stopped) return;
      if (e.status === 404) {
        replace(box, el("p", { id: "client-gone" }, `The broker has no session for client "${id}": it expired, was invalidated, or never existed.`));
        return;
      }
      replace(box);
      ctx.fail(e);
    }
  }

  function show(c) {
    const st = c.connected ? "connected" : "offline";
    const actions = el("div", { class: "actions" },
      c.connected && ctx.can("clients.disconnect")
        ? el("button", { type: "button", id: "disconnect", class: "danger", onclick: () => disconnect(c) }, "Disconnect")
        : null,
      ctx.can("sessions.invalidate")
        ? el("button", { type: "button", id: "invalidate", class: "danger", onclick: () => invalidate(c) }, "Invalidate session")
        : null,
      el("button", { type: "button", id: "refresh", onclick: load }, "Refresh"));
    const subs = (c.subscriptions || []).map((s) => el("tr", {},
      el("td", {}, el("a", { href: "#/subscriptions" + api.query({ filter: s.filter }), title: "every session subscribed with this filter" }, el("code", {}, s.filter))),
      el("td", { class: "num" }, s.qos),
      el("td", {}, s.no_local ? "yes" : "no"), el("td", {}, s.retain_as_published ? "yes" : "no"),
      el("td", { class: "num" }, s.retain_handling), el("td", { class: "num" }, s.identifier || "")));
    const attrs = (c.session_attributes || []).map((a) => el("tr", {},
      el("td", {}, el("code", {}, a.key)),
      el("td", {}, a.value !== undefined && a.value !== null
        ? el("code", {}, a.value)
        : el("span", {}, el("code", {}, a.value_base64 || ""), el("span", { class: "help" }, "binary, base64")))));
    replace(box,
      el("p", {}, el("span", { id: "client-state", class: "state " + st }, st), " ",
        c.connected
          ? `since ${fmtTime(c.connected_since)}`
          : isTime(c.offline_since) ? `since ${fmtTime(c.offline_since)}` : ""),
      // A session read from the cluster's bucket (no session of the id
      // on this node): what the record says and which node had it last.
      c.cluster_state ? el("p", { id: "client-cluster-state" }, `${c.cluster_state}; last node ${c.last_node}. ` +
        "This node has no session of the id: keep-alive, queue and attributes are not known here.") : null,
      actions,
      el("div", { class: "columns" },
        el("section", {}, el("h2", {}, "Connection"), fields([
          ["User name", c.username || "", "", "client-username"],
          ["Protocol", protocol(c.protocol_version)],
          ["Listener", c.listener || ""],
          ["Remote address", c.remote_address ? el("code", {}, c.remote_address) : ""],
          ["Connected since", c.connected ? fmtTime(c.connected_since) : undefined],
          ["Offline since", c.connected ? undefined : fmtTime(c.offline_since)],
          ["Keep alive", c.keepalive === null ? "unknown until the client reconnects (restored at start-up)" : secs(c.keepalive), helpText.keepalive, "client-keepalive"],
          ["Authenticated by", c.authenticated_by || "", helpText.authenticated_by, "client-authenticated-by"],
        ])),
        el("section", {}, el("h2", {}, "Session and limits"), fields([
          ["Session expiry", expiry(c.session_expiry), helpText.session_expiry],
          ["Expires at", isTime(c.expires_at) ? fmtTime(c.expires_at) : undefined, helpText.expires_at],
          ["Receive maximum (from the client)", fmtNumber(c.receive_maximum), helpText.receive_maximum],
          ["In-flight window (to the client)", c.inflight_window ? fmtNumber(c.inflight_window) : "no limit (MQTT 3.1.1)", helpText.inflight_window, "client-inflight-window"],
          ["Queued", `${fmtNumber(c.queued)} of at most ${fmtNumber(c.max_queued)}`, helpText.queued, "client-queued"],
          ["When the queue is full", c.queue_full_policy || "", helpText.queue_full_policy, "client-queue-full-policy"],
        ]))),
      el("h2", {}, "Subscriptions"),
      table(["Topic filter", "QoS", "No local", "Retain as published", "Retain handling", "Subscription id"], subs,
        "No subscription.", { id: "client-subscriptions" }),
      el("h2", {}, "Session attributes"),
      help("Values extensions stored with this session (the session service of the extension ABI)."),
      table(["Key", "Value"], attrs, "No session attribute.", { id: "client-attributes" }));
  }

  async function disconnect(c) {
    const prevent = el("input", { type: "checkbox", id: "prevent-will" });
    const reason = el("input", { id: "disconnect-reason", placeholder: "optional", maxlength: "200" });
    const ok = await ctx.confirm(`Disconnect ${c.client_id}?`,
      "The broker closes this client's connection now (MQTT 5 clients get DISCONNECT reason 0x98, administrative action). " +
      "Its session stays, subscriptions and queued messages included; the client may connect again.",
      "Disconnect",
      [el("label", { class: "check" }, prevent, "Prevent the will message",
        el("span", { class: "help" }, "the client's last will is not published, as if it had disconnected cleanly")),
      el("label", {}, "Reason (MQTT 5 clients see it)", reason)]);
    if (!ok) return;
    const body = { prevent_will: prevent.checked };
    if (reason.value) body.reason = reason.value;
    const e = await ctx.act(() => api.post(`/clients/${api.seg(c.client_id)}/disconnect`, body),
      `Client ${c.client_id} disconnected${body.prevent_will ? " without its will message" : ""}.`, load);
    // 409: not connected any more; 404: no session: the page shows what
    // holds now
    if (e && (e.status === 409 || e.status === 404)) load();
  }

  async function invalidate(c) {
    const ok = await ctx.confirm(`Invalidate the session of ${c.client_id}?`,
      "The broker removes this session: its subscriptions, queued and in-flight messages and session attributes are deleted" +
      (c.connected ? ", and the client is disconnected" : "") +
      ". The client starts with a new, empty session the next time it connects. This cannot be undone.",
      "Invalidate session");
    if (!ok) return;
    const e = await ctx.act(() => api.post(`/clients/${api.seg(c.client_id)}/invalidate`),
      `Session of ${c.client_id} invalidated.`, load);
    if (e && e.status === 404) load();
  }

  load();
  return () => {
    stopped = true;
  };
}

function secs(v) {
  if (v === undefined || v === null) return undefined;
  return v === 0 ? "0 (off)" : `${fmtNumber(v)} s`;
}

function expiry(v) {
  if (v === undefined || v === null) return undefined;
  if (v === 4294967295) return "never (kept until invalidated)";
  return `${fmtNumber(v)} s`;
}
