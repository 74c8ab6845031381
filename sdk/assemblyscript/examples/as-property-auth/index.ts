// as-property-auth: authenticates MQTT 5 clients by an API key sent as a
// CONNECT user property, written in AssemblyScript with the Propolis SDK.
// Each key belongs to a tenant; a client presenting it is let in, confined
// to tenants/<tenant>/# (publish and subscribe, or subscribe only for a
// read-only key), and told its tenant in a CONNACK user property.
//
//   config:
//     property: api-key        # the user property holding the key (default api-key)
//     without_key: next        # a CONNECT without it (every MQTT 3.1.1 client):
//                              # next (another extension decides) or deny
//     keys:
//       - key: 9f2c4e7a1b6d3f80  # at least 16 characters
//         tenant: acme
//       - key: 5e8a0c3d7f1b2a94
//         tenant: globex
//         read_only: true
//
// A CONNECT with the property but an unknown key is denied with 0x86 (bad
// user name or password). Keys are compared as SHA-256 digests of their
// bytes (the property's bytes as the client sent them, not decoded): every
// comparison looks at 32 bytes, so the time taken tells neither which key
// nearly matched nor how long the keys are.

export { propolis_abi_v1, propolis_buffer } from "../../assembly/index";
import {
  ACTIVITY_BOTH,
  ACTIVITY_SUBSCRIBE,
  Code,
  JSONKind,
  JSONValue,
  LogLevel,
  PERM_ALLOW,
  Permission,
  addConnackUserProperty,
  addPermission,
  allow,
  connectRecord,
  deny,
  jsonError,
  log,
  next,
  parseJSON,
  sameLengthEqual,
  setReason,
  sha256,
  startRecord,
} from "../../assembly/index";

class Key {
  /** digest: SHA-256 of the key's UTF-8 bytes. */
  constructor(public digest: Uint8Array, public tenant: string, public readOnly: bool) {}
}

// Configuration, the same in every instance (each parses it at its start);
// no per-client state is kept.
let property = "api-key";
let denyWithoutKey = false;
const keys = new Array<Key>();

function refuse(why: string): i32 {
  setReason("as-property-auth: " + why);
  return 1;
}

function utf8(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

function stringMember(v: JSONValue, key: string, where: string): string | null {
  const m = v.get(key);
  if (m == null) return null;
  if (!m.isString()) {
    refuse("config " + where + key + " must be a string");
    return null;
  }
  return m.str;
}

export function propolis_start(len: i32): i32 {
  const s = startRecord(len);
  const parsed = parseJSON(s.config);
  if (parsed == null) return refuse("config is not JSON: " + jsonError);
  const doc = parsed;
  if (doc.kind != JSONKind.OBJECT) return refuse("config must be a mapping");
  for (let i = 0; i < doc.keys.length; i++) {
    const k = doc.keys[i];
    if (k != "property" && k != "without_key" && k != "keys") return refuse("config has the unknown key " + k);
  }
  const p = doc.get("property");
  if (p != null) {
    if (!p.isString() || p.str == "") return refuse("config property must be a non-empty string");
    property = p.str;
  }
  const w = doc.get("without_key");
  if (w != null) {
    if (!w.isString() || (w.str != "next" && w.str != "deny")) return refuse("config without_key must be next or deny");
    denyWithoutKey = w.str == "deny";
  }
  const list = doc.get("keys");
  if (list == null || list.kind != JSONKind.ARRAY || list.items.length == 0)
    return refuse("config keys must be a non-empty list of {key, tenant}");
  for (let i = 0; i < list.items.length; i++) {
    const where = "keys[" + (i + 1).toString() + "].";
    const e = list.items[i];
    if (e.kind != JSONKind.OBJECT) return refuse("config " + where.slice(0, -1) + " must be a mapping");
    for (let j = 0; j < e.keys.length; j++) {
      const k = e.keys[j];
      if (k != "key" && k != "tenant" && k != "read_only") return refuse("config " + where + k + " is not a known key");
    }
    const key = stringMember(e, "key", where);
    const tenant = stringMember(e, "tenant", where);
    if (key == null || tenant == null) return refuse("config " + where + "key and " + where + "tenant are required strings");
    if (key.length < 16) return refuse("config " + where + "key is shorter than 16 characters");
    if (tenant == "" || tenant.includes("/") || tenant.includes("+") || tenant.includes("#"))
      return refuse("config " + where + "tenant must be one topic level (no '/', '+' or '#')");
    let readOnly = false;
    const ro = e.get("read_only");
    if (ro != null) {
      if (ro.kind != JSONKind.BOOL) return refuse("config " + where + "read_only must be true or false");
      readOnly = ro.bool;
    }
    const digest = sha256(utf8(key));
    for (let j = 0; j < keys.length; j++) {
      if (sameLengthEqual(keys[j].digest, digest)) return refuse("config " + where + "key repeats an earlier key");
    }
    keys.push(new Key(digest, tenant, readOnly));
  }
  if (s.instance == 0) {
    log(LogLevel.INFO, "as-property-auth " + s.extensionVersion + ": " + keys.length.toString() + " keys, property " + property +
      ", without it: " + (denyWithoutKey ? "deny" : "next"));
  }
  return 0;
}

export function propolis_authenticate(len: i32): u32 {
  const c = connectRecord(len);
  const presented = c.propertyBytes(property);
  if (presented == null) {
    if (!denyWithoutKey) return next();
    setReason("the " + property + " user property is required");
    return deny(Code.BAD_AUTHENTICATION_METHOD);
  }
  // Digests have one length: each comparison looks at all 32 bytes. Look
  // at every key, so the time taken does not tell which one nearly matched.
  const digest = sha256(presented);
  let found: Key | null = null;
  for (let i = 0; i < keys.length; i++) {
    if (sameLengthEqual(keys[i].digest, digest)) found = keys[i];
  }
  if (found == null) {
    setReason("unknown " + property);
    return deny(Code.BAD_USERNAME_OR_PASSWORD);
  }
  const k: Key = found;
  addPermission(new Permission("tenants/" + k.tenant + "/#", PERM_ALLOW, k.readOnly ? ACTIVITY_SUBSCRIBE : ACTIVITY_BOTH));
  addConnackUserProperty("tenant", k.tenant);
  return allow();
}
