//! Records (ABI.md section 4): the flat little-endian inputs the host
//! writes into the module's buffer before a callback.
//!
//! Every record is decoded into a view borrowing the buffer: no copy, no
//! allocation, valid for the callback only. Decoding checks every length
//! against the bytes there are, so a malformed or truncated record is a
//! [`DecodeError`], never a read outside the record. Forward compatibility
//! is ABI.md's rule: fields a later minor version appends are ignored, and
//! a field missing because the record ends before it (an older host) reads
//! as zero or empty; a field cut in half is an error.

use crate::abi;
use std::fmt;

/// The size of the header every record starts with.
pub const HEADER_SIZE: usize = 8;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The record kind being decoded ("CONNECT").
    pub record: &'static str,
    /// The field being read when it failed ("header", "client_id").
    pub field: &'static str,
    /// What was wrong.
    pub problem: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} record: {}: {}", self.record, self.field, self.problem)
    }
}

impl std::error::Error for DecodeError {}

/// Reads the fields of one record in order, checking each against the
/// bytes left.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    record: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks the header of rec (length, kind) and positions the reader
    /// after it.
    fn new(rec: &'a [u8], kind: u16) -> Result<Reader<'a>, DecodeError> {
        let record = kind_name(kind);
        let err = |problem| DecodeError { record, field: "header", problem };
        if rec.len() < HEADER_SIZE {
            return Err(err("shorter than the 8-byte header"));
        }
        let length = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
        let got = u16::from_le_bytes([rec[4], rec[5]]);
        if length != rec.len() {
            return Err(err("length differs from the callback's length argument"));
        }
        if got != kind {
            return Err(err("wrong record kind for this callback"));
        }
        Ok(Reader { b: rec, pos: HEADER_SIZE, record })
    }

    /// A reader of fields with no header: a host service's result (ABI.md
    /// section 5, "Results"), named `what` in errors.
    pub(crate) fn fields(b: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { b, pos: 0, record: what }
    }

    /// Whether every byte was read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.b.len()
    }

    fn err(&self, field: &'static str, problem: &'static str) -> DecodeError {
        DecodeError { record: self.record, field, problem }
    }

    /// Takes n bytes; at the very end of the record, None (the field is
    /// absent); with fewer than n left, an error.
    fn take(&mut self, n: usize, field: &'static str) -> Result<Option<&'a [u8]>, DecodeError> {
        let left = self.b.len() - self.pos;
        if left == 0 {
            return Ok(None);
        }
        if left < n {
            return Err(self.err(field, "cut short by the end of the record"));
        }
        let v = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(Some(v))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?.map_or(0, |v| v[0]))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(self.take(2, field)?.map_or(0, |v| u16::from_le_bytes([v[0], v[1]])))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(self.take(4, field)?.map_or(0, |v| u32::from_le_bytes([v[0], v[1], v[2], v[3]])))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(self.take(8, field)?.map_or(0, |v| {
            let mut a = [0u8; 8];
            a.copy_from_slice(v);
            u64::from_le_bytes(a)
        }))
    }

    /// A `str` read as bytes (payloads, passwords).
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = match self.take(4, field)? {
            None => return Ok(&[]),
            Some(v) => u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize,
        };
        if n > self.b.len() - self.pos {
            return Err(self.err(field, "length beyond the end of the record"));
        }
        let v = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(v)
    }

    /// A `str` holding text, which must be UTF-8.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let v = self.bytes(field)?;
        std::str::from_utf8(v).map_err(|_| self.err(field, "not UTF-8"))
    }

    /// A list: its count, then `per` called count times to check each
    /// entry; returns the list's bytes (count included) for lazy reading.
    fn list(
        &mut self,
        field: &'static str,
        per: fn(&mut Reader<'a>, &'static str) -> Result<(), DecodeError>,
    ) -> Result<(u32, &'a [u8]), DecodeError> {
        let start = self.pos;
        let count = match self.take(4, field)? {
            None => return Ok((0, &[])),
            Some(v) => u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
        };
        for _ in 0..count {
            if self.pos == self.b.len() {
                return Err(self.err(field, "fewer entries than its count"));
            }
            per(self, field)?;
        }
        Ok((count, &self.b[start..self.pos]))
    }
}

fn kind_name(kind: u16) -> &'static str {
    for (k, name) in abi::KIND_NAMES {
        if *k == kind {
            return name;
        }
    }
    "unknown"
}

// Entry checkers for Reader::list: an entry must be whole (a missing
// field inside a list entry is an error, not a zero value).
fn whole_str<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<(), DecodeError> {
    if r.pos == r.b.len() {
        return Err(r.err(field, "entry cut short by the end of the record"));
    }
    r.str(field).map(|_| ())
}

fn whole_pair<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<(), DecodeError> {
    whole_str(r, field)?;
    whole_str(r, field)
}

fn whole_filter<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<(), DecodeError> {
    whole_str(r, field)?;
    if r.b.len() - r.pos < 2 {
        return Err(r.err(field, "entry cut short by the end of the record"));
    }
    r.pos += 2;
    Ok(())
}

/// Reads a checked list's entries; the list was validated when its record
/// was decoded, so the reads cannot fail (a failure ends the iteration).
#[derive(Clone)]
struct ListCursor<'a> {
    b: &'a [u8],
    pos: usize,
    left: u32,
}

impl<'a> ListCursor<'a> {
    fn new(count: u32, b: &'a [u8]) -> ListCursor<'a> {
        ListCursor { b, pos: if b.is_empty() { 0 } else { 4 }, left: count }
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.b.get(self.pos..self.pos + 4)?;
        let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
        let v = self.b.get(self.pos + 4..self.pos + 4 + n)?;
        self.pos += 4 + n;
        std::str::from_utf8(v).ok()
    }

    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
}

/// A `list<str>` of a record (a CONNECT's `tls_sans`), read lazily.
#[derive(Clone)]
pub struct StrList<'a> {
    count: u32,
    b: &'a [u8],
}

impl<'a> StrList<'a> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries, in record order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        let mut c = ListCursor::new(self.count, self.b);
        std::iter::from_fn(move || {
            if c.left == 0 {
                return None;
            }
            c.left -= 1;
            c.str()
        })
    }
}

/// A `list<str, str>` of a record: MQTT user properties, key and value, in
/// the packet's order (a key may repeat). Read lazily.
#[derive(Clone)]
pub struct Pairs<'a> {
    count: u32,
    b: &'a [u8],
}

impl<'a> Pairs<'a> {
    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The pairs, in packet order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let mut c = ListCursor::new(self.count, self.b);
        std::iter::from_fn(move || {
            if c.left == 0 {
                return None;
            }
            c.left -= 1;
            Some((c.str()?, c.str()?))
        })
    }

    /// The value of the first pair with this key.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let mut c = ListCursor::new(self.count, self.b);
        for _ in 0..self.count {
            let (k, v) = (c.str()?, c.str()?);
            if k == key {
                return Some(v);
            }
        }
        None
    }

    /// The list encoded as `packet_set` takes it for `user_properties`
    /// (a `u32` count, then the pairs): the record's own bytes, to which
    /// [`encode_pairs`] appends.
    pub fn raw(&self) -> &'a [u8] {
        self.b
    }
}

/// Encodes user properties as `packet_set` takes them for
/// `user_properties` (ABI.md section 5): a `u32` count, then each key and
/// value as a `u32` length and the bytes.
pub fn encode_pairs<'k, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'k str, &'k str)>,
{
    let mut out = vec![0, 0, 0, 0];
    let mut n: u32 = 0;
    for (k, v) in pairs {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        n += 1;
    }
    out[..4].copy_from_slice(&n.to_le_bytes());
    out
}

/// One topic filter of a `subscribe` or `unsubscribe` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterResult<'a> {
    /// The topic filter as the client sent it.
    pub filter: &'a str,
    /// The QoS requested.
    pub qos: u8,
    /// The reason code the broker answered (the granted QoS, or >= 0x80).
    pub code: u8,
}

/// The `filters` of an EVENT record, read lazily.
#[derive(Clone)]
pub struct Filters<'a> {
    count: u32,
    b: &'a [u8],
}

impl<'a> Filters<'a> {
    /// The number of filters.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The filters, in packet order.
    pub fn iter(&self) -> impl Iterator<Item = FilterResult<'a>> + '_ {
        let mut c = ListCursor::new(self.count, self.b);
        std::iter::from_fn(move || {
            if c.left == 0 {
                return None;
            }
            c.left -= 1;
            Some(FilterResult { filter: c.str()?, qos: c.u8()?, code: c.u8()? })
        })
    }
}

/// START (kind 1): what `propolis_start` gets.
#[derive(Clone)]
pub struct Start<'a> {
    /// The manifest's `id`.
    pub extension_id: &'a str,
    /// The manifest's `version`.
    pub extension_version: &'a str,
    /// The broker's version.
    pub broker_version: &'a str,
    /// The version this one replaces on a hot reload; empty otherwise.
    pub previous_version: &'a str,
    /// The manifest's `config` section as JSON (`{}` when absent); parse
    /// it with [`crate::json::parse`].
    pub config: &'a str,
    /// This instance's index within this load (1.1): 0 for the first.
    pub instance: u32,
}

impl<'a> Start<'a> {
    /// Decodes a START record.
    pub fn decode(rec: &'a [u8]) -> Result<Start<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_START)?;
        Ok(Start {
            extension_id: r.str("extension_id")?,
            extension_version: r.str("extension_version")?,
            broker_version: r.str("broker_version")?,
            previous_version: r.str("previous_version")?,
            config: r.str("config")?,
            instance: r.u32("instance")?,
        })
    }
}

/// CONNECT flags bits (the `flags` field of [`Connect`]).
pub mod connect_flags {
    /// Clean start (MQTT 5) or clean session (3.1.1).
    pub const CLEAN_START: u8 = 1 << 0;
    /// The CONNECT carries a user name.
    pub const HAS_USERNAME: u8 = 1 << 1;
    /// The CONNECT carries a password.
    pub const HAS_PASSWORD: u8 = 1 << 2;
    /// The CONNECT carries a will.
    pub const HAS_WILL: u8 = 1 << 3;
    /// The will is to be retained.
    pub const WILL_RETAIN: u8 = 1 << 4;
    /// The connection is over TLS.
    pub const TLS: u8 = 1 << 5;
}

/// CONNECT (kind 2): what `propolis_authenticate` and
/// `propolis_intercept_connect` get.
#[derive(Clone)]
pub struct Connect<'a> {
    /// 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub protocol_version: u8,
    /// The [`connect_flags`] bits.
    pub flags: u8,
    /// The will's QoS.
    pub will_qos: u8,
    /// Keepalive, in seconds.
    pub keepalive: u16,
    /// Session expiry, in seconds (MQTT 5).
    pub session_expiry: u32,
    /// The client id (as assigned by the broker when the client sent
    /// none; in `propolis_intercept_connect`, as sent, possibly empty).
    pub client_id: &'a str,
    /// The user name.
    pub username: &'a str,
    /// The password: any bytes.
    pub password: &'a [u8],
    /// The client's address, `host:port`.
    pub remote_addr: &'a str,
    /// The listener's name in the broker configuration.
    pub listener: &'a str,
    /// The verified client certificate's subject (RFC 2253), or empty.
    pub tls_subject: &'a str,
    /// The certificate's DNS names, IP addresses, URIs and e-mail addresses.
    pub tls_sans: StrList<'a>,
    /// The will's topic.
    pub will_topic: &'a str,
    /// The will's payload.
    pub will_payload: &'a [u8],
    /// The CONNECT's user properties.
    pub user_properties: Pairs<'a>,
    /// The CONNECT's Receive Maximum (1.2); 0 when the client sent none.
    pub receive_maximum: u16,
    /// The will's delay interval in seconds (1.2).
    pub will_delay: u32,
}

impl<'a> Connect<'a> {
    /// Decodes a CONNECT record.
    pub fn decode(rec: &'a [u8]) -> Result<Connect<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_CONNECT)?;
        let protocol_version = r.u8("protocol_version")?;
        let flags = r.u8("flags")?;
        let will_qos = r.u8("will_qos")?;
        r.u8("reserved")?;
        let keepalive = r.u16("keepalive")?;
        r.u16("reserved")?;
        let session_expiry = r.u32("session_expiry")?;
        let client_id = r.str("client_id")?;
        let username = r.str("username")?;
        let password = r.bytes("password")?;
        let remote_addr = r.str("remote_addr")?;
        let listener = r.str("listener")?;
        let tls_subject = r.str("tls_subject")?;
        let (n, b) = r.list("tls_sans", whole_str)?;
        let tls_sans = StrList { count: n, b };
        let will_topic = r.str("will_topic")?;
        let will_payload = r.bytes("will_payload")?;
        let (n, b) = r.list("user_properties", whole_pair)?;
        let user_properties = Pairs { count: n, b };
        let receive_maximum = r.u16("receive_maximum")?;
        r.u16("reserved")?;
        let will_delay = r.u32("will_delay")?;
        Ok(Connect {
            protocol_version,
            flags,
            will_qos,
            keepalive,
            session_expiry,
            client_id,
            username,
            password,
            remote_addr,
            listener,
            tls_subject,
            tls_sans,
            will_topic,
            will_payload,
            user_properties,
            receive_maximum,
            will_delay,
        })
    }

    /// Whether the client asked for a clean start.
    pub fn clean_start(&self) -> bool {
        self.flags & connect_flags::CLEAN_START != 0
    }

    /// Whether the CONNECT carries a user name.
    pub fn has_username(&self) -> bool {
        self.flags & connect_flags::HAS_USERNAME != 0
    }

    /// Whether the CONNECT carries a password.
    pub fn has_password(&self) -> bool {
        self.flags & connect_flags::HAS_PASSWORD != 0
    }

    /// Whether the CONNECT carries a will.
    pub fn has_will(&self) -> bool {
        self.flags & connect_flags::HAS_WILL != 0
    }

    /// Whether the connection is over TLS.
    pub fn tls(&self) -> bool {
        self.flags & connect_flags::TLS != 0
    }
}

/// PUBLISH (kind 3): what `propolis_authorize_publish` gets, for a client's
/// PUBLISH or the will of a CONNECT being authenticated.
#[derive(Clone)]
pub struct Publish<'a> {
    /// The QoS.
    pub qos: u8,
    /// Bit 0 retain, bit 1 this is a will.
    pub flags: u8,
    /// The publishing client.
    pub client_id: &'a str,
    /// Its user name.
    pub username: &'a str,
    /// The topic name.
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    /// Decodes a PUBLISH record.
    pub fn decode(rec: &'a [u8]) -> Result<Publish<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_PUBLISH)?;
        let qos = r.u8("qos")?;
        let flags = r.u8("flags")?;
        r.u16("reserved")?;
        Ok(Publish {
            qos,
            flags,
            client_id: r.str("client_id")?,
            username: r.str("username")?,
            topic: r.str("topic")?,
            payload: r.bytes("payload")?,
        })
    }

    /// Whether the message is to be retained.
    pub fn retain(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Whether this is the will of a CONNECT being authenticated.
    pub fn is_will(&self) -> bool {
        self.flags & 2 != 0
    }
}

/// SUBSCRIBE (kind 4): one topic filter, what `propolis_authorize_subscribe`
/// gets.
#[derive(Clone)]
pub struct Subscribe<'a> {
    /// The maximum QoS requested.
    pub qos: u8,
    /// Bit 0 shared subscription.
    pub flags: u8,
    /// The subscribing client.
    pub client_id: &'a str,
    /// Its user name.
    pub username: &'a str,
    /// The topic filter (a shared one with its `$share/<group>/` prefix).
    pub filter: &'a str,
}

impl<'a> Subscribe<'a> {
    /// Decodes a SUBSCRIBE record.
    pub fn decode(rec: &'a [u8]) -> Result<Subscribe<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_SUBSCRIBE)?;
        let qos = r.u8("qos")?;
        let flags = r.u8("flags")?;
        r.u16("reserved")?;
        Ok(Subscribe { qos, flags, client_id: r.str("client_id")?, username: r.str("username")?, filter: r.str("filter")? })
    }

    /// Whether this is a shared subscription (`$share/<group>/<filter>`).
    pub fn shared(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// EVENT (kind 5): what `propolis_on_event` gets.
#[derive(Clone)]
pub struct Event<'a> {
    /// The event kind: one of `abi::EVENT_*`; see [`Event::name`].
    pub event: u8,
    /// For `disconnect`: who ended the connection (`abi::DISCONNECT_*`).
    pub disconnect_kind: u8,
    /// The reason code of a refused CONNECT or of a disconnect.
    pub reason_code: u8,
    /// The client's protocol version.
    pub protocol_version: u8,
    /// When it happened, Unix nanoseconds.
    pub time: u64,
    /// The client.
    pub client_id: &'a str,
    /// Its user name.
    pub username: &'a str,
    /// The listener it came through.
    pub listener: &'a str,
    /// Its address.
    pub remote_addr: &'a str,
    /// The reason string, if any.
    pub reason_string: &'a str,
    /// For `subscribe` and `unsubscribe`: the filters and the answers.
    pub filters: Filters<'a>,
}

impl<'a> Event<'a> {
    /// Decodes an EVENT record.
    pub fn decode(rec: &'a [u8]) -> Result<Event<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_EVENT)?;
        let event = r.u8("event")?;
        let disconnect_kind = r.u8("disconnect_kind")?;
        let reason_code = r.u8("reason_code")?;
        let protocol_version = r.u8("protocol_version")?;
        let time = r.u64("time")?;
        let client_id = r.str("client_id")?;
        let username = r.str("username")?;
        let listener = r.str("listener")?;
        let remote_addr = r.str("remote_addr")?;
        let reason_string = r.str("reason_string")?;
        let (n, b) = r.list("filters", whole_filter)?;
        Ok(Event {
            event,
            disconnect_kind,
            reason_code,
            protocol_version,
            time,
            client_id,
            username,
            listener,
            remote_addr,
            reason_string,
            filters: Filters { count: n, b },
        })
    }

    /// The event's name as ABI.md spells it ("disconnect"), or "unknown".
    pub fn name(&self) -> &'static str {
        for (v, name) in abi::EVENT_NAMES {
            if *v == self.event {
                return name;
            }
        }
        "unknown"
    }

    /// The disconnect kind's name ("client", "lost", "server"), or "".
    pub fn disconnect_name(&self) -> &'static str {
        for (v, name) in abi::DISCONNECT_NAMES {
            if *v == self.disconnect_kind {
                return name;
            }
        }
        ""
    }
}

/// CONNACK (kind 6, 1.2): what `propolis_intercept_connack` gets.
#[derive(Clone)]
pub struct Connack<'a> {
    /// The reason code as it will be written (a 3.1.1 return code to a
    /// 3.1.1 client); 0 accepted.
    pub reason_code: u8,
    /// Bit 0 session present.
    pub flags: u8,
    /// 3, 4 or 5.
    pub protocol_version: u8,
    /// The client.
    pub client_id: &'a str,
    /// Its user name.
    pub username: &'a str,
    /// The reason string so far.
    pub reason_string: &'a str,
    /// The user properties so far.
    pub user_properties: Pairs<'a>,
}

impl<'a> Connack<'a> {
    /// Decodes a CONNACK record.
    pub fn decode(rec: &'a [u8]) -> Result<Connack<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_CONNACK)?;
        let reason_code = r.u8("reason_code")?;
        let flags = r.u8("flags")?;
        let protocol_version = r.u8("protocol_version")?;
        r.u8("reserved")?;
        let client_id = r.str("client_id")?;
        let username = r.str("username")?;
        let reason_string = r.str("reason_string")?;
        let (n, b) = r.list("user_properties", whole_pair)?;
        Ok(Connack { reason_code, flags, protocol_version, client_id, username, reason_string, user_properties: Pairs { count: n, b } })
    }
}

/// MESSAGE (kind 7, 1.2): what the publish interceptors get.
#[derive(Clone)]
pub struct Message<'a> {
    /// 1 inbound (from the client), 2 outbound (a delivery to it).
    pub direction: u8,
    /// The client's protocol version.
    pub protocol_version: u8,
    /// The publisher (inbound) or the subscriber (outbound).
    pub client_id: &'a str,
    /// The same client's user name.
    pub username: &'a str,
    /// The publishing client's id (empty for the broker's own messages).
    pub publisher: &'a str,
    /// The QoS (inbound: so far; outbound: of this delivery).
    pub qos: u8,
    /// Bit 0 retain.
    pub flags: u8,
    /// 0 bytes, 1 UTF-8.
    pub payload_format: u8,
    /// Seconds; 0 for none.
    pub message_expiry: u32,
    /// The topic name.
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// The user properties.
    pub user_properties: Pairs<'a>,
    /// The content type.
    pub content_type: &'a str,
    /// The response topic; empty for none.
    pub response_topic: &'a str,
    /// The correlation data.
    pub correlation_data: &'a [u8],
}

impl<'a> Message<'a> {
    /// Decodes a MESSAGE record.
    pub fn decode(rec: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_MESSAGE)?;
        let direction = r.u8("direction")?;
        let protocol_version = r.u8("protocol_version")?;
        r.u16("reserved")?;
        let client_id = r.str("client_id")?;
        let username = r.str("username")?;
        let publisher = r.str("publisher")?;
        let qos = r.u8("qos")?;
        let flags = r.u8("flags")?;
        let payload_format = r.u8("payload_format")?;
        r.u8("reserved")?;
        let message_expiry = r.u32("message_expiry")?;
        let topic = r.str("topic")?;
        let payload = r.bytes("payload")?;
        let (n, b) = r.list("user_properties", whole_pair)?;
        Ok(Message {
            direction,
            protocol_version,
            client_id,
            username,
            publisher,
            qos,
            flags,
            payload_format,
            message_expiry,
            topic,
            payload,
            user_properties: Pairs { count: n, b },
            content_type: r.str("content_type")?,
            response_topic: r.str("response_topic")?,
            correlation_data: r.bytes("correlation_data")?,
        })
    }

    /// Whether the message is retained.
    pub fn retain(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// SUBSCRIPTION (kind 8, 1.2): what `propolis_intercept_subscribe` gets.
#[derive(Clone)]
pub struct Subscription<'a> {
    /// The maximum QoS requested.
    pub qos: u8,
    /// Bit 0 no local, bit 1 retain as published, bits 2-3 retain handling.
    pub options: u8,
    /// 3, 4 or 5.
    pub protocol_version: u8,
    /// Bit 0 shared subscription.
    pub flags: u8,
    /// The subscription identifier (MQTT 5), 0 for none.
    pub identifier: u32,
    /// The subscribing client.
    pub client_id: &'a str,
    /// Its user name.
    pub username: &'a str,
    /// The topic filter.
    pub filter: &'a str,
    /// The SUBSCRIBE's user properties (read only).
    pub user_properties: Pairs<'a>,
}

impl<'a> Subscription<'a> {
    /// Decodes a SUBSCRIPTION record.
    pub fn decode(rec: &'a [u8]) -> Result<Subscription<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_SUBSCRIPTION)?;
        let qos = r.u8("qos")?;
        let options = r.u8("options")?;
        let protocol_version = r.u8("protocol_version")?;
        let flags = r.u8("flags")?;
        let identifier = r.u32("identifier")?;
        let client_id = r.str("client_id")?;
        let username = r.str("username")?;
        let filter = r.str("filter")?;
        let (n, b) = r.list("user_properties", whole_pair)?;
        Ok(Subscription {
            qos,
            options,
            protocol_version,
            flags,
            identifier,
            client_id,
            username,
            filter,
            user_properties: Pairs { count: n, b },
        })
    }
}

/// DISCONNECT (kind 9, 1.2): what `propolis_intercept_disconnect` gets.
#[derive(Clone)]
pub struct Disconnect<'a> {
    /// 1 the client sent it, 2 the broker is about to send it.
    pub direction: u8,
    /// The MQTT 5 reason code (0 normal disconnection).
    pub reason_code: u8,
    /// 3, 4 or 5.
    pub protocol_version: u8,
    /// The client.
    pub client_id: &'a str,
    /// Its user name.
    pub username: &'a str,
    /// The reason string.
    pub reason_string: &'a str,
    /// The user properties.
    pub user_properties: Pairs<'a>,
}

impl<'a> Disconnect<'a> {
    /// Decodes a DISCONNECT record.
    pub fn decode(rec: &'a [u8]) -> Result<Disconnect<'a>, DecodeError> {
        let mut r = Reader::new(rec, abi::KIND_DISCONNECT)?;
        let direction = r.u8("direction")?;
        let reason_code = r.u8("reason_code")?;
        let protocol_version = r.u8("protocol_version")?;
        r.u8("reserved")?;
        let client_id = r.str("client_id")?;
        let username = r.str("username")?;
        let reason_string = r.str("reason_string")?;
        let (n, b) = r.list("user_properties", whole_pair)?;
        Ok(Disconnect {
            direction,
            reason_code,
            protocol_version,
            client_id,
            username,
            reason_string,
            user_properties: Pairs { count: n, b },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_record(fields: &[u8]) -> Vec<u8> {
        let mut rec = Vec::new();
        rec.extend_from_slice(&((8 + fields.len()) as u32).to_le_bytes());
        rec.extend_from_slice(&abi::KIND_PUBLISH.to_le_bytes());
        rec.extend_from_slice(&2u16.to_le_bytes());
        rec.extend_from_slice(fields);
        rec
    }

    #[test]
    fn truncated_record_reads_zero_values() {
        // qos 1, flags 0, reserved, client_id "c": the rest is missing.
        let rec = publish_record(&[1, 0, 0, 0, 1, 0, 0, 0, b'c']);
        let p = Publish::decode(&rec).unwrap();
        assert_eq!((p.qos, p.client_id, p.username, p.topic, p.payload.len()), (1, "c", "", "", 0));
    }

    #[test]
    fn field_cut_in_half_is_an_error() {
        let rec = publish_record(&[1, 0, 0, 0, 1, 0]);
        let e = Publish::decode(&rec).err().unwrap();
        assert_eq!(e.to_string(), "PUBLISH record: client_id: cut short by the end of the record");
    }

    #[test]
    fn length_beyond_the_record_is_an_error() {
        let rec = publish_record(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'c']);
        let e = Publish::decode(&rec).err().unwrap();
        assert_eq!(e.to_string(), "PUBLISH record: client_id: length beyond the end of the record");
    }

    #[test]
    fn header_checks() {
        assert_eq!(Publish::decode(&[1, 2, 3]).err().unwrap().problem, "shorter than the 8-byte header");
        let mut rec = publish_record(&[0, 0, 0, 0]);
        rec[0] = 99;
        assert_eq!(Publish::decode(&rec).err().unwrap().problem, "length differs from the callback's length argument");
        let rec = publish_record(&[0, 0, 0, 0]);
        assert_eq!(Subscribe::decode(&rec).err().unwrap().to_string(), "SUBSCRIBE record: header: wrong record kind for this callback");
    }

    #[test]
    fn text_must_be_utf8_bytes_need_not() {
        let rec = publish_record(&[0, 0, 0, 0, 1, 0, 0, 0, 0xff]);
        assert_eq!(Publish::decode(&rec).err().unwrap().field, "client_id");
        let mut f = vec![0, 0, 0, 0];
        for s in [&b"c"[..], b"u", b"t", &[0xff, 0x00]] {
            f.extend_from_slice(&(s.len() as u32).to_le_bytes());
            f.extend_from_slice(s);
        }
        let rec = publish_record(&f);
        assert_eq!(Publish::decode(&rec).unwrap().payload, &[0xff, 0x00]);
    }

    #[test]
    fn trailing_bytes_of_a_later_minor_are_ignored() {
        let mut f = vec![2, 1, 0, 0];
        for s in ["c", "u", "t", "p"] {
            f.extend_from_slice(&(s.len() as u32).to_le_bytes());
            f.extend_from_slice(s.as_bytes());
        }
        f.extend_from_slice(&[9, 9, 9, 9, 9]);
        let rec = publish_record(&f);
        let p = Publish::decode(&rec).unwrap();
        assert_eq!((p.qos, p.retain(), p.topic, p.payload), (2, true, "t", &b"p"[..]));
    }

    #[test]
    fn list_count_beyond_entries_is_an_error() {
        // A DISCONNECT whose user_properties claims 1000 pairs and holds none.
        let mut rec = Vec::new();
        let mut f = vec![1, 0, 5, 0];
        for _ in 0..3 {
            f.extend_from_slice(&0u32.to_le_bytes());
        }
        f.extend_from_slice(&1000u32.to_le_bytes());
        rec.extend_from_slice(&((8 + f.len()) as u32).to_le_bytes());
        rec.extend_from_slice(&abi::KIND_DISCONNECT.to_le_bytes());
        rec.extend_from_slice(&2u16.to_le_bytes());
        rec.extend_from_slice(&f);
        let e = Disconnect::decode(&rec).err().unwrap();
        assert_eq!(e.to_string(), "DISCONNECT record: user_properties: fewer entries than its count");
    }

    #[test]
    fn encode_pairs_layout() {
        let b = encode_pairs([("source", "edge")]);
        assert_eq!(b.len(), 22);
        assert_eq!(&b[..8], &[1, 0, 0, 0, 6, 0, 0, 0]);
    }
}
