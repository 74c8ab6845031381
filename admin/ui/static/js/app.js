// app.js: the control center's entry point. It asks /api/v1/me who is
// logged in (the login page when nobody is), shows the pages that user's
// permissions allow, and routes on the URL's hash:
//
//   #/login                      log in
//   #/overview                   broker, live charts, warnings   (broker.view)
//   #/clients?prefix=&...        search sessions                 (clients.view)
//   #/clients/ID                 one session                     (clients.view)
//   #/subscriptions?filter=      subscribers of a filter         (clients.view)
//   #/retained?filter=           retained messages               (retained.view)
//   #/retained/message?topic=    one retained message            (retained.view)
//   #/extensions                 extensions                      (extensions.view)
//   #/traces                     trace recordings                (trace.manage)
//
// A page module exports render(root, route, ctx) and may return a
// function that stops it (timers) when the user leaves the page.

import * as api from "./api.js";
import { el, replace } from "./dom.js";
import * as login from "./login.js";
import * as overview from "./overview.js";
import * as clients from "./clients.js";
import * as subscriptions from "./subscriptions.js";
import * as retained from "./retained.js";
import * as extensions from "./extensions.js";
import * as traces from "./traces.js";

// pages maps the first path segment to its module and the permission
// that shows it.
const pages = {
  overview: { mod: overview, perm: "broker.view" },
  clients: { mod: clients, perm: "clients.view" },
  subscriptions: { mod: subscriptions, perm: "clients.view", nav: "clients" },
  retained: { mod: retained, perm: "retained.view" },
  extensions: { mod: extensions, perm: "extensions.view" },
  traces: { mod: traces, perm: "trace.manage" },
};

// me is the answer of /api/v1/me or /api/v1/login: user, auth, roles,
// permissions, csrf_token. null while nobody is logged in.
let me = null;
let stop = null;

// ctx is what pages get: permission checks, messages, confirmation, and
// the warnings banner.
const ctx = {
  can(perm) {
    return !!me && Array.isArray(me.permissions) && me.permissions.includes(perm);
  },
  me() {
    return me;
  },
  ok(text) {
    status(text, false);
  },
  // fail shows an error and returns its text, which clear takes.
  fail(err) {
    const text = err instanceof Error ? err.message : String(err);
    status(text, true);
    return text;
  },
  // clear hides the message bar if it still shows text (an error a
  // polling page showed, once a later poll succeeds).
  clear(text) {
    const s = document.getElementById("status");
    if (!s.hidden && s.textContent === text) s.hidden = true;
  },
  // act runs an operator's action: call (an async API request), then
  // shows done (a text, or a function of call's result returning it) and
  // runs then (the page shows what changed, e.g. poller.now). A refusal
  // shows the API's own message instead. act resolves to that error, or
  // to null when the action succeeded.
  async act(call, done, then) {
    try {
      const r = await call();
      ctx.ok(typeof done === "function" ? done(r) : done);
    } catch (e) {
      ctx.fail(e);
      return e;
    }
    if (then) then();
    return null;
  },
  confirm,
  warnings,
  nodeHealth,
  refreshWarnings,
  // go shows another page from code (after an action); the message bar
  // keeps what the action said.
  go(hash) {
    keepStatus = true;
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  // loggedIn takes the answer of the login and shows the page the user
  // was on when the session ended, if the same user logs in again (the
  // page of another user is not this one's business): else the first.
  loggedIn(who) {
    setMe(who);
    const back = sessionStorage.getItem("propolis.after-login");
    const backUser = sessionStorage.getItem("propolis.after-login-user");
    sessionStorage.removeItem("propolis.after-login");
    sessionStorage.removeItem("propolis.after-login-user");
    const same = !backUser || backUser === who.user;
    ctx.go(back && same && !back.startsWith("#/login") ? back : firstPage());
  },
};

// parse splits "#/clients/a%2Fb?state=connected" into
// {page: "clients", rest: ["a/b"], params: URLSearchParams}.
function parse(hash) {
  let h = hash.replace(/^#\/?/, "");
  let q = "";
  const i = h.indexOf("?");
  if (i >= 0) {
    q = h.slice(i + 1);
    h = h.slice(0, i);
  }
  const parts = h.split("/").filter((p) => p !== "").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { page: parts[0] || "", rest: parts.slice(1), params: new URLSearchParams(q) };
}

function firstPage() {
  for (const [name, p] of Object.entries(pages)) if (ctx.can(p.perm)) return "#/" + name;
  return "#/none";
}

function setMe(who) {
  me = who;
  api.setCSRF(who ? who.csrf_token : "");
  const nav = document.getElementById("nav");
  const whoBox = document.getElementById("who");
  nav.hidden = !who;
  whoBox.hidden = !who;
  for (const a of nav.querySelectorAll("a[data-perm]")) {
    a.hidden = !ctx.can(a.dataset.perm);
  }
  if (who) {
    const roles = (who.roles || []).join(", ");
    const local = who.auth === "local";
    replace(document.getElementById("who-name"),
      el("strong", { id: "who-user" }, who.user),
      roles ? ` (${roles})` : "",
      local ? el("span", { class: "badge warn", title: "No admin users are configured: anyone on this machine can use this page and the API, with every permission. Configure admin.users to require a login." }, "local, no login") : null);
    document.getElementById("logout").hidden = local || who.auth !== "session";
  }
  if (!who) warnings([]);
}

let statusTimer = 0;
// keepStatus: the next route change keeps the message bar (set by ctx.go).
let keepStatus = false;

// status shows text in the message bar (errors stay until the next
// action; other messages for ten seconds).
function status(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "status error" : "status ok";
  s.hidden = false;
  clearTimeout(statusTimer);
  if (!isError) statusTimer = setTimeout(() => (s.hidden = true), 10000);
}

// clearStatus hides the message bar when the user moves to another page,
// unless the move is an action's own (ctx.go).
function clearStatus() {
  if (!keepStatus) document.getElementById("status").hidden = true;
  keepStatus = false;
}

// warnings fills the red banner with the broker's warnings, the amber
// one with the ways the nodes of its cluster differ, and the header's
// node badge with the cluster node's name (all from /api/v1/broker:
// warnings, cluster_mismatch, node); an empty list hides its banner, an
// empty name the badge. The page title names the node too, so that tabs
// on several nodes can be told apart.
function warnings(list, mismatch, node) {
  banner("warnings", list);
  banner("cluster-mismatch", mismatch);
  const badge = document.getElementById("node");
  badge.textContent = node ? `node ${node}` : "";
  badge.hidden = !node;
  document.title = node ? `${node}: Propolis control center` : "Propolis control center";
}

// nodeHealth marks the header's node badge healthy or not (red), with the
// cluster's problems as its title: the overview's reading of
// /api/v1/cluster, kept on the other pages until the overview reads it
// again.
function nodeHealth(healthy, problems) {
  const badge = document.getElementById("node");
  badge.classList.toggle("unhealthy", !healthy);
  badge.title = healthy ? "The cluster node this page is connected to: the cluster is healthy" :
    "The cluster is unhealthy:\n" + (problems || []).join("\n");
}

// banner shows list in the banner id (its list is id-list), or hides it
// when the list is empty.
function banner(id, list) {
  replace(document.getElementById(id + "-list"), (list || []).map((w) => el("li", {}, w)));
  document.getElementById(id).hidden = !list || list.length === 0;
}

// refreshWarnings reads the broker's warnings again (when the user may),
// so that the banners on any page say what holds now: pages that change
// what they warn about (extensions) call it after their action. When the
// broker does not answer, the message bar says the banner may be stale.
let warningsFailed = "";
async function refreshWarnings() {
  if (!ctx.can("broker.view")) return;
  try {
    const b = await api.get("/broker");
    if (!me) return;
    warnings(b.warnings, b.cluster_mismatch, b.node);
    if (warningsFailed) {
      ctx.clear(warningsFailed);
      warningsFailed = "";
    }
  } catch (e) {
    if (me && e.status !== 401) warningsFailed = ctx.fail(`The broker's warnings could not be read: ${e.message}`);
  }
}

// confirm asks before an action: title, text, the OK button's label, and
// extra elements (a checkbox) shown in the dialog. It resolves to true
// when the user confirms.
function confirm(title, text, okLabel, extra) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  replace(document.getElementById("confirm-extra"), extra || []);
  d.returnValue = "";
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
  });
}

// route shows the page of location.hash, then records the hash it showed
// in the body's data-route attribute (tests wait on it before they look
// for the new page's elements).
function route() {
  try {
    show();
  } finally {
    document.body.dataset.route = location.hash;
  }
}

function show() {
  if (stop) {
    stop();
    stop = null;
  }
  clearStatus();
  const r = parse(location.hash);
  const main = document.getElementById("main");
  const navPage = pages[r.page] && pages[r.page].nav ? pages[r.page].nav : r.page;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === navPage);
  }
  if (!me) {
    if (r.page !== "login") {
      sessionStorage.setItem("propolis.after-login", location.hash || "");
      location.hash = "#/login";
      return;
    }
    document.title = "Log in · Propolis";
    login.render(main, r, ctx);
    return;
  }
  if (r.page === "login" || r.page === "") {
    location.hash = firstPage();
    return;
  }
  const p = pages[r.page];
  if (!p) {
    replace(main, el("h1", {}, "Nothing here"),
      el("p", {}, r.page === "none"
        ? "Your roles grant no permission that shows a page of the control center. Ask an administrator for a role with broker.view or clients.view."
        : `There is no page "${r.page}".`));
    return;
  }
  if (!ctx.can(p.perm)) {
    replace(main, el("h1", {}, "Not permitted"),
      el("p", {}, `This page needs the permission ${p.perm}, which your roles do not grant.`));
    return;
  }
  replace(main);
  if (r.page !== "overview") refreshWarnings(); // the overview polls them itself
  const s = p.mod.render(main, r, ctx);
  stop = typeof s === "function" ? s : null;
}

async function start() {
  api.onUnauthorized(() => {
    if (!me) return;
    sessionStorage.setItem("propolis.after-login-user", me.user);
    setMe(null);
    sessionStorage.setItem("propolis.after-login", location.hash || "");
    status("Your session has ended: log in again.", true);
    ctx.go("#/login");
  });
  document.getElementById("logout").addEventListener("click", async () => {
    try {
      await api.post("/logout");
    } catch (e) {
      if (e.status !== 401) {
        // the session may still work: stay logged in, visibly, and say so
        ctx.fail(`Log out failed, you are still logged in: ${e.message}`);
        return;
      }
      // 401: the session had ended already (onUnauthorized showed the login)
    }
    setMe(null);
    ctx.ok("Logged out.");
    ctx.go("#/login");
  });
  try {
    setMe(await api.get("/me"));
  } catch (e) {
    if (e.status !== 401) ctx.fail(e);
    setMe(null);
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
