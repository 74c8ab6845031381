// subscriptions.js: the sessions subscribed with exactly a topic filter
// (GET /api/v1/subscriptions?filter=), each linking to its client.

import * as api from "./api.js";
import { el, replace, help, table } from "./dom.js";

export function render(root, route, ctx) {
  const filter = route.params.get("filter") || "";
  const input = el("input", { id: "subscriptions-filter", name: "filter", value: filter, placeholder: "e.g. sensors/+/temperature", spellcheck: "false", required: true });
  const result = el("div", { id: "subscriptions-result" });
  replace(root,
    el("p", { class: "crumbs" }, el("a", { href: "#/clients" }, "← Clients")),
    el("h1", {}, "Subscribers of a topic filter"),
    help("The sessions subscribed with exactly this filter, as they wrote it (", el("code", {}, "sensors/#"),
      " is not ", el("code", {}, "sensors/+"), "), connected or offline, with the options of their subscription."),
    el("form", { class: "search", onsubmit: (ev) => {
      ev.preventDefault();
      ctx.go("#/subscriptions" + api.query({ filter: input.value }));
    } }, el("label", {}, "Topic filter", input), el("button", { type: "submit", class: "primary", id: "subscriptions-search" }, "Find subscribers")),
    result);
  if (!filter) return;
  let stopped = false;
  (async () => {
    try {
      const data = await api.get("/subscriptions" + api.query({ filter }));
      if (stopped) return;
      const rows = (data.subscribers || []).map((s) => el("tr", { "data-client": s.client_id },
        el("td", {}, el("a", { href: "#/clients/" + api.seg(s.client_id), class: "client-link" }, s.client_id)),
        el("td", { class: "num" }, s.qos), el("td", {}, s.no_local ? "yes" : "no"),
        el("td", {}, s.retain_as_published ? "yes" : "no"), el("td", { class: "num" }, s.retain_handling),
        el("td", { class: "num" }, s.identifier || "")));
      replace(result, table(["Client id", "QoS", "No local", "Retain as published", "Retain handling", "Subscription id"], rows,
        "No session subscribes with exactly this filter."));
    } catch (e) {
      if (!stopped) ctx.fail(e);
    }
  })();
  return () => {
    stopped = true;
  };
}
