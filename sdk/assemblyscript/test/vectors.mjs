// Runs the AssemblyScript SDK's test module (build/vectors.wasm, from
// test/vectors.ts) under node: every record of abi/testdata decodes to
// the values of its .json, and so does the same record as a later minor
// version would send it (extra trailing bytes); cuts of a record decode
// or are refused without trapping; filterCovers and the JSON reader pass
// their cases.
//
//   node test/vectors.mjs build/vectors.wasm ../../abi/testdata
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const [wasmPath, dir] = process.argv.slice(2);
if (!wasmPath || !dir) {
  console.error("usage: node test/vectors.mjs VECTORS.wasm TESTDATA_DIR");
  process.exit(2);
}
const module = new WebAssembly.Module(readFileSync(wasmPath));
const logs = [];
let memory;
const imports = {};
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== "propolis_v1" || imp.name !== "log") {
    console.error(`the test module imports ${imp.module}.${imp.name}, which the SDK's decoders must not need`);
    process.exit(1);
  }
  imports.propolis_v1 = {
    log: (level, ptr, len) => {
      logs.push(new TextDecoder().decode(new Uint8Array(memory.buffer, ptr, len)));
      return 0;
    },
  };
}
const { exports } = new WebAssembly.Instance(module, imports);
memory = exports.memory;
// asconfig.json exports the start function instead of a start section:
// run it first, as the broker does. Without it the broker cannot add its
// interrupt check to the module.
if (typeof exports._initialize !== "function") throw new Error("no _initialize export: asconfig.json lost exportStart");
exports._initialize();

let failures = 0;
const fail = (what) => {
  console.error("FAIL " + what);
  failures++;
};

// asString reads an AssemblyScript string (UTF-16, its byte length in the
// 4 bytes before it).
const asString = (ptr) => {
  const n = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
  return new TextDecoder("utf-16le").decode(new Uint8Array(memory.buffer, ptr, n));
};

const decode = (rec) => {
  const ptr = exports.propolis_buffer(Math.max(rec.length, 4096));
  if (ptr === 0) throw new Error("propolis_buffer answered 0");
  new Uint8Array(memory.buffer, ptr, rec.length).set(rec);
  return asString(exports.decode(rec.length));
};

const parseHex = (text) =>
  Uint8Array.from(
    text
      .split("\n")
      .map((l) => l.replace(/#.*/, ""))
      .join("")
      .replace(/\s+/g, "")
      .match(/../g)
      .map((h) => parseInt(h, 16)),
  );

// Bytes fields are base64 in the vectors (Go's encoding/json), arrays of
// numbers from the test module; none is null in the vectors, [] or "" here.
const bytesFields = new Set(["password", "will_payload", "payload", "correlation_data"]);

const compare = (name, got, want) => {
  const gotKeys = Object.keys(got).sort().join(",");
  const wantKeys = Object.keys(want).sort().join(",");
  if (gotKeys !== wantKeys) fail(`${name}: fields ${gotKeys}, want ${wantKeys}`);
  for (const [k, w] of Object.entries(want)) {
    let exp = w;
    if (bytesFields.has(k)) exp = w === null ? [] : [...Buffer.from(w, "base64")];
    else if (w === null) exp = [];
    if (JSON.stringify(got[k]) !== JSON.stringify(exp)) fail(`${name}: ${k} = ${JSON.stringify(got[k])}, want ${JSON.stringify(exp)}`);
  }
};

const names = readdirSync(dir).filter((f) => f.endsWith(".hex")).map((f) => f.slice(0, -4));
if (names.length === 0) {
  console.error(`no vectors in ${dir}`);
  process.exit(2);
}
for (const name of names) {
  const rec = parseHex(readFileSync(join(dir, name + ".hex"), "utf8"));
  // The u64 time (beyond 2^53) is compared as its decimal text.
  const want = JSON.parse(readFileSync(join(dir, name + ".json"), "utf8").replace(/"time":\s*(\d+)/g, '"time": "$1"'));
  const out = decode(rec);
  if (out === "malformed" || out.startsWith("unknown kind")) {
    fail(`${name}: ${out}`);
    continue;
  }
  compare(name, JSON.parse(out), want);

  const longer = new Uint8Array(rec.length + 5);
  longer.set(rec);
  longer.set([1, 2, 3, 4, 5], rec.length);
  new DataView(longer.buffer).setUint32(0, longer.length, true);
  compare(name + " (later minor)", JSON.parse(decode(longer)), want);

  new DataView(longer.buffer).setUint32(0, rec.length, true);
  compare(name + " (buffer longer than the record)", JSON.parse(decode(longer)), want);

  for (let cut = 8; cut < rec.length; cut++) {
    const c = rec.slice(0, cut);
    new DataView(c.buffer).setUint32(0, cut, true);
    decode(c); // decodes (missing fields read as zero) or "malformed", never traps
  }
  const tooLong = rec.slice(0, rec.length - 1);
  if (decode(tooLong) !== "malformed") fail(`${name}: a header longer than its buffer decoded`);
}

// A PUBLISH cut after its user name: topic and payload read as empty.
const short = Uint8Array.from([22, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 1, 0, 0, 0, 99, 1, 0, 0, 0, 117]);
const s = JSON.parse(decode(short));
if (s.qos !== 1 || s.username !== "u" || s.topic !== "" || s.payload.length !== 0) fail("short publish: " + JSON.stringify(s));
short[17] = 2; // the user name's length now runs past the end
if (decode(short) !== "malformed") fail("a str cut short decoded");
short[4] = 4;
if (decode(short) !== "malformed") fail("a SUBSCRIBE decoded as a PUBLISH");

// The marker must say the minor version of the generated table (abi.ts).
const abiMinor = Number(/ABI_MINOR: i32 = (\d+);/.exec(readFileSync(new URL("../assembly/abi.ts", import.meta.url), "utf8"))[1]);
if (exports.propolis_abi_v1() !== abiMinor) fail("marker " + exports.propolis_abi_v1() + ", want " + abiMinor);
const p1 = exports.propolis_buffer(4096);
if (exports.propolis_buffer(100) !== p1) fail("a smaller record got a new buffer");
if (exports.propolis_buffer((4 << 20) + 1) !== 0) fail("a record beyond 4 MiB was accepted");
if (exports.propolis_buffer(4096) !== p1) fail("the buffer changed after a declined record");
// The largest record: its pages come from memory.grow, outside the heap;
// the heap goes on working after (selfTest allocates).
const big = exports.propolis_buffer(4 << 20);
if (big === 0 || big + (4 << 20) > exports.memory.buffer.byteLength) fail("no 4 MiB buffer: " + big);
new Uint8Array(exports.memory.buffer, big, 4 << 20).fill(0xff);
if (exports.propolis_buffer(5000) !== big) fail("a smaller record after the largest got a new buffer");

const self = asString(exports.selfTest());
if (self !== "") fail("selfTest: " + self);
if (logs.length) fail("unexpected log lines: " + logs.join("; "));

if (failures) {
  console.error(`AssemblyScript SDK: ${failures} failures`);
  process.exit(1);
}
console.log(`AssemblyScript SDK: ${names.length} record vectors, buffer, filters, JSON reader and SHA-256 ok`);
