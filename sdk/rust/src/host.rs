//! Safe wrappers of the host functions (ABI.md section 5).
//!
//! Each takes Rust slices and strings, passes them as pointer and length,
//! and turns the `i32` status into a `Result`. Where a function may be
//! called is ABI.md's "In" list; elsewhere the host answers
//! [`Error::NotAvailable`] and does nothing. The host services (1.1) also
//! need their service granted in the manifest (`services:`), else
//! [`Error::NotPermitted`], and pass the extension's rate limit, else
//! [`Error::RateLimited`]: back off or drop the work, never retry in a
//! loop. The host services live in [`crate::services`] and are re-exported
//! here. Every function is also available raw (unsafe, pointer and length)
//! in [`crate::abi::host`], generated from the ABI table.
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

pub(crate) fn status(code: i32) -> Result<i32> {
    if code < 0 {
        Err(Error::from_status(code))
    } else {
        Ok(code)
    }
}

/// A slice's length as the ABI's i32; longer than the host could take at
/// all is TooLarge.
pub(crate) fn len(b: &[u8]) -> Result<i32> {
    if b.len() > i32::MAX as usize {
        return Err(Error::TooLarge);
    }
    Ok(b.len() as i32)
}

/// Calls a host service that answers data into (out_ptr, out_cap),
/// fetching a result larger than the first buffer with take_result.
pub(crate) fn with_result<F: FnMut(*mut u8, i32) -> i32>(mut call: F) -> Result<Vec<u8>> {
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
pub(crate) fn found<T>(r: Result<T>) -> Result<Option<T>> {
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

/// (ABI 1.3) Whether the broker's overload protection may throttle the
/// client: `false` exempts it (its socket is never read more slowly for the
/// broker's stress level); `true`, the default, leaves it to its listener.
/// The broker's per-client limits apply either way.
pub fn set_overload_throttling(enabled: bool) -> Result<()> {
    status(unsafe { raw::set_overload_throttling(enabled as i32) }).map(|_| ())
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
/// same identity from its cache without calling the extension. Since ABI
/// 1.4 it may also be called in `authorize_publish` and
/// `authorize_subscribe`: the host then answers the same topic (or filter),
/// QoS and flags on the same connection without a call (ABI.md section 5).
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

// ---- host services (1.1): in services.rs, re-exported here -------------

pub use crate::services::*;

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
