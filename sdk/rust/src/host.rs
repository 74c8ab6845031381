//! Safe wrappers of the host functions (ABI.md section 5).
//!
//! Each takes Rust slices and strings, passes them as pointer and length,
//! and turns the `i32` status into a `Result`. Where a function may be
//! called is ABI.md's "In" list; elsewhere the host answers
//! [`Error::NotAvailable`] and does nothing. The host services (1.1) also
//! need their service granted in the manifest (`services:`), else
//! [`Error::NotPermitted`], and pass the extension's rate limit, else
//! [`Error::RateLimited`]: back off or drop the work, never retry in a
//! loop. Every function here is also available raw (unsafe, pointer and
//! length) in [`crate::abi::host`], generated from the ABI table.
//!
//! Outside wasm32 (native unit tests) every function answers
//! `NotAvailable`.

use crate::abi;
use crate::abi::host as raw;
use std::fmt;

/// A negative status of a host function (ABI.md section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A parameter is out of range or malformed.
    InvalidArgument,
    /// Not callable from the current callback.
    NotAvailable,
    /// The manifest does not grant this host service.
    NotPermitted,
    /// The extension exceeded its service-call rate; try later.
    RateLimited,
    /// No such client, key or message.
    NotFound,
    /// The broker failed; the error is in the broker log.
    Internal,
    /// A size limit was exceeded.
    TooLarge,
    /// A status this SDK does not know (a later minor version's).
    Other(i32),
}

impl Error {
    /// The error of a negative status.
    pub fn from_status(code: i32) -> Error {
        match code {
            abi::STATUS_INVALID_ARGUMENT => Error::InvalidArgument,
            abi::STATUS_NOT_AVAILABLE => Error::NotAvailable,
            abi::STATUS_NOT_PERMITTED => Error::NotPermitted,
            abi::STATUS_RATE_LIMITED => Error::RateLimited,
            abi::STATUS_NOT_FOUND => Error::NotFound,
            abi::STATUS_INTERNAL => Error::Internal,
            abi::STATUS_TOO_LARGE => Error::TooLarge,
            c => Error::Other(c),
        }
    }

    /// The status code.
    pub fn code(self) -> i32 {
        match self {
            Error::InvalidArgument => abi::STATUS_INVALID_ARGUMENT,
            Error::NotAvailable => abi::STATUS_NOT_AVAILABLE,
            Error::NotPermitted => abi::STATUS_NOT_PERMITTED,
            Error::RateLimited => abi::STATUS_RATE_LIMITED,
            Error::NotFound => abi::STATUS_NOT_FOUND,
            Error::Internal => abi::STATUS_INTERNAL,
            Error::TooLarge => abi::STATUS_TOO_LARGE,
            Error::Other(c) => c,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        for (c, name) in abi::STATUS_NAMES {
            if *c == code {
                return write!(f, "propolis: {}", name);
            }
        }
        write!(f, "propolis: status {}", code)
    }
}

impl std::error::Error for Error {}

/// The result of a host function that answers nothing but its status.
pub type Result<T> = std::result::Result<T, Error>;

fn status(code: i32) -> Result<i32> {
    if code < 0 {
        Err(Error::from_status(code))
    } else {
        Ok(code)
    }
}

/// A slice's length as the ABI's i32; longer than the host could take at
/// all is TooLarge.
fn len(b: &[u8]) -> Result<i32> {
    if b.len() > i32::MAX as usize {
        return Err(Error::TooLarge);
    }
    Ok(b.len() as i32)
}

/// Calls a host service that answers data into (out_ptr, out_cap),
/// fetching a result larger than the first buffer with take_result.
fn with_result<F: FnMut(*mut u8, i32) -> i32>(mut call: F) -> Result<Vec<u8>> {
    let mut out = vec![0u8; 256];
    let n = status(call(out.as_mut_ptr(), out.len() as i32))? as usize;
    if n <= out.len() {
        out.truncate(n);
        return Ok(out);
    }
    let mut n = n;
    // The host keeps the result; take_result answers its length again
    // when the buffer is still too small (it never is here, but a later
    // host may differ: the loop is bounded).
    for _ in 0..4 {
        out = vec![0u8; n];
        let got = status(unsafe { raw::take_result(out.as_mut_ptr(), n as i32) })? as usize;
        if got <= n {
            out.truncate(got);
            return Ok(out);
        }
        n = got;
    }
    Err(Error::Internal)
}

/// Maps NOT_FOUND to None.
fn found<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Log levels of [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Debug.
    Debug = 0,
    /// Info.
    Info = 1,
    /// Warn.
    Warn = 2,
    /// Error.
    Error = 3,
}

/// Writes a line to the broker log, tagged with the extension id (longer
/// than 4,096 bytes: truncated by the host). Callable everywhere.
pub fn log(level: Level, msg: &str) {
    let b = msg.as_bytes();
    let n = b.len().min(i32::MAX as usize) as i32;
    unsafe { raw::log(level as i32, b.as_ptr(), n) };
}

/// Sets the reason string of a refusing decision (the MQTT 5 reason
/// string), of an interceptor's prevention, or of refusing to start. At
/// most 1,024 bytes (`TooLarge`).
pub fn set_reason(reason: &str) -> Result<()> {
    let b = reason.as_bytes();
    status(unsafe { raw::set_reason(b.as_ptr(), len(b)?) }).map(|_| ())
}

// ---- propolis_start only -------------------------------------------------

/// Narrows which exported callbacks the host calls (`abi::CALLBACK_*`
/// bits). Only in `start`. The `extension!` macro exports only the
/// callbacks an extension implements, so this is rarely needed.
pub fn declare_callbacks(mask: u32) -> Result<()> {
    status(unsafe { raw::declare_callbacks(mask as i32) }).map(|_| ())
}

/// Asks for `authorize_publish` only for topics matching this filter (may
/// be called repeatedly; at most 1,024). Only in `start`.
pub fn add_publish_filter(filter: &str) -> Result<()> {
    let b = filter.as_bytes();
    status(unsafe { raw::add_publish_filter(b.as_ptr(), len(b)?) }).map(|_| ())
}

/// Asks for the publish interceptors named by `callbacks`
/// (`abi::CALLBACK_INTERCEPT_PUBLISH_INBOUND`, `..._OUTBOUND`, or both)
/// only for topics matching this filter. Only in `start`.
pub fn add_intercept_filter(callbacks: u32, filter: &str) -> Result<()> {
    let b = filter.as_bytes();
    status(unsafe { raw::add_intercept_filter(callbacks as i32, b.as_ptr(), len(b)?) }).map(|_| ())
}

/// Asks for `intercept_publish_outbound` only for subscribers whose client
/// id matches this pattern (exact, or a prefix ending in `*`). Only in
/// `start`.
pub fn add_intercept_client(pattern: &str) -> Result<()> {
    let b = pattern.as_bytes();
    status(unsafe { raw::add_intercept_client(b.as_ptr(), len(b)?) }).map(|_| ())
}

// ---- propolis_authenticate only: settings applied on ALLOW --------------

/// The client's session expiry in seconds (capped by the broker).
pub fn set_session_expiry(seconds: u32) -> Result<()> {
    status(unsafe { raw::set_session_expiry(seconds as i32) }).map(|_| ())
}

/// How many QoS 1/2 PUBLISH packets the client may have unacknowledged
/// (1 to 65535).
pub fn set_receive_maximum(n: u16) -> Result<()> {
    status(unsafe { raw::set_receive_maximum(n as i32) }).map(|_| ())
}

/// Overrides the client's keepalive, in seconds.
pub fn set_keepalive(seconds: u16) -> Result<()> {
    status(unsafe { raw::set_keepalive(seconds as i32) }).map(|_| ())
}

/// How many QoS 1/2 messages the broker keeps for the client (1 to 65535).
pub fn set_max_queued(n: u16) -> Result<()> {
    status(unsafe { raw::set_max_queued(n as i32) }).map(|_| ())
}

/// Adds a user property to the CONNACK (MQTT 5 clients; at most 32).
pub fn add_connack_user_property(key: &str, value: &str) -> Result<()> {
    let (k, v) = (key.as_bytes(), value.as_bytes());
    status(unsafe { raw::add_connack_user_property(k.as_ptr(), len(k)?, v.as_ptr(), len(v)?) }).map(|_| ())
}

/// What a [`Permission`] does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionDecision {
    /// Allows.
    Allow = 1,
    /// Denies with 0x87.
    Deny = 2,
}

/// Which packets a [`Permission`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// PUBLISH (and the will).
    Publish = 1,
    /// SUBSCRIBE.
    Subscribe = 2,
    /// Both.
    Both = 3,
}

/// A default topic permission of the client being authenticated,
/// evaluated by the host on every PUBLISH and SUBSCRIBE with no Wasm call
/// (ABI.md section 5, `add_permission`). A client with no permission is
/// allowed everything; once it has one, whatever no permission matches is
/// denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission<'a> {
    /// Allow or deny.
    pub decision: PermissionDecision,
    /// Publish, subscribe or both.
    pub activity: Activity,
    /// Bit 0 QoS 0, bit 1 QoS 1, bit 2 QoS 2; 0 means all.
    pub qos: u8,
    /// 0 any, 1 only not retained, 2 only retained (publish).
    pub retain: u8,
    /// 0 any, 1 only non-shared, 2 only shared (subscribe).
    pub shared: u8,
    /// An MQTT topic filter; `{clientid}` and `{username}` are replaced by
    /// the client's.
    pub filter: &'a str,
}

impl<'a> Permission<'a> {
    /// A permission for any QoS, retain flag and sharing.
    pub fn new(decision: PermissionDecision, activity: Activity, filter: &'a str) -> Permission<'a> {
        Permission { decision, activity, qos: 0, retain: 0, shared: 0, filter }
    }

    /// The permission as `add_permission` takes it.
    pub fn encode(&self) -> Vec<u8> {
        let f = self.filter.as_bytes();
        let mut out = Vec::with_capacity(12 + f.len());
        out.extend_from_slice(&[self.decision as u8, self.activity as u8, self.qos, self.retain, self.shared, 0, 0, 0]);
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
        out
    }
}

/// Adds a default topic permission for the client (at most 256).
pub fn add_permission(p: &Permission<'_>) -> Result<()> {
    let b = p.encode();
    status(unsafe { raw::add_permission(b.as_ptr(), len(&b)?) }).map(|_| ())
}

/// Marks the answer this `authenticate` call is about to return as valid
/// for `seconds` (1 to 86,400; 0 takes the mark back): the host answers the
/// same identity from its cache without calling the extension.
pub fn cache_result(seconds: u32) -> Result<()> {
    status(unsafe { raw::cache_result(seconds as i32) }).map(|_| ())
}

// ---- interceptors (1.2) ---------------------------------------------------

/// Sets a text, bytes or properties field (`abi::FIELD_*`) of the packet
/// being intercepted; applied when the call returns. A refused value
/// makes the whole call an invalid answer (none of its changes apply).
/// User properties are encoded with [`crate::record::encode_pairs`].
pub fn packet_set(field: i32, value: &[u8]) -> Result<()> {
    status(unsafe { raw::packet_set(field, value.as_ptr(), len(value)?) }).map(|_| ())
}

/// Sets an int field (`abi::FIELD_*`) of the packet being intercepted.
pub fn packet_set_int(field: i32, value: i64) -> Result<()> {
    status(unsafe { raw::packet_set_int(field, value) }).map(|_| ())
}

// ---- host services (1.1) --------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_status() {
        assert_eq!(Error::from_status(-4).to_string(), "propolis: RATE_LIMITED");
        assert_eq!(Error::from_status(-99).to_string(), "propolis: status -99");
        assert_eq!(Error::from_status(-5), Error::NotFound);
    }

    #[test]
    fn native_host_functions_are_not_available() {
        assert_eq!(set_reason("x"), Err(Error::NotAvailable));
        assert_eq!(connection_attribute_get("k"), Err(Error::NotAvailable));
    }

    #[test]
    fn permission_layout() {
        let p = Permission { qos: 3, retain: 1, ..Permission::new(PermissionDecision::Allow, Activity::Both, "devices/{clientid}/#") };
        let b = p.encode();
        assert_eq!(&b[..12], &[1, 3, 3, 1, 0, 0, 0, 0, 20, 0, 0, 0]);
        assert_eq!(&b[12..], b"devices/{clientid}/#");
    }
}
