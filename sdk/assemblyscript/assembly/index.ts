// The Propolis extension SDK for AssemblyScript (ABI 1.2), written from
// abi/ABI.md. Numbers, names and host imports are in abi.ts, generated
// from the broker's table; the records are in records.ts; this file holds
// the two exports every module needs (the ABI marker and the record
// buffer), record access for the callbacks, decisions, and helpers for
// the host functions.
//
// An extension's entry file re-exports the marker and the buffer and
// exports the callbacks it implements:
//
//   export { propolis_abi_v1, propolis_buffer } from "<sdk>/assembly/index";
//   export function propolis_authenticate(len: i32): u32 {
//     const c = connectRecord(len);
//     return c.username == "" ? deny(Code.BAD_USERNAME_OR_PASSWORD) : allow();
//   }

import {
  ABI_MINOR,
  Decision,
  Field,
  Status,
  host_add_connack_user_property,
  host_add_intercept_client,
  host_add_intercept_filter,
  host_add_permission,
  host_add_publish_filter,
  host_declare_callbacks,
  host_log,
  host_packet_set,
  host_packet_set_int,
  host_set_reason,
  host_take_result,
} from "./abi";
import {
  Connack,
  Connect,
  Disconnect,
  Event,
  Message,
  Pair,
  Publish,
  Start,
  Subscribe,
  Subscription,
} from "./records";

export * from "./abi";
export * from "./records";
export * from "./json";
export * from "./sha256";

// ---------------------------------------------------------------------
// The marker and the record buffer (ABI.md sections 2 and 3)
// ---------------------------------------------------------------------

/** The ABI marker: the minor version this SDK was written to. */
export function propolis_abi_v1(): i32 {
  return ABI_MINOR;
}

let bufPtr: usize = 0;
let bufCap: usize = 0;
let maxRecord: usize = 4 << 20;

/**
 * setMaxRecordSize sets the largest record the module accepts (default
 * 4 MiB); larger ones are declined and the host fails that call closed
 * (ABI.md section 4, "Record size"). Keep it well below limits.memory.
 */
export function setMaxRecordSize(n: usize): void {
  maxRecord = n;
}

/**
 * propolis_buffer: a buffer of at least size bytes for the next record,
 * valid until the next call; 0 beyond the maximum record size, or when
 * memory cannot grow to hold it (limits.memory): the previous buffer then
 * stays valid and the host declines the record (ABI.md section 4, "Record
 * size") instead of the module trapping.
 *
 * The buffer is whole pages taken with memory.grow, outside the
 * allocator's heap: AssemblyScript's allocator traps when memory cannot
 * grow, and memory.grow answers -1. A larger buffer extends the current
 * one in place when nothing was allocated after it; otherwise the old
 * pages are left unused. Sizes at least double, so what is left unused
 * stays below the largest buffer.
 */
export function propolis_buffer(size: i32): usize {
  const n = <usize>size;
  if (size < 0 || n > maxRecord) return 0;
  if (bufPtr != 0 && n <= bufCap) return bufPtr;
  // The allocator claims all of memory when it starts (at its first
  // allocation): start it before the first page is taken here.
  if (bufPtr == 0) heap.free(heap.alloc(16));
  const need = pagesFor(n);
  const limit = pagesFor(maxRecord);
  let want = max<usize>(need, (bufCap >>> 16) << 1);
  if (want > limit) want = limit;
  const atEnd = bufPtr != 0 && bufPtr + bufCap == <usize>memory.size() << 16;
  const have = atEnd ? bufCap >>> 16 : 0;
  // The doubled size first, then only what this record needs.
  if (memory.grow(<i32>(want - have)) < 0) {
    want = need;
    if (memory.grow(<i32>(want - have)) < 0) return 0;
  }
  if (!atEnd) bufPtr = (<usize>memory.size() - want) << 16;
  bufCap = want << 16;
  return bufPtr;
}

/** pagesFor is how many 64 KiB pages hold n bytes. */
function pagesFor(n: usize): usize {
  return (n + 0xffff) >>> 16;
}

/** recordPtr is where the host wrote the current record. */
export function recordPtr(): usize {
  return bufPtr;
}

function malformed(what: string): void {
  log(LogLevel.ERROR, "propolis AssemblyScript SDK: malformed " + what + " record");
  unreachable();
}

// The record of the running callback, decoded; a malformed record (a
// length beyond the buffer, a field cut short: a broken host) is logged
// and traps, and the host fails the call closed and counts a failure.
// (AssemblyScript has no exceptions: an accessor cannot make the callback
// answer, and giving it an empty record to decide on would be worse.)

/** inBuffer reports whether a record of len bytes lies in the buffer. */
function inBuffer(len: i32): bool {
  return bufPtr != 0 && len >= 0 && <usize>len <= bufCap;
}

/** startRecord decodes propolis_start's record. */
export function startRecord(len: i32): Start {
  const r = inBuffer(len) ? Start.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("START");
  return r!;
}
/** connectRecord decodes the record of propolis_authenticate or propolis_intercept_connect. */
export function connectRecord(len: i32): Connect {
  const r = inBuffer(len) ? Connect.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("CONNECT");
  return r!;
}
/** publishRecord decodes propolis_authorize_publish's record. */
export function publishRecord(len: i32): Publish {
  const r = inBuffer(len) ? Publish.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("PUBLISH");
  return r!;
}
/** subscribeRecord decodes propolis_authorize_subscribe's record. */
export function subscribeRecord(len: i32): Subscribe {
  const r = inBuffer(len) ? Subscribe.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("SUBSCRIBE");
  return r!;
}
/** eventRecord decodes propolis_on_event's record. */
export function eventRecord(len: i32): Event {
  const r = inBuffer(len) ? Event.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("EVENT");
  return r!;
}
/** connackRecord decodes propolis_intercept_connack's record. */
export function connackRecord(len: i32): Connack {
  const r = inBuffer(len) ? Connack.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("CONNACK");
  return r!;
}
/** messageRecord decodes the record of the publish interceptors. */
export function messageRecord(len: i32): Message {
  const r = inBuffer(len) ? Message.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("MESSAGE");
  return r!;
}
/** subscriptionRecord decodes propolis_intercept_subscribe's record. */
export function subscriptionRecord(len: i32): Subscription {
  const r = inBuffer(len) ? Subscription.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("SUBSCRIPTION");
  return r!;
}
/** disconnectRecord decodes propolis_intercept_disconnect's record. */
export function disconnectRecord(len: i32): Disconnect {
  const r = inBuffer(len) ? Disconnect.decode(bufPtr, <u32>len) : null;
  if (r == null) malformed("DISCONNECT");
  return r!;
}

// ---------------------------------------------------------------------
// Decisions (ABI.md section 3)
// ---------------------------------------------------------------------

/** MQTT 5 reason codes an extension commonly refuses with. */
export namespace Code {
  export const UNSPECIFIED: u8 = 0x80;
  export const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
  export const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
  export const NOT_AUTHORIZED: u8 = 0x87;
  export const BANNED: u8 = 0x8a;
  export const BAD_AUTHENTICATION_METHOD: u8 = 0x8c;
  export const TOPIC_NAME_INVALID: u8 = 0x90;
  export const QUOTA_EXCEEDED: u8 = 0x97;
  export const ADMINISTRATIVE_ACTION: u8 = 0x98;
  export const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
}

/** next passes the question on (from an interceptor: goes on with the packet as changed). */
export function next(): u32 {
  return Decision.NEXT;
}
/** allow accepts. */
export function allow(): u32 {
  return Decision.ALLOW;
}
/** deny refuses with a reason code >= 0x80 (0: 0x87, or 0x83 from an interceptor). */
export function deny(code: u8 = 0): u32 {
  return (<u32>code << 8) | Decision.DENY;
}
/** disconnectClient refuses and disconnects the client (authorizers only). */
export function disconnectClient(code: u8 = 0): u32 {
  return (<u32>code << 8) | Decision.DISCONNECT;
}

// ---------------------------------------------------------------------
// Host functions (ABI.md section 5)
// ---------------------------------------------------------------------

/** Log levels. */
export enum LogLevel {
  DEBUG = 0,
  INFO = 1,
  WARN = 2,
  ERROR = 3,
}

/** utf8 returns the UTF-8 bytes of s. */
function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s);
}

/** log writes a line to the broker log, tagged with the extension id. */
export function log(level: LogLevel, msg: string): i32 {
  const b = utf8(msg);
  return host_log(<i32>level, changetype<usize>(b), b.byteLength);
}

/** setReason sets the MQTT 5 reason string of a DENY or DISCONNECT, or why start refused. */
export function setReason(reason: string): i32 {
  const b = utf8(reason);
  return host_set_reason(changetype<usize>(b), b.byteLength);
}

/** declareCallbacks narrows the callbacks the host calls (Callback bits; in propolis_start). */
export function declareCallbacks(mask: u32): i32 {
  return host_declare_callbacks(<i32>mask);
}

/** addPublishFilter asks for propolis_authorize_publish only for topics matching filter (in propolis_start). */
export function addPublishFilter(filter: string): i32 {
  const b = utf8(filter);
  return host_add_publish_filter(changetype<usize>(b), b.byteLength);
}

/** addInterceptFilter narrows the publish interceptors (callbacks: Callback bits 7 and/or 8) to a topic filter. */
export function addInterceptFilter(callbacks: u32, filter: string): i32 {
  const b = utf8(filter);
  return host_add_intercept_filter(<i32>callbacks, changetype<usize>(b), b.byteLength);
}

/** addInterceptClient narrows the outbound interceptor to subscribers matching pattern. */
export function addInterceptClient(pattern: string): i32 {
  const b = utf8(pattern);
  return host_add_intercept_client(changetype<usize>(b), b.byteLength);
}

/** addConnackUserProperty adds a user property to the CONNACK, on ALLOW (in propolis_authenticate). */
export function addConnackUserProperty(key: string, value: string): i32 {
  const k = utf8(key);
  const v = utf8(value);
  return host_add_connack_user_property(changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength);
}

// Permission fields (add_permission).
export const PERM_ALLOW: u8 = 1;
export const PERM_DENY: u8 = 2;
export const ACTIVITY_PUBLISH: u8 = 1;
export const ACTIVITY_SUBSCRIBE: u8 = 2;
export const ACTIVITY_BOTH: u8 = 3;
export const RETAIN_ANY: u8 = 0;
export const RETAIN_NOT_RETAINED: u8 = 1;
export const RETAIN_ONLY_RETAINED: u8 = 2;
export const SHARED_ANY: u8 = 0;
export const SHARED_NOT_SHARED: u8 = 1;
export const SHARED_ONLY_SHARED: u8 = 2;

/** A default topic permission (add_permission). qos: bit 0 QoS 0, bit 1 QoS 1, bit 2 QoS 2; 0 means all. */
export class Permission {
  constructor(
    public filter: string,
    public decision: u8 = PERM_ALLOW,
    public activity: u8 = ACTIVITY_BOTH,
    public qos: u8 = 0,
    public retain: u8 = RETAIN_ANY,
    public shared: u8 = SHARED_ANY,
  ) {}

  /** encode returns the permission as add_permission takes it. */
  encode(): Uint8Array {
    const f = utf8(this.filter);
    const out = new Uint8Array(12 + f.byteLength);
    out[0] = this.decision;
    out[1] = this.activity;
    out[2] = this.qos;
    out[3] = this.retain;
    out[4] = this.shared;
    store<u32>(out.dataStart + 8, <u32>f.byteLength);
    memory.copy(out.dataStart + 12, changetype<usize>(f), f.byteLength);
    return out;
  }
}

/** addPermission adds a default topic permission for the client, applied on ALLOW (in propolis_authenticate). */
export function addPermission(p: Permission): i32 {
  const b = p.encode();
  return host_add_permission(b.dataStart, b.length);
}

/** encodeProperties returns pairs as a list<str,str>, the value packet_set takes for user_properties. */
export function encodeProperties(pairs: Pair[]): Uint8Array {
  const keys = new Array<ArrayBuffer>();
  const values = new Array<ArrayBuffer>();
  let n = 4;
  for (let i = 0; i < pairs.length; i++) {
    keys.push(utf8(pairs[i].key));
    values.push(utf8(pairs[i].value));
    n += 8 + keys[i].byteLength + values[i].byteLength;
  }
  const out = new Uint8Array(n);
  let w = out.dataStart;
  store<u32>(w, <u32>pairs.length);
  w += 4;
  for (let i = 0; i < pairs.length; i++) {
    for (let j = 0; j < 2; j++) {
      const s = j == 0 ? keys[i] : values[i];
      store<u32>(w, <u32>s.byteLength);
      memory.copy(w + 4, changetype<usize>(s), s.byteLength);
      w += 4 + s.byteLength;
    }
  }
  return out;
}

/** packetSet sets a bytes field of the packet being intercepted. */
export function packetSet(field: i32, value: Uint8Array): i32 {
  return host_packet_set(field, value.dataStart, value.length);
}
/** packetSetString sets a text field of the packet being intercepted. */
export function packetSetString(field: i32, value: string): i32 {
  const b = utf8(value);
  return host_packet_set(field, changetype<usize>(b), b.byteLength);
}
/** packetSetInt sets an int field of the packet being intercepted. */
export function packetSetInt(field: i32, value: i64): i32 {
  return host_packet_set_int(field, value);
}
/** packetSetProperties replaces the user properties of the packet being intercepted. */
export function packetSetProperties(pairs: Pair[]): i32 {
  const b = encodeProperties(pairs);
  return host_packet_set(Field.USER_PROPERTIES, b.dataStart, b.length);
}

/**
 * fetchResult finishes a host service call that answers data (ABI.md
 * section 5, "Results"): n is what the call returned for the buffer out.
 * Returns the result's bytes, or null on a negative status (in
 * lastStatus).
 */
export function fetchResult(n: i32, out: Uint8Array): Uint8Array | null {
  lastStatus = n < 0 ? n : Status.OK;
  if (n < 0) return null;
  if (n <= out.length) return out.subarray(0, n);
  const big = new Uint8Array(n);
  const m = host_take_result(big.dataStart, n);
  if (m < 0) {
    lastStatus = m;
    return null;
  }
  return big.subarray(0, m);
}

/** lastStatus is the status of the last fetchResult. */
export let lastStatus: i32 = 0;

// ---------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------

/**
 * filterCovers reports whether every topic the filter (or topic name) sub
 * matches is matched by the filter f: the rule add_permission applies to
 * SUBSCRIBE, and plain topic matching for a topic name. Topics starting
 * with '$' are not matched by a wildcard in the first level.
 */
export function filterCovers(f: string, sub: string): bool {
  const fl = f.split("/");
  const sl = sub.split("/");
  const dollar = sub.startsWith("$");
  for (let i = 0; i < fl.length; i++) {
    const a = fl[i];
    if (a == "#") return !(i == 0 && dollar);
    if (i >= sl.length) return false;
    const b = sl[i];
    if (b == "#") return false;
    if (a == "+") {
      if (i == 0 && dollar) return false;
    } else if (b == "+" || a != b) {
      return false;
    }
  }
  return fl.length == sl.length;
}

/** propolisAbort is the module's abort: it logs where and traps (build with --use abort=...). */
export function propolisAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let m = "abort";
  if (message != null) m = message;
  let f = "?";
  if (fileName != null) f = fileName;
  log(LogLevel.ERROR, "abort: " + m + " at " + f + ":" + line.toString() + ":" + column.toString());
  unreachable();
}
