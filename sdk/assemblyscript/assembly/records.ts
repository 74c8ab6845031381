// The records the host writes for the callbacks (ABI.md section 4),
// decoded into classes. Written from ABI.md; checked against
// abi/testdata by test/vectors.mjs.

import { Kind } from "./abi";

/** A user property: key and value. */
export class Pair {
  constructor(public key: string, public value: string) {}
}

/** One filter of a subscribe or unsubscribe event. */
export class FilterResult {
  constructor(public filter: string, public qos: u8, public code: u8) {}
}

/** The record header every record starts with. */
export class Header {
  length: u32 = 0;
  kind: u16 = 0;
  minor: u16 = 0;
}

// CONNECT record flags.
export const CONNECT_CLEAN_START: u8 = 0x01;
export const CONNECT_HAS_USERNAME: u8 = 0x02;
export const CONNECT_HAS_PASSWORD: u8 = 0x04;
export const CONNECT_HAS_WILL: u8 = 0x08;
export const CONNECT_WILL_RETAIN: u8 = 0x10;
export const CONNECT_TLS: u8 = 0x20;
// PUBLISH and MESSAGE record flags.
export const PUBLISH_RETAIN: u8 = 0x01;
export const PUBLISH_WILL: u8 = 0x02;
// SUBSCRIBE and SUBSCRIPTION record flags.
export const SUBSCRIBE_SHARED: u8 = 0x01;
// CONNACK record flags.
export const CONNACK_SESSION_PRESENT: u8 = 0x01;
// Directions of the MESSAGE and DISCONNECT records.
export const INBOUND: u8 = 1;
export const OUTBOUND: u8 = 2;

/**
 * Reader reads the fields of one record in order. A field entirely past
 * the end reads as its zero value (a host of an older minor version wrote
 * the record); a field cut short sets err.
 */
export class Reader {
  err: bool = false;
  constructor(public p: usize, public end: usize) {}

  private take(n: usize): usize {
    if (this.err || this.p == this.end) return 0;
    if (this.end - this.p < n) {
      this.err = true;
      return 0;
    }
    const at = this.p;
    this.p += n;
    return at;
  }
  u8(): u8 {
    const at = this.take(1);
    return at ? load<u8>(at) : 0;
  }
  u16(): u16 {
    const at = this.take(2);
    return at ? load<u16>(at) : 0;
  }
  u32(): u32 {
    const at = this.take(4);
    return at ? load<u32>(at) : 0;
  }
  u64(): u64 {
    const at = this.take(8);
    return at ? load<u64>(at) : 0;
  }
  /** span reads a str and returns where its bytes are (their length in lastLen), 0 when absent. */
  private span(): usize {
    const atEnd = !this.err && this.p == this.end;
    const n = <usize>this.u32();
    if (this.err || atEnd) return 0;
    if (this.end - this.p < n) {
      this.err = true;
      return 0;
    }
    const at = this.p;
    this.p += n;
    this.lastLen = n;
    return at;
  }
  private lastLen: usize = 0;
  /** str reads a str as text (UTF-8; invalid bytes become U+FFFD). */
  str(): string {
    this.lastLen = 0;
    const at = this.span();
    return at ? String.UTF8.decodeUnsafe(at, this.lastLen) : "";
  }
  /** bytes reads a str as bytes (passwords, payloads). */
  bytes(): Uint8Array {
    this.lastLen = 0;
    const at = this.span();
    const out = new Uint8Array(<i32>this.lastLen);
    if (at) memory.copy(out.dataStart, at, this.lastLen);
    return out;
  }
  /** count reads a list's count, checking it could fit (each entry takes
   * at least min bytes). */
  private count(min: usize): u32 {
    const n = this.u32();
    if (<u64>n * <u64>min > <u64>(this.end - this.p)) {
      this.err = true;
      return 0;
    }
    return n;
  }
  strs(): string[] {
    const n = this.count(4);
    const out = new Array<string>();
    for (let i: u32 = 0; i < n && !this.err; i++) out.push(this.str());
    return out;
  }
  pairs(): Pair[] {
    const n = this.count(8);
    const out = new Array<Pair>();
    for (let i: u32 = 0; i < n && !this.err; i++) {
      const k = this.str();
      out.push(new Pair(k, this.str()));
    }
    return out;
  }
  filters(): FilterResult[] {
    const n = this.count(6);
    const out = new Array<FilterResult>();
    for (let i: u32 = 0; i < n && !this.err; i++) {
      const f = this.str();
      const q = this.u8();
      out.push(new FilterResult(f, q, this.u8()));
    }
    return out;
  }
}

/**
 * openRecord checks the header of the len bytes at ptr and returns a
 * reader on the fields, or null when the record is malformed (shorter
 * than its header, longer than len, or of another kind). Bytes beyond the
 * header's length, and fields a later minor version appended, are
 * ignored.
 */
export function openRecord(ptr: usize, len: u32, kind: u16, h: Header): Reader | null {
  if (len < 8) return null;
  h.length = load<u32>(ptr);
  h.kind = load<u16>(ptr, 4);
  h.minor = load<u16>(ptr, 6);
  if (h.length < 8 || h.length > len || h.kind != kind) return null;
  return new Reader(ptr + 8, ptr + h.length);
}

/** START (kind 1). */
export class Start {
  header: Header = new Header();
  extensionId: string = "";
  extensionVersion: string = "";
  brokerVersion: string = "";
  previousVersion: string = "";
  /** The manifest's config section as JSON ("{}" when absent). */
  config: string = "";
  /** 1.1: this instance's index in this load; 0 for the first. */
  instance: u32 = 0;

  static decode(ptr: usize, len: u32): Start | null {
    const s = new Start();
    const r = openRecord(ptr, len, Kind.START, s.header);
    if (r == null) return null;
    s.extensionId = r.str();
    s.extensionVersion = r.str();
    s.brokerVersion = r.str();
    s.previousVersion = r.str();
    s.config = r.str();
    s.instance = r.u32();
    return r.err ? null : s;
  }
}

/** CONNECT (kind 2); also propolis_intercept_connect's record. */
export class Connect {
  header: Header = new Header();
  protocolVersion: u8 = 0;
  flags: u8 = 0;
  willQos: u8 = 0;
  keepalive: u16 = 0;
  sessionExpiry: u32 = 0;
  clientId: string = "";
  username: string = "";
  password: Uint8Array = new Uint8Array(0);
  remoteAddr: string = "";
  listener: string = "";
  tlsSubject: string = "";
  tlsSans: string[] = [];
  willTopic: string = "";
  willPayload: Uint8Array = new Uint8Array(0);
  userProperties: Pair[] = [];
  /** 1.2: 0 when the client sent none (65,535). */
  receiveMaximum: u16 = 0;
  /** 1.2: seconds. */
  willDelay: u32 = 0;
  // Where the user property list is in the record, for propertyBytes.
  private propsAt: usize = 0;
  private recordEnd: usize = 0;

  static decode(ptr: usize, len: u32): Connect | null {
    const c = new Connect();
    const r = openRecord(ptr, len, Kind.CONNECT, c.header);
    if (r == null) return null;
    c.protocolVersion = r.u8();
    c.flags = r.u8();
    c.willQos = r.u8();
    r.u8();
    c.keepalive = r.u16();
    r.u16();
    c.sessionExpiry = r.u32();
    c.clientId = r.str();
    c.username = r.str();
    c.password = r.bytes();
    c.remoteAddr = r.str();
    c.listener = r.str();
    c.tlsSubject = r.str();
    c.tlsSans = r.strs();
    c.willTopic = r.str();
    c.willPayload = r.bytes();
    c.propsAt = r.p;
    c.recordEnd = r.end;
    c.userProperties = r.pairs();
    c.receiveMaximum = r.u16();
    r.u16();
    c.willDelay = r.u32();
    return r.err ? null : c;
  }

  /** property returns the value of the first user property named key, or null. */
  property(key: string): string | null {
    for (let i = 0; i < this.userProperties.length; i++) {
      if (this.userProperties[i].key == key) return this.userProperties[i].value;
    }
    return null;
  }

  /**
   * propertyBytes returns the value of the first user property named key
   * as the client sent its bytes (property decodes them as UTF-8, turning
   * invalid bytes into U+FFFD), or null. It reads the record in the SDK's
   * buffer: call it in the callback the record was given to.
   */
  propertyBytes(key: string): Uint8Array | null {
    if (this.propsAt == 0) return null;
    const want = Uint8Array.wrap(String.UTF8.encode(key));
    const r = new Reader(this.propsAt, this.recordEnd);
    const n = r.u32();
    for (let i: u32 = 0; i < n && !r.err; i++) {
      const k = r.bytes();
      const v = r.bytes();
      if (r.err) return null;
      if (k.length == want.length && memory.compare(k.dataStart, want.dataStart, <usize>k.length) == 0) return v;
    }
    return null;
  }
}

/** PUBLISH (kind 3). */
export class Publish {
  header: Header = new Header();
  qos: u8 = 0;
  flags: u8 = 0;
  clientId: string = "";
  username: string = "";
  topic: string = "";
  payload: Uint8Array = new Uint8Array(0);

  static decode(ptr: usize, len: u32): Publish | null {
    const p = new Publish();
    const r = openRecord(ptr, len, Kind.PUBLISH, p.header);
    if (r == null) return null;
    p.qos = r.u8();
    p.flags = r.u8();
    r.u16();
    p.clientId = r.str();
    p.username = r.str();
    p.topic = r.str();
    p.payload = r.bytes();
    return r.err ? null : p;
  }
}

/** SUBSCRIBE (kind 4): one topic filter. */
export class Subscribe {
  header: Header = new Header();
  qos: u8 = 0;
  flags: u8 = 0;
  clientId: string = "";
  username: string = "";
  filter: string = "";

  static decode(ptr: usize, len: u32): Subscribe | null {
    const s = new Subscribe();
    const r = openRecord(ptr, len, Kind.SUBSCRIBE, s.header);
    if (r == null) return null;
    s.qos = r.u8();
    s.flags = r.u8();
    r.u16();
    s.clientId = r.str();
    s.username = r.str();
    s.filter = r.str();
    return r.err ? null : s;
  }
}

/** EVENT (kind 5). */
export class Event {
  header: Header = new Header();
  event: u8 = 0;
  disconnectKind: u8 = 0;
  reasonCode: u8 = 0;
  protocolVersion: u8 = 0;
  /** Unix nanoseconds. */
  time: u64 = 0;
  clientId: string = "";
  username: string = "";
  listener: string = "";
  remoteAddr: string = "";
  reasonString: string = "";
  filters: FilterResult[] = [];

  static decode(ptr: usize, len: u32): Event | null {
    const e = new Event();
    const r = openRecord(ptr, len, Kind.EVENT, e.header);
    if (r == null) return null;
    e.event = r.u8();
    e.disconnectKind = r.u8();
    e.reasonCode = r.u8();
    e.protocolVersion = r.u8();
    e.time = r.u64();
    e.clientId = r.str();
    e.username = r.str();
    e.listener = r.str();
    e.remoteAddr = r.str();
    e.reasonString = r.str();
    e.filters = r.filters();
    return r.err ? null : e;
  }
}

/** CONNACK (kind 6, 1.2). */
export class Connack {
  header: Header = new Header();
  reasonCode: u8 = 0;
  flags: u8 = 0;
  protocolVersion: u8 = 0;
  clientId: string = "";
  username: string = "";
  reasonString: string = "";
  userProperties: Pair[] = [];

  static decode(ptr: usize, len: u32): Connack | null {
    const c = new Connack();
    const r = openRecord(ptr, len, Kind.CONNACK, c.header);
    if (r == null) return null;
    c.reasonCode = r.u8();
    c.flags = r.u8();
    c.protocolVersion = r.u8();
    r.u8();
    c.clientId = r.str();
    c.username = r.str();
    c.reasonString = r.str();
    c.userProperties = r.pairs();
    return r.err ? null : c;
  }
}

/** MESSAGE (kind 7, 1.2). */
export class Message {
  header: Header = new Header();
  direction: u8 = 0;
  protocolVersion: u8 = 0;
  clientId: string = "";
  username: string = "";
  publisher: string = "";
  qos: u8 = 0;
  flags: u8 = 0;
  payloadFormat: u8 = 0;
  messageExpiry: u32 = 0;
  topic: string = "";
  payload: Uint8Array = new Uint8Array(0);
  userProperties: Pair[] = [];
  contentType: string = "";
  responseTopic: string = "";
  correlationData: Uint8Array = new Uint8Array(0);

  static decode(ptr: usize, len: u32): Message | null {
    const m = new Message();
    const r = openRecord(ptr, len, Kind.MESSAGE, m.header);
    if (r == null) return null;
    m.direction = r.u8();
    m.protocolVersion = r.u8();
    r.u16();
    m.clientId = r.str();
    m.username = r.str();
    m.publisher = r.str();
    m.qos = r.u8();
    m.flags = r.u8();
    m.payloadFormat = r.u8();
    r.u8();
    m.messageExpiry = r.u32();
    m.topic = r.str();
    m.payload = r.bytes();
    m.userProperties = r.pairs();
    m.contentType = r.str();
    m.responseTopic = r.str();
    m.correlationData = r.bytes();
    return r.err ? null : m;
  }
}

/** SUBSCRIPTION (kind 8, 1.2). */
export class Subscription {
  header: Header = new Header();
  qos: u8 = 0;
  options: u8 = 0;
  protocolVersion: u8 = 0;
  flags: u8 = 0;
  identifier: u32 = 0;
  clientId: string = "";
  username: string = "";
  filter: string = "";
  userProperties: Pair[] = [];

  static decode(ptr: usize, len: u32): Subscription | null {
    const s = new Subscription();
    const r = openRecord(ptr, len, Kind.SUBSCRIPTION, s.header);
    if (r == null) return null;
    s.qos = r.u8();
    s.options = r.u8();
    s.protocolVersion = r.u8();
    s.flags = r.u8();
    s.identifier = r.u32();
    s.clientId = r.str();
    s.username = r.str();
    s.filter = r.str();
    s.userProperties = r.pairs();
    return r.err ? null : s;
  }
}

/** DISCONNECT (kind 9, 1.2). */
export class Disconnect {
  header: Header = new Header();
  direction: u8 = 0;
  reasonCode: u8 = 0;
  protocolVersion: u8 = 0;
  clientId: string = "";
  username: string = "";
  reasonString: string = "";
  userProperties: Pair[] = [];

  static decode(ptr: usize, len: u32): Disconnect | null {
    const d = new Disconnect();
    const r = openRecord(ptr, len, Kind.DISCONNECT, d.header);
    if (r == null) return null;
    d.direction = r.u8();
    d.reasonCode = r.u8();
    d.protocolVersion = r.u8();
    r.u8();
    d.clientId = r.str();
    d.username = r.str();
    d.reasonString = r.str();
    d.userProperties = r.pairs();
    return r.err ? null : d;
  }
}
