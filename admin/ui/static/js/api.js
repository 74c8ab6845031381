// api.js: the one way the control center talks to the broker, the admin
// API under /api/v1 (admin/openapi.yaml). The session cookie goes with
// every request (same origin); state-changing requests carry the CSRF
// token that /api/v1/login or /api/v1/me returned. A 401 from any call
// but the login itself means the session ended: onUnauthorized is called
// and the app shows the login page.

const base = "/api/v1";

let csrf = "";
let unauthorized = () => {};

// APIError is a refused or failed call: status is the HTTP status (0 when
// the broker did not answer), message the API's own "error" text.
export class APIError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// setCSRF keeps the token sent in X-CSRF-Token.
export function setCSRF(token) {
  csrf = token || "";
}

// onUnauthorized sets what happens when a call answers 401.
export function onUnauthorized(fn) {
  unauthorized = fn;
}

// call sends method path (relative to /api/v1) with body as JSON (when
// given) and returns the decoded JSON answer (null for 204). It throws an
// APIError naming what the broker said was wrong.
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD" && csrf) {
    headers["X-CSRF-Token"] = csrf;
  }
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(base + path, init);
  } catch (e) {
    throw new APIError(0, `the broker did not answer ${method} ${base}${path}: ${e.message}`);
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      if (resp.ok) {
        throw new APIError(resp.status, `${method} ${base}${path}: the answer is not JSON: ${e.message}`);
      }
    }
  }
  if (!resp.ok) {
    const msg = data && data.error ? data.error : `${resp.status} ${resp.statusText || ""}`.trim();
    if (resp.status === 401 && path !== "/login") {
      unauthorized(msg);
    }
    throw new APIError(resp.status, msg, resp.headers.get("Retry-After"));
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const del = (path) => call("DELETE", path);

// download fetches a file under /api/v1 (a zip) with the session cookie
// and the X-CSRF-Token header, and hands it to the browser to save as
// name (a Blob behind an object URL): the token never travels in an
// address, where logs and the history would keep it. It throws an
// APIError with the API's own message when the broker refuses.
export async function download(path, name) {
  const headers = {};
  if (csrf) headers["X-CSRF-Token"] = csrf;
  let resp;
  try {
    resp = await fetch(base + path, { headers, credentials: "same-origin", cache: "no-store" });
  } catch (e) {
    throw new APIError(0, `the broker did not answer GET ${base}${path}: ${e.message}`);
  }
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText || ""}`.trim();
    try {
      const data = JSON.parse(await resp.text());
      if (data && data.error) msg = data.error;
    } catch {
      // not JSON: the status says it
    }
    if (resp.status === 401) unauthorized(msg);
    throw new APIError(resp.status, `download ${base}${path}: ${msg}`, resp.headers.get("Retry-After"));
  }
  const url = URL.createObjectURL(await resp.blob());
  try {
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
  } finally {
    // the click has started the download, which holds its own reference
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }
}

// seg escapes one path segment (a client id may hold "/" or "?").
export function seg(s) {
  return encodeURIComponent(s);
}

// query builds "?k=v&..." from the non-empty values of obj.
export function query(obj) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}
