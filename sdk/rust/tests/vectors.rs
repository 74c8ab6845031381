//! The shared ABI vectors (abi/testdata/*.hex with their *.json values),
//! decoded by this SDK and compared field by field; then every vector cut
//! short, extended and corrupted, which must decode or fail cleanly.
//!
//! Run natively: sdk/rust/build.sh -test (or `make test-sdk-rust`). The
//! vectors are found through $PROPOLIS_ABI_TESTDATA, else abi/testdata in
//! the working directory or one of its parents.

use propolis::json::{self, Value};
use propolis::record::{encode_pairs, Pairs};
use propolis::{host::OutMessage, Connack, Connect, Disconnect, Event, Message, Publish, Start, Subscribe, Subscription};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn testdata() -> PathBuf {
    if let Ok(d) = std::env::var("PROPOLIS_ABI_TESTDATA") {
        return PathBuf::from(d);
    }
    let mut dir = std::env::current_dir().unwrap();
    loop {
        let cand = dir.join("abi").join("testdata");
        if cand.is_dir() {
            return cand;
        }
        if !dir.pop() {
            panic!("abi/testdata not found from the working directory; set PROPOLIS_ABI_TESTDATA");
        }
    }
}

/// Reads an annotated hex vector: hex digits, "#" comments.
fn read_hex(name: &str) -> Vec<u8> {
    let path = testdata().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e));
    let mut digits = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap();
        digits.extend(line.bytes().filter(|c| !c.is_ascii_whitespace()));
    }
    assert!(digits.len() % 2 == 0, "{}: odd number of hex digits", name);
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap_or_else(|_| panic!("{}: bad hex {:?}", name, p)))
        .collect()
}

fn read_json(name: &str) -> Value {
    let path = testdata().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e));
    json::parse(&text).unwrap_or_else(|e| panic!("{}: {}", name, e))
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 {:?}", s),
        }
    };
    let mut out = Vec::new();
    for chunk in s.trim_end_matches('=').as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// The expected values of one vector, noting which keys a test read so
/// that a key the SDK does not check fails the test.
struct Want {
    name: String,
    v: Value,
    seen: BTreeSet<String>,
}

impl Want {
    fn new(name: &str) -> Want {
        Want { name: name.to_string(), v: read_json(&format!("{}.json", name)), seen: BTreeSet::new() }
    }

    fn get(&mut self, key: &str) -> &Value {
        self.seen.insert(key.to_string());
        let name = self.name.clone();
        self.v.get(key).unwrap_or_else(|| panic!("{}.json has no {}", name, key))
    }

    fn num(&mut self, key: &str) -> u64 {
        let name = self.name.clone();
        self.get(key).as_u64().unwrap_or_else(|| panic!("{}.json: {} is not an integer", name, key))
    }

    fn text(&mut self, key: &str) -> String {
        self.get(key).as_str().unwrap().to_string()
    }

    fn bytes(&mut self, key: &str) -> Vec<u8> {
        match self.get(key) {
            Value::Null => Vec::new(),
            v => base64(v.as_str().unwrap()),
        }
    }

    fn pairs(&mut self, key: &str) -> Vec<(String, String)> {
        match self.get(key) {
            Value::Null => Vec::new(),
            v => v
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p.get("key").unwrap().as_str().unwrap().to_string(), p.get("value").unwrap().as_str().unwrap().to_string()))
                .collect(),
        }
    }

    fn strs(&mut self, key: &str) -> Vec<String> {
        match self.get(key) {
            Value::Null => Vec::new(),
            v => v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        }
    }

    /// Fails when the JSON holds a key no assertion read.
    fn done(self) {
        for (k, _) in self.v.as_object().unwrap() {
            assert!(
                self.seen.contains(k),
                "{}.json: field {} is not checked by the Rust SDK's test (a new field? decode it)",
                self.name,
                k
            );
        }
    }
}

fn pairs(p: &Pairs) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every record vector, with the decoder for its kind.
const RECORDS: &[(&str, fn(&[u8]) -> bool)] = &[
    ("start", |r| Start::decode(r).is_ok()),
    ("connect", |r| Connect::decode(r).is_ok()),
    ("connect_minimal", |r| Connect::decode(r).is_ok()),
    ("publish", |r| Publish::decode(r).is_ok()),
    ("subscribe", |r| Subscribe::decode(r).is_ok()),
    ("event", |r| Event::decode(r).is_ok()),
    ("event_subscribe", |r| Event::decode(r).is_ok()),
    ("connack", |r| Connack::decode(r).is_ok()),
    ("message_inbound", |r| Message::decode(r).is_ok()),
    ("message_outbound", |r| Message::decode(r).is_ok()),
    ("subscription", |r| Subscription::decode(r).is_ok()),
    ("disconnect", |r| Disconnect::decode(r).is_ok()),
];

#[test]
fn every_vector_is_covered() {
    let mut files: Vec<String> = std::fs::read_dir(testdata())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".hex").map(str::to_string))
        .collect();
    files.sort();
    let mut known: Vec<String> = RECORDS.iter().map(|(n, _)| n.to_string()).collect();
    known.sort();
    assert_eq!(files, known, "abi/testdata's record vectors and this test's list differ");
}

#[test]
fn start() {
    let rec = read_hex("start.hex");
    let s = Start::decode(&rec).unwrap();
    let mut w = Want::new("start");
    assert_eq!(s.extension_id, w.text("extension_id"));
    assert_eq!(s.extension_version, w.text("extension_version"));
    assert_eq!(s.broker_version, w.text("broker_version"));
    assert_eq!(s.previous_version, w.text("previous_version"));
    assert_eq!(s.config, w.text("config"));
    assert_eq!(s.instance as u64, w.num("instance"));
    w.done();
    // The config is JSON this SDK reads.
    assert_eq!(json::parse(s.config).unwrap().get("prefix").unwrap().as_str(), Some("devices"));
}

fn check_connect(name: &str) {
    let rec = read_hex(&format!("{}.hex", name));
    let c = Connect::decode(&rec).unwrap();
    let mut w = Want::new(name);
    assert_eq!(c.protocol_version as u64, w.num("protocol_version"));
    assert_eq!(c.flags as u64, w.num("flags"));
    assert_eq!(c.will_qos as u64, w.num("will_qos"));
    assert_eq!(c.keepalive as u64, w.num("keepalive"));
    assert_eq!(c.session_expiry as u64, w.num("session_expiry"));
    assert_eq!(c.client_id, w.text("client_id"));
    assert_eq!(c.username, w.text("username"));
    assert_eq!(c.password, &w.bytes("password")[..]);
    assert_eq!(c.remote_addr, w.text("remote_addr"));
    assert_eq!(c.listener, w.text("listener"));
    assert_eq!(c.tls_subject, w.text("tls_subject"));
    assert_eq!(c.tls_sans.iter().map(str::to_string).collect::<Vec<_>>(), w.strs("tls_sans"));
    assert_eq!(c.tls_sans.len(), w.strs("tls_sans").len());
    assert_eq!(c.will_topic, w.text("will_topic"));
    assert_eq!(c.will_payload, &w.bytes("will_payload")[..]);
    assert_eq!(pairs(&c.user_properties), w.pairs("user_properties"));
    assert_eq!(c.receive_maximum as u64, w.num("receive_maximum"));
    assert_eq!(c.will_delay as u64, w.num("will_delay"));
    w.done();
}

#[test]
fn connect() {
    check_connect("connect");
    let rec = read_hex("connect.hex");
    let c = Connect::decode(&rec).unwrap();
    assert!(c.clean_start() && c.has_username() && c.has_password() && c.has_will() && c.tls());
    assert_eq!(c.user_properties.get("fw"), Some("2.1"));
}

#[test]
fn connect_minimal() {
    check_connect("connect_minimal");
}

#[test]
fn publish() {
    let rec = read_hex("publish.hex");
    let p = Publish::decode(&rec).unwrap();
    let mut w = Want::new("publish");
    assert_eq!(p.qos as u64, w.num("qos"));
    assert_eq!(p.flags as u64, w.num("flags"));
    assert_eq!(p.client_id, w.text("client_id"));
    assert_eq!(p.username, w.text("username"));
    assert_eq!(p.topic, w.text("topic"));
    assert_eq!(p.payload, &w.bytes("payload")[..]);
    w.done();
    assert!(p.retain() && !p.is_will());
}

#[test]
fn subscribe() {
    let rec = read_hex("subscribe.hex");
    let s = Subscribe::decode(&rec).unwrap();
    let mut w = Want::new("subscribe");
    assert_eq!(s.qos as u64, w.num("qos"));
    assert_eq!(s.flags as u64, w.num("flags"));
    assert_eq!(s.client_id, w.text("client_id"));
    assert_eq!(s.username, w.text("username"));
    assert_eq!(s.filter, w.text("filter"));
    w.done();
    assert!(s.shared());
}

fn check_event(name: &str) {
    let rec = read_hex(&format!("{}.hex", name));
    let e = Event::decode(&rec).unwrap();
    let mut w = Want::new(name);
    assert_eq!(e.event as u64, w.num("event"));
    assert_eq!(e.disconnect_kind as u64, w.num("disconnect_kind"));
    assert_eq!(e.reason_code as u64, w.num("reason_code"));
    assert_eq!(e.protocol_version as u64, w.num("protocol_version"));
    assert_eq!(e.time, w.num("time"));
    assert_eq!(e.client_id, w.text("client_id"));
    assert_eq!(e.username, w.text("username"));
    assert_eq!(e.listener, w.text("listener"));
    assert_eq!(e.remote_addr, w.text("remote_addr"));
    assert_eq!(e.reason_string, w.text("reason_string"));
    let want: Vec<(String, u64, u64)> = match w.get("filters") {
        Value::Null => Vec::new(),
        v => v
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f.get("filter").unwrap().as_str().unwrap().to_string(),
                    f.get("qos").unwrap().as_u64().unwrap(),
                    f.get("code").unwrap().as_u64().unwrap(),
                )
            })
            .collect(),
    };
    let got: Vec<(String, u64, u64)> = e.filters.iter().map(|f| (f.filter.to_string(), f.qos as u64, f.code as u64)).collect();
    assert_eq!(got, want);
    w.done();
}

#[test]
fn event() {
    check_event("event");
    let rec = read_hex("event.hex");
    let e = Event::decode(&rec).unwrap();
    assert_eq!((e.name(), e.disconnect_name()), ("disconnect", "lost"));
}

#[test]
fn event_subscribe() {
    check_event("event_subscribe");
}

#[test]
fn connack() {
    let rec = read_hex("connack.hex");
    let c = Connack::decode(&rec).unwrap();
    let mut w = Want::new("connack");
    assert_eq!(c.reason_code as u64, w.num("reason_code"));
    assert_eq!(c.flags as u64, w.num("flags"));
    assert_eq!(c.protocol_version as u64, w.num("protocol_version"));
    assert_eq!(c.client_id, w.text("client_id"));
    assert_eq!(c.username, w.text("username"));
    assert_eq!(c.reason_string, w.text("reason_string"));
    assert_eq!(pairs(&c.user_properties), w.pairs("user_properties"));
    w.done();
}

fn check_message(name: &str) {
    let rec = read_hex(&format!("{}.hex", name));
    let m = Message::decode(&rec).unwrap();
    let mut w = Want::new(name);
    assert_eq!(m.direction as u64, w.num("direction"));
    assert_eq!(m.protocol_version as u64, w.num("protocol_version"));
    assert_eq!(m.client_id, w.text("client_id"));
    assert_eq!(m.username, w.text("username"));
    assert_eq!(m.publisher, w.text("publisher"));
    assert_eq!(m.qos as u64, w.num("qos"));
    assert_eq!(m.flags as u64, w.num("flags"));
    assert_eq!(m.payload_format as u64, w.num("payload_format"));
    assert_eq!(m.message_expiry as u64, w.num("message_expiry"));
    assert_eq!(m.topic, w.text("topic"));
    assert_eq!(m.payload, &w.bytes("payload")[..]);
    assert_eq!(pairs(&m.user_properties), w.pairs("user_properties"));
    assert_eq!(m.content_type, w.text("content_type"));
    assert_eq!(m.response_topic, w.text("response_topic"));
    assert_eq!(m.correlation_data, &w.bytes("correlation_data")[..]);
    w.done();
}

#[test]
fn message_inbound() {
    check_message("message_inbound");
}

#[test]
fn message_outbound() {
    check_message("message_outbound");
}

#[test]
fn subscription() {
    let rec = read_hex("subscription.hex");
    let s = Subscription::decode(&rec).unwrap();
    let mut w = Want::new("subscription");
    assert_eq!(s.qos as u64, w.num("qos"));
    assert_eq!(s.options as u64, w.num("options"));
    assert_eq!(s.protocol_version as u64, w.num("protocol_version"));
    assert_eq!(s.flags as u64, w.num("flags"));
    assert_eq!(s.identifier as u64, w.num("identifier"));
    assert_eq!(s.client_id, w.text("client_id"));
    assert_eq!(s.username, w.text("username"));
    assert_eq!(s.filter, w.text("filter"));
    assert_eq!(pairs(&s.user_properties), w.pairs("user_properties"));
    w.done();
}

#[test]
fn disconnect() {
    let rec = read_hex("disconnect.hex");
    let d = Disconnect::decode(&rec).unwrap();
    let mut w = Want::new("disconnect");
    assert_eq!(d.direction as u64, w.num("direction"));
    assert_eq!(d.reason_code as u64, w.num("reason_code"));
    assert_eq!(d.protocol_version as u64, w.num("protocol_version"));
    assert_eq!(d.client_id, w.text("client_id"));
    assert_eq!(d.username, w.text("username"));
    assert_eq!(d.reason_string, w.text("reason_string"));
    assert_eq!(pairs(&d.user_properties), w.pairs("user_properties"));
    w.done();
}

fn set_length(rec: &mut [u8]) {
    let n = rec.len() as u32;
    rec[..4].copy_from_slice(&n.to_le_bytes());
}

/// A record of a later minor version: extra bytes after the last field
/// are ignored.
#[test]
fn later_minor_trailing_bytes() {
    for (name, decodes) in RECORDS {
        let mut rec = read_hex(&format!("{}.hex", name));
        rec.extend_from_slice(&[0xAB; 13]);
        rec[6] = 9; // minor 9
        set_length(&mut rec);
        assert!(decodes(&rec), "{} with trailing bytes did not decode", name);
    }
}

/// Every prefix of every vector (an older host's shorter record, or a
/// record cut anywhere) decodes or fails with an error: never a panic, a
/// read past the end, or a hang. The header's length is kept consistent,
/// and also left inconsistent.
#[test]
fn every_prefix_decodes_or_errors() {
    for (name, decodes) in RECORDS {
        let full = read_hex(&format!("{}.hex", name));
        for n in 0..full.len() {
            let mut rec = full[..n].to_vec();
            let _ = decodes(&rec);
            if n >= 8 {
                set_length(&mut rec);
                let _ = decodes(&rec);
            }
        }
    }
}

/// Corrupted bytes (a deterministic pseudo-random walk over every vector)
/// decode or fail cleanly; lists and strings with huge lengths included.
#[test]
fn corrupted_records_decode_or_error() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (name, decodes) in RECORDS {
        let full = read_hex(&format!("{}.hex", name));
        for _ in 0..2000 {
            let mut rec = full.clone();
            for _ in 0..1 + next() % 4 {
                let i = 8 + (next() as usize) % (rec.len() - 8);
                rec[i] = next() as u8;
            }
            let _ = decodes(&rec);
        }
    }
}

/// The message argument of publish (abi/testdata/args/message.hex).
#[test]
fn message_argument() {
    let want = read_hex("args/message.hex");
    let m = OutMessage {
        qos: 1,
        retain: true,
        payload_format: 1,
        message_expiry: 60,
        topic: "lights/1",
        payload: b"on",
        user_properties: &[("room", "kitchen")],
        content_type: "text/plain",
        response_topic: "reply/1",
        correlation_data: &[1, 2],
    };
    assert_eq!(m.encode(), want);
}

/// The user_properties argument of packet_set
/// (abi/testdata/args/properties.hex).
#[test]
fn properties_argument() {
    let want = read_hex("args/properties.hex");
    assert_eq!(encode_pairs([("source", "edge"), ("unit", "°C")]), want);
}
