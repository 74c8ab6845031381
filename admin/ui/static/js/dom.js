// dom.js: building elements node by node, never from markup strings (every text the broker
// sends, a client id or a topic, becomes a text node, never markup) and
// formatting figures for people.

// el makes a tag with attributes (class, id, data-*, on<event> handlers,
// boolean attributes) and children (elements, strings, numbers; null and
// false are skipped; arrays are flattened).
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      e.addEventListener(k.slice(2), v);
    } else if (k === "class") {
      e.className = v;
    } else if (v === true) {
      e.setAttribute(k, "");
    } else {
      e.setAttribute(k, String(v));
    }
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) {
      append(e, c);
    } else if (c instanceof Node) {
      e.appendChild(c);
    } else {
      e.appendChild(document.createTextNode(String(c)));
    }
  }
}

// replace empties e and fills it with children.
export function replace(e, ...children) {
  e.replaceChildren();
  append(e, children);
  return e;
}

// help is a short explanation under a heading or a field.
export function help(...text) {
  return el("p", { class: "help" }, ...text);
}

// table builds a table from column headings and rows of cells; empty
// says what an empty table means.
export function table(heads, rows, empty, attrs) {
  if (rows.length === 0) {
    return el("p", { class: "muted empty" }, empty);
  }
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
}

// fields is a definition list of [label, value, help] triples, skipping
// those whose value is undefined.
export function fields(list, attrs) {
  const dl = el("dl", Object.assign({ class: "fields" }, attrs || {}));
  for (const [label, value, explain, id] of list) {
    if (value === undefined) continue;
    dl.appendChild(el("dt", {}, label));
    dl.appendChild(el("dd", id ? { id } : {}, value === "" || value === null ? el("span", { class: "muted" }, "none") : value,
      explain ? el("span", { class: "help" }, explain) : null));
  }
  return dl;
}

// isTime says whether s is an RFC 3339 time that is set (Go writes an
// unset time as year 1).
export function isTime(s) {
  if (!s) return false;
  const d = new Date(s);
  return !isNaN(d) && d.getUTCFullYear() > 1970;
}

// fmtTime writes an RFC 3339 time as local date and time with how long
// ago it was; "" for an unset time.
export function fmtTime(s) {
  if (!isTime(s)) return "";
  const d = new Date(s);
  const pad = (n) => String(n).padStart(2, "0");
  const local = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const ago = (Date.now() - d.getTime()) / 1000;
  if (ago >= 0) return `${local} (${fmtDuration(ago)} ago)`;
  return `${local} (in ${fmtDuration(-ago)})`;
}

// fmtDuration writes seconds as "3 d 4 h", "5 min 2 s", "12 s".
export function fmtDuration(sec) {
  sec = Math.floor(sec);
  const d = Math.floor(sec / 86400);
  const h = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (d > 0) return h ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m ? `${h} h ${m} min` : `${h} h`;
  if (m > 0) return s ? `${m} min ${s} s` : `${m} min`;
  return `${s} s`;
}

// fmtBytes writes a size in B, KiB, MiB or GiB.
export function fmtBytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

// fmtNumber writes a count with thousands separators.
export function fmtNumber(n) {
  if (typeof n !== "number") return n === undefined || n === null ? "" : String(n);
  return n.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

// protocol names an MQTT protocol version number.
export function protocol(v) {
  return { 3: "MQTT 3.1", 4: "MQTT 3.1.1", 5: "MQTT 5.0" }[v] || (v ? `version ${v}` : "");
}

// hashLink is a link to a page of the app.
export function hashLink(href, text, attrs) {
  return el("a", Object.assign({ href }, attrs || {}), text);
}
