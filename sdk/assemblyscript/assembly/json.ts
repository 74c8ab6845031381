// A small JSON reader for the manifest's config (the START record's
// config is JSON: ABI.md section 4, MANIFEST.md "config"). parseJSON
// returns a tree of JSONValue, or null when the text is not one JSON
// value; the error is in jsonError.

/** JSON value kinds. */
export enum JSONKind {
  NULL,
  BOOL,
  NUMBER,
  STRING,
  ARRAY,
  OBJECT,
}

/** A JSON value. Object members keep their order. */
export class JSONValue {
  kind: JSONKind = JSONKind.NULL;
  bool: bool = false;
  /** The number's text, as written. */
  number: string = "";
  str: string = "";
  items: JSONValue[] = [];
  keys: string[] = [];

  /** get returns the member key of an object, or null. */
  get(key: string): JSONValue | null {
    if (this.kind != JSONKind.OBJECT) return null;
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.items[i];
    }
    return null;
  }
  isString(): bool {
    return this.kind == JSONKind.STRING;
  }
  /** asU64 returns a non-negative integer's value; ok is false for anything else. */
  asU64(): u64 {
    jsonOK = false;
    if (this.kind != JSONKind.NUMBER) return 0;
    let n: u64 = 0;
    for (let i = 0; i < this.number.length; i++) {
      const c = this.number.charCodeAt(i);
      if (c < 48 || c > 57) return 0;
      const d = <u64>(c - 48);
      if (n > (U64.MAX_VALUE - d) / 10) return 0;
      n = n * 10 + d;
    }
    jsonOK = true;
    return n;
  }
}

/** jsonOK says whether the last asU64 read a value. */
export let jsonOK: bool = false;
/** jsonError says why the last parseJSON failed. */
export let jsonError: string = "";

const MAX_DEPTH = 64;

class Parser {
  i: i32 = 0;
  err: string = "";
  constructor(public s: string) {}

  fail(what: string): JSONValue | null {
    if (this.err == "") this.err = what + " at offset " + this.i.toString();
    return null;
  }
  ws(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 32 && c != 9 && c != 10 && c != 13) break;
      this.i++;
    }
  }
  lit(word: string): bool {
    if (this.s.substr(this.i, word.length) != word) return false;
    this.i += word.length;
    return true;
  }
  hex4(): i32 {
    if (this.i + 4 > this.s.length) return -1;
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.s.charCodeAt(this.i + k);
      let d = -1;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 102) d = c - 87;
      else if (c >= 65 && c <= 70) d = c - 55;
      if (d < 0) return -1;
      v = (v << 4) | d;
    }
    this.i += 4;
    return v;
  }
  // string reads a string at the quote; null on error (this.err set).
  string(): string | null {
    this.i++;
    let out = "";
    let start = this.i;
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c == 34) {
        out += this.s.substring(start, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) {
        this.fail("control character in a string");
        return null;
      }
      if (c != 92) {
        this.i++;
        continue;
      }
      out += this.s.substring(start, this.i);
      this.i++;
      if (this.i >= this.s.length) break;
      const e = this.s.charCodeAt(this.i++);
      if (e == 34) out += '"';
      else if (e == 92) out += "\\";
      else if (e == 47) out += "/";
      else if (e == 98) out += "\b";
      else if (e == 102) out += "\f";
      else if (e == 110) out += "\n";
      else if (e == 114) out += "\r";
      else if (e == 116) out += "\t";
      else if (e == 117) {
        const v = this.hex4();
        if (v < 0) {
          this.fail("bad \\u escape");
          return null;
        }
        out += String.fromCharCode(v); // JSON's escapes are UTF-16 units, as AssemblyScript strings are
      } else {
        this.fail("bad escape");
        return null;
      }
      start = this.i;
    }
    this.fail("unterminated string");
    return null;
  }
  value(depth: i32): JSONValue | null {
    this.ws();
    if (depth > MAX_DEPTH) return this.fail("nested too deep");
    if (this.i >= this.s.length) return this.fail("value expected");
    const v = new JSONValue();
    const c = this.s.charCodeAt(this.i);
    if (c == 34) {
      const s = this.string();
      if (s == null) return null;
      v.kind = JSONKind.STRING;
      v.str = s;
      return v;
    }
    if (c == 123 || c == 91) {
      const obj = c == 123;
      const close = obj ? 125 : 93;
      v.kind = obj ? JSONKind.OBJECT : JSONKind.ARRAY;
      this.i++;
      this.ws();
      if (this.i < this.s.length && this.s.charCodeAt(this.i) == close) {
        this.i++;
        return v;
      }
      for (;;) {
        this.ws();
        if (obj) {
          if (this.i >= this.s.length || this.s.charCodeAt(this.i) != 34) return this.fail("member name expected");
          const k = this.string();
          if (k == null) return null;
          this.ws();
          if (this.i >= this.s.length || this.s.charCodeAt(this.i) != 58) return this.fail("':' expected");
          this.i++;
          v.keys.push(k);
        }
        const item = this.value(depth + 1);
        if (item == null) return null;
        v.items.push(item);
        this.ws();
        if (this.i < this.s.length && this.s.charCodeAt(this.i) == 44) {
          this.i++;
          continue;
        }
        if (this.i < this.s.length && this.s.charCodeAt(this.i) == close) {
          this.i++;
          return v;
        }
        return this.fail(obj ? "',' or '}' expected" : "',' or ']' expected");
      }
    }
    if (this.lit("null")) return v;
    if (this.lit("true")) {
      v.kind = JSONKind.BOOL;
      v.bool = true;
      return v;
    }
    if (this.lit("false")) {
      v.kind = JSONKind.BOOL;
      return v;
    }
    // a number
    const start = this.i;
    if (this.s.charCodeAt(this.i) == 45) this.i++;
    if (!this.digits(true)) return this.fail("value expected");
    if (this.i < this.s.length && this.s.charCodeAt(this.i) == 46) {
      this.i++;
      if (!this.digits(false)) return this.fail("digit expected");
    }
    if (this.i < this.s.length && (this.s.charCodeAt(this.i) | 32) == 101) {
      this.i++;
      if (this.i < this.s.length && (this.s.charCodeAt(this.i) == 43 || this.s.charCodeAt(this.i) == 45)) this.i++;
      if (!this.digits(false)) return this.fail("digit expected");
    }
    v.kind = JSONKind.NUMBER;
    v.number = this.s.substring(start, this.i);
    return v;
  }
  digits(integer: bool): bool {
    const start = this.i;
    if (integer && this.i < this.s.length && this.s.charCodeAt(this.i) == 48) {
      this.i++;
      return true;
    }
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c < 48 || c > 57) break;
      this.i++;
    }
    return this.i > start;
  }
}

/** parseJSON parses text as one JSON value; null (and jsonError) when it is not JSON. */
export function parseJSON(text: string): JSONValue | null {
  const p = new Parser(text);
  const v = p.value(0);
  if (v != null) {
    p.ws();
    if (p.i != text.length) {
      p.fail("text after the value");
      jsonError = p.err;
      return null;
    }
  }
  jsonError = p.err;
  return v;
}
