//! The host services of ABI 1.1 (ABI.md section 5, "Host services"), as
//! safe functions; `crate::host` re-exports them.
//!
//! Each needs its service granted in the manifest (`services:`), else
//! [`Error::NotPermitted`]; passes the extension's rate limit, else
//! [`Error::RateLimited`]; and may be called in `start`, `authenticate`,
//! `authorize_publish`, `authorize_subscribe`, `on_event` and `tick` (the
//! connection attributes not in `start` and `tick`, `http_request` not in
//! the authorizers), else [`Error::NotAvailable`]. A result larger than
//! the first buffer is fetched with `take_result`; a result that does not
//! decode as ABI.md lays it out is [`Error::Internal`].

use crate::abi::host as raw;
use crate::host::{found, len, status, with_result, Error, Result};
use crate::record::{DecodeError, Reader};

/// A malformed result is the host's fault: Internal.
fn decoded<T>(r: std::result::Result<T, DecodeError>) -> Result<T> {
    r.map_err(|_| Error::Internal)
}

/// A list entry's text: unlike a trailing field, an entry may not be cut
/// off by the end of the result (a count beyond the entries is an error,
/// not a loop over empty strings).
fn entry<'a>(r: &mut Reader<'a>, field: &'static str) -> std::result::Result<&'a [u8], DecodeError> {
    if r.at_end() {
        return Err(DecodeError { record: "result", field, problem: "fewer entries than its count" });
    }
    r.bytes(field)
}

fn entry_str<'a>(r: &mut Reader<'a>, field: &'static str) -> std::result::Result<String, DecodeError> {
    let b = entry(r, field)?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError { record: "result", field, problem: "not UTF-8" })
}

/// Reads connection attribute `key` of the connection the callback is
/// about (service `connection_attributes`); None when absent.
pub fn connection_attribute_get(key: &str) -> Result<Option<Vec<u8>>> {
    let k = key.as_bytes();
    let kl = len(k)?;
    found(with_result(|out, cap| unsafe { raw::connection_attribute_get(k.as_ptr(), kl, out, cap) }))
}

/// Sets connection attribute `key` (values at most 10,240 bytes; 65,536 per
/// connection in all). `NotFound` once the connection has ended.
pub fn connection_attribute_put(key: &str, value: &[u8]) -> Result<()> {
    let k = key.as_bytes();
    status(unsafe { raw::connection_attribute_put(k.as_ptr(), len(k)?, value.as_ptr(), len(value)?) }).map(|_| ())
}

/// Removes connection attribute `key`; a missing key is not an error.
pub fn connection_attribute_remove(key: &str) -> Result<()> {
    let k = key.as_bytes();
    status(unsafe { raw::connection_attribute_remove(k.as_ptr(), len(k)?) }).map(|_| ())
}

/// Reads session attribute `key` of client `client_id` (service
/// `session_attributes`); None when the session or the key does not exist.
pub fn session_attribute_get(client_id: &str, key: &str) -> Result<Option<Vec<u8>>> {
    let (c, k) = (client_id.as_bytes(), key.as_bytes());
    let (cl, kl) = (len(c)?, len(k)?);
    found(with_result(|out, cap| unsafe { raw::session_attribute_get(c.as_ptr(), cl, k.as_ptr(), kl, out, cap) }))
}

/// Sets session attribute `key` of client `client_id`, stamped with the
/// broker's clock; returns once stored.
pub fn session_attribute_put(client_id: &str, key: &str, value: &[u8]) -> Result<()> {
    let (c, k) = (client_id.as_bytes(), key.as_bytes());
    status(unsafe { raw::session_attribute_put(c.as_ptr(), len(c)?, k.as_ptr(), len(k)?, value.as_ptr(), len(value)?) }).map(|_| ())
}

/// Removes session attribute `key` of client `client_id`.
pub fn session_attribute_remove(client_id: &str, key: &str) -> Result<()> {
    let (c, k) = (client_id.as_bytes(), key.as_bytes());
    status(unsafe { raw::session_attribute_remove(c.as_ptr(), len(c)?, k.as_ptr(), len(k)?) }).map(|_| ())
}

/// Reads `key` from the extension's own storage (service `storage`); None
/// when absent.
pub fn storage_get(key: &[u8]) -> Result<Option<Vec<u8>>> {
    let kl = len(key)?;
    found(with_result(|out, cap| unsafe { raw::storage_get(key.as_ptr(), kl, out, cap) }))
}

/// Sets `key` in the extension's storage; returns once stored.
pub fn storage_put(key: &[u8], value: &[u8]) -> Result<()> {
    status(unsafe { raw::storage_put(key.as_ptr(), len(key)?, value.as_ptr(), len(value)?) }).map(|_| ())
}

/// Removes `key` from the extension's storage.
pub fn storage_remove(key: &[u8]) -> Result<()> {
    status(unsafe { raw::storage_remove(key.as_ptr(), len(key)?) }).map(|_| ())
}

/// Whether client `client_id` is connected: Some(true) connected,
/// Some(false) only an offline session, None no session (service
/// `clients`).
pub fn client_is_connected(client_id: &str) -> Result<Option<bool>> {
    let c = client_id.as_bytes();
    found(status(unsafe { raw::client_is_connected(c.as_ptr(), len(c)?) }).map(|n| n == 1))
}

/// Closes the connection of client `client_id`; an MQTT 5 client first
/// gets a DISCONNECT with `code` (>= 0x80) and `reason`. With
/// `prevent_will` its will is not published (service `clients`).
pub fn client_disconnect(client_id: &str, code: u8, reason: &str, prevent_will: bool) -> Result<()> {
    let (c, r) = (client_id.as_bytes(), reason.as_bytes());
    status(unsafe { raw::client_disconnect(c.as_ptr(), len(c)?, code as i32, r.as_ptr(), len(r)?, prevent_will as i32) }).map(|_| ())
}

/// Drops the authentication cache's answers for `client_id`, or all of
/// them when empty; returns how many (service `auth_cache`).
pub fn auth_cache_flush(client_id: &str) -> Result<u32> {
    let c = client_id.as_bytes();
    status(unsafe { raw::auth_cache_flush(c.as_ptr(), len(c)?) }).map(|n| n as u32)
}

/// A message the broker publishes (`publish`, `publish_to_client`; ABI.md
/// section 5, "Messages").
#[derive(Debug, Clone, Default)]
pub struct OutMessage<'a> {
    /// 0, 1 or 2.
    pub qos: u8,
    /// Retain it (not with `publish_to_client`).
    pub retain: bool,
    /// 0 bytes, 1 UTF-8.
    pub payload_format: u8,
    /// Seconds; 0 for none.
    pub message_expiry: u32,
    /// A topic name.
    pub topic: &'a str,
    /// The payload.
    pub payload: &'a [u8],
    /// User properties.
    pub user_properties: &'a [(&'a str, &'a str)],
    /// Content type; empty for none.
    pub content_type: &'a str,
    /// Response topic; empty for none.
    pub response_topic: &'a str,
    /// Correlation data; empty for none.
    pub correlation_data: &'a [u8],
}

impl<'a> OutMessage<'a> {
    /// The message as `publish` takes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.qos, self.retain as u8, self.payload_format, 0];
        out.extend_from_slice(&self.message_expiry.to_le_bytes());
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        put(&mut out, self.topic.as_bytes());
        put(&mut out, self.payload);
        out.extend_from_slice(&(self.user_properties.len() as u32).to_le_bytes());
        for (k, v) in self.user_properties {
            put(&mut out, k.as_bytes());
            put(&mut out, v.as_bytes());
        }
        put(&mut out, self.content_type.as_bytes());
        put(&mut out, self.response_topic.as_bytes());
        put(&mut out, self.correlation_data);
        out
    }
}

/// Publishes a message as the broker to every matching subscription (no
/// authorizer is asked). Service `publish`.
pub fn publish(msg: &OutMessage<'_>) -> Result<()> {
    let b = msg.encode();
    status(unsafe { raw::publish(b.as_ptr(), len(&b)?) }).map(|_| ())
}

/// Publishes a message to client `client_id` only, when one of its
/// subscriptions matches: true when handed over, false when none matches.
/// Service `publish`.
pub fn publish_to_client(client_id: &str, msg: &OutMessage<'_>) -> Result<bool> {
    let (c, b) = (client_id.as_bytes(), msg.encode());
    status(unsafe { raw::publish_to_client(c.as_ptr(), len(c)?, b.as_ptr(), len(&b)?) }).map(|n| n == 1)
}

/// An attribute of a session or a connection, as the `*_get_all`
/// functions answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// When it was written, Unix nanoseconds.
    pub time: u64,
}

fn decode_attributes(b: &[u8]) -> std::result::Result<Vec<Attribute>, DecodeError> {
    let mut r = Reader::fields(b, "attributes");
    let n = r.u32("count")?;
    let mut out = Vec::new();
    for _ in 0..n {
        let key = entry_str(&mut r, "key")?;
        let value = entry(&mut r, "value")?.to_vec();
        out.push(Attribute { key, value, time: r.u64("time")? });
    }
    Ok(out)
}

/// Every attribute of client `client_id`'s session, sorted by key; None
/// when there is no session. Service `session_attributes`.
pub fn session_attribute_get_all(client_id: &str) -> Result<Option<Vec<Attribute>>> {
    let c = client_id.as_bytes();
    let cl = len(c)?;
    match found(with_result(|out, cap| unsafe { raw::session_attribute_get_all(c.as_ptr(), cl, out, cap) }))? {
        None => Ok(None),
        Some(b) => decoded(decode_attributes(&b)).map(Some),
    }
}

/// Every attribute of the connection the callback is about, sorted by key.
/// Service `connection_attributes`.
pub fn connection_attribute_get_all() -> Result<Vec<Attribute>> {
    let b = with_result(|out, cap| unsafe { raw::connection_attribute_get_all(out, cap) })?;
    decoded(decode_attributes(&b))
}

/// What `session_attribute_put_if_newer` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutIfNewer {
    /// The value was written.
    pub replaced: bool,
    /// An attribute existed before.
    pub had_previous: bool,
    /// Its value (empty when none).
    pub previous: Vec<u8>,
}

fn decode_put_if_newer(b: &[u8]) -> std::result::Result<PutIfNewer, DecodeError> {
    let mut r = Reader::fields(b, "session_attribute_put_if_newer");
    Ok(PutIfNewer { replaced: r.u8("replaced")? == 1, had_previous: r.u8("had_previous")? == 1, previous: r.bytes("previous")?.to_vec() })
}

/// Sets session attribute `key` of client `client_id` only when `time`
/// (Unix ns) is later than the stored one's, or equal with `or_equal`, or
/// when there is none; concurrent calls are serialised, the latest time
/// wins. Service `session_attributes`.
pub fn session_attribute_put_if_newer(client_id: &str, key: &str, value: &[u8], time: i64, or_equal: bool) -> Result<PutIfNewer> {
    let (c, k) = (client_id.as_bytes(), key.as_bytes());
    let (cl, kl, vl) = (len(c)?, len(k)?, len(value)?);
    let b = with_result(|out, cap| unsafe {
        raw::session_attribute_put_if_newer(c.as_ptr(), cl, k.as_ptr(), kl, value.as_ptr(), vl, time, or_equal as i32, out, cap)
    })?;
    decoded(decode_put_if_newer(&b))
}

/// One page of `storage_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, sorted (keys are any bytes).
    pub keys: Vec<Vec<u8>>,
    /// Further keys match: call again with the last key as `after`.
    pub more: bool,
}

fn decode_key_page(b: &[u8]) -> std::result::Result<KeyPage, DecodeError> {
    let mut r = Reader::fields(b, "storage_list");
    let n = r.u32("count")?;
    let mut keys = Vec::new();
    for _ in 0..n {
        keys.push(entry(&mut r, "key")?.to_vec());
    }
    Ok(KeyPage { keys, more: r.u8("more")? == 1 })
}

/// Lists the extension's storage keys starting with `prefix` and sorting
/// after `after` (empty: from the first), at most `limit` (1 to 1,000).
/// Service `storage`.
pub fn storage_list(prefix: &[u8], after: &[u8], limit: u32) -> Result<KeyPage> {
    let (pl, al) = (len(prefix)?, len(after)?);
    let b = with_result(|out, cap| unsafe { raw::storage_list(prefix.as_ptr(), pl, after.as_ptr(), al, limit as i32, out, cap) })?;
    decoded(decode_key_page(&b))
}

/// A subscription of a session, as `subscription_list` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The filter (a shared one with its `$share/<group>/` prefix).
    pub filter: String,
    /// The maximum QoS.
    pub qos: u8,
    /// Bit 0 no local, bit 1 retain as published, bits 2-3 retain handling.
    pub options: u8,
    /// The subscription identifier, 0 for none.
    pub identifier: u32,
}

fn decode_subscriptions(b: &[u8]) -> std::result::Result<Vec<SubscriptionInfo>, DecodeError> {
    let mut r = Reader::fields(b, "subscription_list");
    let n = r.u32("count")?;
    let mut out = Vec::new();
    for _ in 0..n {
        let filter = entry_str(&mut r, "filter")?;
        out.push(SubscriptionInfo { filter, qos: r.u8("qos")?, options: r.u8("options")?, identifier: r.u32("identifier")? });
    }
    Ok(out)
}

/// The subscriptions of client `client_id`'s session, sorted by filter;
/// None when there is no session. Service `subscriptions`.
pub fn subscription_list(client_id: &str) -> Result<Option<Vec<SubscriptionInfo>>> {
    let c = client_id.as_bytes();
    let cl = len(c)?;
    match found(with_result(|out, cap| unsafe { raw::subscription_list(c.as_ptr(), cl, out, cap) }))? {
        None => Ok(None),
        Some(b) => decoded(decode_subscriptions(&b)).map(Some),
    }
}

/// Subscribes client `client_id`'s session (connected or offline) to
/// `filter`, as if the client had, without asking an authorizer.
/// `NotFound`: no session. Service `subscriptions`.
pub fn subscription_add(client_id: &str, filter: &str, qos: u8, options: u8, identifier: u32) -> Result<()> {
    let (c, f) = (client_id.as_bytes(), filter.as_bytes());
    status(unsafe { raw::subscription_add(c.as_ptr(), len(c)?, f.as_ptr(), len(f)?, qos as i32, options as i32, identifier as i32) })
        .map(|_| ())
}

/// Removes client `client_id`'s subscription to `filter`, spelled as
/// subscribed. `NotFound`: no session. Service `subscriptions`.
pub fn subscription_remove(client_id: &str, filter: &str) -> Result<()> {
    let (c, f) = (client_id.as_bytes(), filter.as_bytes());
    status(unsafe { raw::subscription_remove(c.as_ptr(), len(c)?, f.as_ptr(), len(f)?) }).map(|_| ())
}

/// A message read back (`retained_get`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMessage {
    /// 0, 1 or 2.
    pub qos: u8,
    /// Retained (always, read back).
    pub retain: bool,
    /// 0 bytes, 1 UTF-8.
    pub payload_format: u8,
    /// Seconds left; 0 for none.
    pub message_expiry: u32,
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// User properties.
    pub user_properties: Vec<(String, String)>,
    /// Content type.
    pub content_type: String,
    /// Response topic.
    pub response_topic: String,
    /// Correlation data.
    pub correlation_data: Vec<u8>,
}

pub(crate) fn decode_message(b: &[u8]) -> std::result::Result<StoredMessage, DecodeError> {
    let mut r = Reader::fields(b, "message");
    let qos = r.u8("qos")?;
    let flags = r.u8("flags")?;
    let payload_format = r.u8("payload_format")?;
    r.u8("reserved")?;
    let message_expiry = r.u32("message_expiry")?;
    let topic = r.str("topic")?.to_string();
    let payload = r.bytes("payload")?.to_vec();
    let n = r.u32("user_properties")?;
    let mut user_properties = Vec::new();
    for _ in 0..n {
        let k = entry_str(&mut r, "user_properties")?;
        let v = entry_str(&mut r, "user_properties")?;
        user_properties.push((k, v));
    }
    Ok(StoredMessage {
        qos,
        retain: flags & 1 != 0,
        payload_format,
        message_expiry,
        topic,
        payload,
        user_properties,
        content_type: r.str("content_type")?.to_string(),
        response_topic: r.str("response_topic")?.to_string(),
        correlation_data: r.bytes("correlation_data")?.to_vec(),
    })
}

/// The retained message of `topic`; None when there is none (or it
/// expired). Service `retained`.
pub fn retained_get(topic: &str) -> Result<Option<StoredMessage>> {
    let t = topic.as_bytes();
    let tl = len(t)?;
    match found(with_result(|out, cap| unsafe { raw::retained_get(t.as_ptr(), tl, out, cap) }))? {
        None => Ok(None),
        Some(b) => decoded(decode_message(&b)).map(Some),
    }
}

/// Makes `msg` the retained message of its topic (its `retain` is
/// ignored; an empty payload is `InvalidArgument`: use
/// [`retained_remove`]). Service `retained`.
pub fn retained_put(msg: &OutMessage<'_>) -> Result<()> {
    let b = msg.encode();
    status(unsafe { raw::retained_put(b.as_ptr(), len(&b)?) }).map(|_| ())
}

/// Removes the retained message of `topic`. Service `retained`.
pub fn retained_remove(topic: &str) -> Result<()> {
    let t = topic.as_bytes();
    status(unsafe { raw::retained_remove(t.as_ptr(), len(t)?) }).map(|_| ())
}

/// A session, as `client_session` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// The network connection is open.
    pub connected: bool,
    /// 3, 4 or 5.
    pub protocol: u8,
    /// What a full queue does (0: drops the new message).
    pub drop_strategy: u8,
    /// Seconds the session outlives its connection.
    pub session_expiry: u32,
    /// When the connection was accepted (Unix ns), 0 while offline.
    pub connected_since: u64,
    /// When the offline session will be removed (Unix ns), 0 while connected.
    pub expires_at: u64,
    /// QoS 1/2 messages sent before waiting for acknowledgements; 0 no limit.
    pub inflight_window: u32,
    /// QoS 1/2 PUBLISH packets the client may have unacknowledged.
    pub receive_maximum: u32,
    /// QoS 1/2 messages the session holds.
    pub queued: u32,
    /// The cap on `queued`.
    pub max_queued: u32,
    /// The user name.
    pub username: String,
    /// The listener.
    pub listener: String,
    /// The (last) remote address.
    pub remote_addr: String,
}

fn decode_session(b: &[u8]) -> std::result::Result<Session, DecodeError> {
    let mut r = Reader::fields(b, "client_session");
    let connected = r.u8("connected")? == 1;
    let protocol = r.u8("protocol")?;
    let drop_strategy = r.u8("drop_strategy")?;
    r.u8("reserved")?;
    Ok(Session {
        connected,
        protocol,
        drop_strategy,
        session_expiry: r.u32("session_expiry")?,
        connected_since: r.u64("connected_since")?,
        expires_at: r.u64("expires_at")?,
        inflight_window: r.u32("inflight_window")?,
        receive_maximum: r.u32("receive_maximum")?,
        queued: r.u32("queued")?,
        max_queued: r.u32("max_queued")?,
        username: r.str("username")?.to_string(),
        listener: r.str("listener")?.to_string(),
        remote_addr: r.str("remote_addr")?.to_string(),
    })
}

/// Describes client `client_id`'s session, connected or offline; None when
/// there is none. Service `clients`.
pub fn client_session(client_id: &str) -> Result<Option<Session>> {
    let c = client_id.as_bytes();
    let cl = len(c)?;
    match found(with_result(|out, cap| unsafe { raw::client_session(c.as_ptr(), cl, out, cap) }))? {
        None => Ok(None),
        Some(b) => decoded(decode_session(&b)).map(Some),
    }
}

/// Ends client `client_id`'s session now (a connected client is
/// disconnected with 0x98). `NotFound`: none. Service `clients`.
pub fn client_invalidate_session(client_id: &str) -> Result<()> {
    let c = client_id.as_bytes();
    status(unsafe { raw::client_invalidate_session(c.as_ptr(), len(c)?) }).map(|_| ())
}

/// Sets how long client `client_id`'s session outlives its connection.
/// Service `clients`.
pub fn client_set_session_expiry(client_id: &str, seconds: u32) -> Result<()> {
    let c = client_id.as_bytes();
    status(unsafe { raw::client_set_session_expiry(c.as_ptr(), len(c)?, seconds as i32) }).map(|_| ())
}

/// Sets the connected client's in-flight window (1 to 65535) and returns
/// the window in effect (capped by its Receive Maximum). Service `clients`.
pub fn client_set_inflight_window(client_id: &str, n: u16) -> Result<u16> {
    let c = client_id.as_bytes();
    status(unsafe { raw::client_set_inflight_window(c.as_ptr(), len(c)?, n as i32) }).map(|w| w as u16)
}

/// An outbound HTTP request (`http_request`).
#[derive(Debug, Clone, Default)]
pub struct HttpRequest<'a> {
    /// The method; empty for GET.
    pub method: &'a str,
    /// An `http://` or `https://` URL on a host of the manifest's `http.hosts`.
    pub url: &'a str,
    /// Headers (at most 64).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

impl<'a> HttpRequest<'a> {
    /// The request as `http_request` takes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        put(&mut out, self.method.as_bytes());
        put(&mut out, self.url.as_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (k, v) in self.headers {
            put(&mut out, k.as_bytes());
            put(&mut out, v.as_bytes());
        }
        put(&mut out, self.body);
        out
    }
}

/// An HTTP response: any status is a response, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u32,
    /// Headers, names canonical, sorted; one entry per value.
    pub headers: Vec<(String, String)>,
    /// The body, decompressed.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn decode_http_response(b: &[u8]) -> std::result::Result<HttpResponse, DecodeError> {
    let mut r = Reader::fields(b, "http_request");
    let status = r.u32("status")?;
    let n = r.u32("headers")?;
    let mut headers = Vec::new();
    for _ in 0..n {
        let k = entry_str(&mut r, "headers")?;
        let v = entry_str(&mut r, "headers")?;
        headers.push((k, v));
    }
    Ok(HttpResponse { status, headers, body: r.bytes("body")?.to_vec() })
}

/// Makes an HTTP request to a host the manifest allow-lists and returns
/// the response. `Internal`: it did not complete (unreachable, TLS, time):
/// an authenticator should then deny. Service `http`.
pub fn http_request(req: &HttpRequest<'_>) -> Result<HttpResponse> {
    let b = req.encode();
    let bl = len(&b)?;
    let out = with_result(|out, cap| unsafe { raw::http_request(b.as_ptr(), bl, out, cap) })?;
    decoded(decode_http_response(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }

    #[test]
    fn attributes_result() {
        let mut b = 2u32.to_le_bytes().to_vec();
        s(&mut b, b"a");
        s(&mut b, b"1");
        b.extend_from_slice(&7u64.to_le_bytes());
        s(&mut b, b"b");
        s(&mut b, &[0xff]);
        b.extend_from_slice(&8u64.to_le_bytes());
        let got = decode_attributes(&b).unwrap();
        assert_eq!(
            got,
            vec![Attribute { key: "a".into(), value: b"1".to_vec(), time: 7 }, Attribute { key: "b".into(), value: vec![0xff], time: 8 },]
        );
        // A count beyond the entries is an error, not a long loop.
        assert!(decode_attributes(&u32::MAX.to_le_bytes()).is_err());
    }

    #[test]
    fn put_if_newer_result() {
        let mut b = vec![0, 1];
        s(&mut b, b"old");
        assert_eq!(decode_put_if_newer(&b).unwrap(), PutIfNewer { replaced: false, had_previous: true, previous: b"old".to_vec() });
    }

    #[test]
    fn key_page_result() {
        let mut b = 2u32.to_le_bytes().to_vec();
        s(&mut b, b"dev/1");
        s(&mut b, b"dev/2");
        b.push(1);
        assert_eq!(decode_key_page(&b).unwrap(), KeyPage { keys: vec![b"dev/1".to_vec(), b"dev/2".to_vec()], more: true });
    }

    #[test]
    fn subscriptions_result() {
        let mut b = 1u32.to_le_bytes().to_vec();
        s(&mut b, b"jobs/+/new");
        b.extend_from_slice(&[1, 9]);
        b.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            decode_subscriptions(&b).unwrap(),
            vec![SubscriptionInfo { filter: "jobs/+/new".into(), qos: 1, options: 9, identifier: 7 }]
        );
    }

    #[test]
    fn message_result_reads_what_publish_writes() {
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
        let got = decode_message(&m.encode()).unwrap();
        assert_eq!((got.qos, got.retain, got.payload_format, got.message_expiry), (1, true, 1, 60));
        assert_eq!(
            (got.topic.as_str(), &got.payload[..], got.content_type.as_str(), got.response_topic.as_str()),
            ("lights/1", &b"on"[..], "text/plain", "reply/1")
        );
        assert_eq!(got.user_properties, vec![("room".to_string(), "kitchen".to_string())]);
        assert_eq!(got.correlation_data, vec![1, 2]);
        // The fields after the payload may be left out.
        let short = OutMessage { topic: "t", payload: b"p", ..OutMessage::default() }.encode();
        assert_eq!(decode_message(&short[..8 + 5 + 5]).unwrap().content_type, "");
    }

    #[test]
    fn session_result() {
        let mut b = vec![1, 5, 0, 0];
        b.extend_from_slice(&3600u32.to_le_bytes());
        b.extend_from_slice(&10u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        for v in [20u32, 30, 2, 1000] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        s(&mut b, b"alice");
        s(&mut b, b"tcp");
        s(&mut b, b"127.0.0.1:1");
        let got = decode_session(&b).unwrap();
        assert!(got.connected);
        assert_eq!(
            (got.protocol, got.session_expiry, got.connected_since, got.inflight_window, got.receive_maximum, got.queued, got.max_queued),
            (5, 3600, 10, 20, 30, 2, 1000)
        );
        assert_eq!((got.username.as_str(), got.listener.as_str(), got.remote_addr.as_str()), ("alice", "tcp", "127.0.0.1:1"));
    }

    #[test]
    fn http_request_and_response() {
        let req =
            HttpRequest { method: "POST", url: "https://idp.example.com/check", headers: &[("Accept", "application/json")], body: b"{}" };
        let b = req.encode();
        assert_eq!(&b[..8], &[4, 0, 0, 0, b'P', b'O', b'S', b'T']);
        let mut resp = 403u32.to_le_bytes().to_vec();
        resp.extend_from_slice(&1u32.to_le_bytes());
        s(&mut resp, b"Content-Type");
        s(&mut resp, b"text/plain");
        s(&mut resp, b"no");
        let got = decode_http_response(&resp).unwrap();
        assert_eq!((got.status, got.header("content-type"), &got.body[..]), (403, Some("text/plain"), &b"no"[..]));
    }
}
