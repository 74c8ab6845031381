// The test module of the AssemblyScript SDK: test/vectors.mjs writes each
// record of abi/testdata into the buffer the SDK's propolis_buffer gives,
// calls decode, and compares the JSON it returns with the vector's.

export { propolis_abi_v1, propolis_buffer } from "../assembly/index";
import {
  Connack,
  Connect,
  Disconnect,
  Event,
  FilterResult,
  JSONKind,
  Kind,
  Message,
  Pair,
  Publish,
  Start,
  Subscribe,
  Subscription,
  filterCovers,
  sameLengthEqual,
  sha256,
  parseJSON,
  recordPtr,
} from "../assembly/index";

function q(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 34) out += '\\"';
    else if (c == 92) out += "\\\\";
    else if (c < 0x20) out += "\\u" + (c < 16 ? "000" : "00") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

function bytes(b: Uint8Array): string {
  const parts = new Array<string>();
  for (let i = 0; i < b.length; i++) parts.push(b[i].toString());
  return "[" + parts.join(",") + "]";
}

function strs(l: string[]): string {
  const parts = new Array<string>();
  for (let i = 0; i < l.length; i++) parts.push(q(l[i]));
  return "[" + parts.join(",") + "]";
}

function pairs(l: Pair[]): string {
  const parts = new Array<string>();
  for (let i = 0; i < l.length; i++) parts.push('{"key":' + q(l[i].key) + ',"value":' + q(l[i].value) + "}");
  return "[" + parts.join(",") + "]";
}

function filters(l: FilterResult[]): string {
  const parts = new Array<string>();
  for (let i = 0; i < l.length; i++)
    parts.push('{"filter":' + q(l[i].filter) + ',"qos":' + l[i].qos.toString() + ',"code":' + l[i].code.toString() + "}");
  return "[" + parts.join(",") + "]";
}

class Obj {
  parts: string[] = [];
  n(k: string, v: u64): Obj {
    this.parts.push(q(k) + ":" + v.toString());
    return this;
  }
  big(k: string, v: u64): Obj {
    this.parts.push(q(k) + ':"' + v.toString() + '"');
    return this;
  }
  s(k: string, v: string): Obj {
    this.parts.push(q(k) + ":" + q(v));
    return this;
  }
  raw(k: string, v: string): Obj {
    this.parts.push(q(k) + ":" + v);
    return this;
  }
  done(): string {
    return "{" + this.parts.join(",") + "}";
  }
}

/** decode decodes the record in the buffer as its header's kind: JSON, or "malformed". */
export function decode(len: i32): string {
  const p = recordPtr();
  const kind = load<u16>(p, 4);
  const o = new Obj();
  const n = <u32>len;
  if (kind == Kind.START) {
    const r = Start.decode(p, n);
    if (r == null) return "malformed";
    const s = r;
    return o.s("extension_id", s.extensionId).s("extension_version", s.extensionVersion).s("broker_version", s.brokerVersion)
      .s("previous_version", s.previousVersion).s("config", s.config).n("instance", s.instance).done();
  }
  if (kind == Kind.CONNECT) {
    const r = Connect.decode(p, n);
    if (r == null) return "malformed";
    const c = r;
    // propertyBytes reads each property's value from the record as bytes.
    for (let i = 0; i < c.userProperties.length; i++) {
      const u = c.userProperties[i];
      const raw = c.propertyBytes(u.key);
      if (raw == null || String.UTF8.decode(raw.buffer) != c.property(u.key)) return "propertyBytes(" + u.key + ") differs";
    }
    if (c.propertyBytes("no such property") != null) return "propertyBytes found a missing property";
    return o.n("protocol_version", c.protocolVersion).n("flags", c.flags).n("will_qos", c.willQos).n("keepalive", c.keepalive)
      .n("session_expiry", c.sessionExpiry).s("client_id", c.clientId).s("username", c.username).raw("password", bytes(c.password))
      .s("remote_addr", c.remoteAddr).s("listener", c.listener).s("tls_subject", c.tlsSubject).raw("tls_sans", strs(c.tlsSans))
      .s("will_topic", c.willTopic).raw("will_payload", bytes(c.willPayload)).raw("user_properties", pairs(c.userProperties))
      .n("receive_maximum", c.receiveMaximum).n("will_delay", c.willDelay).done();
  }
  if (kind == Kind.PUBLISH) {
    const r = Publish.decode(p, n);
    if (r == null) return "malformed";
    const x = r;
    return o.n("qos", x.qos).n("flags", x.flags).s("client_id", x.clientId).s("username", x.username).s("topic", x.topic)
      .raw("payload", bytes(x.payload)).done();
  }
  if (kind == Kind.SUBSCRIBE) {
    const r = Subscribe.decode(p, n);
    if (r == null) return "malformed";
    const x = r;
    return o.n("qos", x.qos).n("flags", x.flags).s("client_id", x.clientId).s("username", x.username).s("filter", x.filter).done();
  }
  if (kind == Kind.EVENT) {
    const r = Event.decode(p, n);
    if (r == null) return "malformed";
    const e = r;
    return o.n("event", e.event).n("disconnect_kind", e.disconnectKind).n("reason_code", e.reasonCode)
      .n("protocol_version", e.protocolVersion).big("time", e.time).s("client_id", e.clientId).s("username", e.username)
      .s("listener", e.listener).s("remote_addr", e.remoteAddr).s("reason_string", e.reasonString)
      .raw("filters", filters(e.filters)).done();
  }
  if (kind == Kind.CONNACK) {
    const r = Connack.decode(p, n);
    if (r == null) return "malformed";
    const c = r;
    return o.n("reason_code", c.reasonCode).n("flags", c.flags).n("protocol_version", c.protocolVersion).s("client_id", c.clientId)
      .s("username", c.username).s("reason_string", c.reasonString).raw("user_properties", pairs(c.userProperties)).done();
  }
  if (kind == Kind.MESSAGE) {
    const r = Message.decode(p, n);
    if (r == null) return "malformed";
    const m = r;
    return o.n("direction", m.direction).n("protocol_version", m.protocolVersion).s("client_id", m.clientId).s("username", m.username)
      .s("publisher", m.publisher).n("qos", m.qos).n("flags", m.flags).n("payload_format", m.payloadFormat)
      .n("message_expiry", m.messageExpiry).s("topic", m.topic).raw("payload", bytes(m.payload))
      .raw("user_properties", pairs(m.userProperties)).s("content_type", m.contentType).s("response_topic", m.responseTopic)
      .raw("correlation_data", bytes(m.correlationData)).done();
  }
  if (kind == Kind.SUBSCRIPTION) {
    const r = Subscription.decode(p, n);
    if (r == null) return "malformed";
    const s = r;
    return o.n("qos", s.qos).n("options", s.options).n("protocol_version", s.protocolVersion).n("flags", s.flags)
      .n("identifier", s.identifier).s("client_id", s.clientId).s("username", s.username).s("filter", s.filter)
      .raw("user_properties", pairs(s.userProperties)).done();
  }
  if (kind == Kind.DISCONNECT) {
    const r = Disconnect.decode(p, n);
    if (r == null) return "malformed";
    const d = r;
    return o.n("direction", d.direction).n("reason_code", d.reasonCode).n("protocol_version", d.protocolVersion)
      .s("client_id", d.clientId).s("username", d.username).s("reason_string", d.reasonString)
      .raw("user_properties", pairs(d.userProperties)).done();
  }
  return "unknown kind " + kind.toString();
}

/** selfTest checks filterCovers and the JSON reader, SHA-256 and sameLengthEqual; "" when they pass. */
export function selfTest(): string {
  let fails = "";
  const cases: string[][] = [
    ["a/b", "a/b", "1"], ["a/+", "a/b", "1"], ["a/+", "a/b/c", "0"], ["a/#", "a", "1"], ["a/#", "a/b/c", "1"],
    ["#", "a/b", "1"], ["#", "$SYS/x", "0"], ["+/x", "$SYS/x", "0"], ["$SYS/#", "$SYS/x", "1"], ["a/+", "a/+", "1"],
    ["a/b", "a/+", "0"], ["a/+", "a/#", "0"], ["a/#", "a/#", "1"], ["a/#", "a/+/c", "1"], ["a/b", "a/b/c", "0"],
    ["a/b/c", "a/b", "0"], ["+", "", "1"], ["a/+/b", "a//b", "1"],
  ];
  for (let i = 0; i < cases.length; i++) {
    const want = cases[i][2] == "1";
    if (filterCovers(cases[i][0], cases[i][1]) != want) fails += "covers(" + cases[i][0] + ", " + cases[i][1] + ") ";
  }
  const bad = ["", "{", '{"a":}', "[1,]", '{"a" 1}', "01", "1.", '"\\x"', "nul", "[1] x", '{"a":1,}', "-", "1e"];
  for (let i = 0; i < bad.length; i++) if (parseJSON(bad[i]) != null) fails += "accepted " + bad[i] + " ";
  const v = parseJSON(' {"keys": {"k\\u0031": "acme"}, "n": 18446744073709551615, "list": [true, null, -1.5e3, "\\"x\\n"]} ');
  if (v == null) return fails + "refused a valid document";
  const doc = v;
  const kv = doc.get("keys");
  if (kv == null) return fails + "no keys";
  const keys = kv;
  if (keys.kind != JSONKind.OBJECT || keys.keys[0] != "k1" || keys.items[0].str != "acme") fails += "object ";
  const nv = doc.get("n");
  if (nv == null) return fails + "no n";
  if (nv.asU64() != U64.MAX_VALUE) fails += "u64 ";
  const lv = doc.get("list");
  if (lv == null) return fails + "no list";
  const l = lv.items;
  if (l.length != 4 || !l[0].bool || l[1].kind != JSONKind.NULL || l[2].number != "-1.5e3" || l[3].str != '"x\n') fails += "array ";
  if (doc.get("missing") != null) fails += "missing member ";
  fails += sha256Test();
  return fails;
}

function hex(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += (b[i] < 16 ? "0" : "") + b[i].toString(16);
  return s;
}

function repeat(c: u8, n: i32): Uint8Array {
  const b = new Uint8Array(n);
  b.fill(c);
  return b;
}

// sha256Test checks SHA-256 against FIPS 180-4's examples and lengths
// around the padding's block boundaries (digests from another
// implementation), and sameLengthEqual.
function sha256Test(): string {
  let fails = "";
  const cases: string[][] = [
    ["", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    ["abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    ["abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"],
  ];
  for (let i = 0; i < cases.length; i++) {
    const got = hex(sha256(Uint8Array.wrap(String.UTF8.encode(cases[i][0]))));
    if (got != cases[i][1]) fails += "sha256(" + cases[i][0] + ")=" + got + " ";
  }
  const sizes: i32[] = [55, 56, 64, 1000];
  const want = [
    "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
    "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
    "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
    "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3",
  ];
  for (let i = 0; i < sizes.length; i++) {
    const got = hex(sha256(repeat(0x61, sizes[i])));
    if (got != want[i]) fails += "sha256(a*" + sizes[i].toString() + ")=" + got + " ";
  }
  const a = repeat(1, 4);
  const b = repeat(1, 4);
  if (!sameLengthEqual(a, b)) fails += "sameLengthEqual(equal) ";
  b[3] = 2;
  if (sameLengthEqual(a, b) || sameLengthEqual(a, repeat(1, 3))) fails += "sameLengthEqual(different) ";
  return fails;
}
