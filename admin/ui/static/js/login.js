// login.js: the login page (POST /api/v1/login). The broker sets an
// HttpOnly session cookie; the answer gives the user's permissions and
// the CSRF token the other pages send.

import * as api from "./api.js";
import { el, replace, help } from "./dom.js";

export function render(root, route, ctx) {
  const user = el("input", { id: "login-user", name: "user", autocomplete: "username", required: true, autofocus: true });
  const pass = el("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = el("p", { id: "login-error", class: "error", role: "alert", hidden: true });
  const button = el("button", { id: "login-submit", type: "submit", class: "primary" }, "Log in");
  const form = el("form", { class: "login card", onsubmit: submit },
    el("h1", {}, "Log in"),
    help("Use an admin user of this broker (configuration section ", el("code", {}, "admin.users"),
      "; passwords are set with ", el("code", {}, "propolis passwd"), "). What you may see and do depends on your roles."),
    el("label", {}, "User", user),
    el("label", {}, "Password", pass),
    error,
    button);

  async function submit(ev) {
    ev.preventDefault();
    error.hidden = true;
    button.disabled = true;
    try {
      const who = await api.post("/login", { user: user.value, password: pass.value });
      ctx.loggedIn(who);
    } catch (e) {
      let text = e.message;
      if (e.status === 401) text = "Wrong user name or password.";
      if (e.status === 429) {
        text = "Too many failed logins" + (e.retryAfter ? `: try again in ${e.retryAfter} s.` : ": try again later.");
      }
      error.textContent = text;
      error.hidden = false;
      pass.value = "";
      pass.focus();
    } finally {
      button.disabled = false;
    }
  }
  replace(root, form);
  user.focus();
}
