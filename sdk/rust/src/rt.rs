//! The runtime behind the exports: the record buffer (`propolis_buffer`),
//! the instance's extension value, and one dispatch function per callback.
//! The export shims in `abi.rs` (generated) call these; extension code
//! never does.
//!
//! An instance runs one callback at a time (ABI.md section 1), and a
//! wasm32-wasi module without threads has one thread, so the state below
//! lives in plain statics behind a busy flag: a callback entered while
//! another runs (which the host never does) is answered as a failure
//! instead of aliasing the state.

use crate::abi;
use crate::host::{self, Level};
use crate::record::{self, DecodeError};
use crate::{AuthDecision, Decision, Extension, Intercept};
use std::any::Any;
use std::cell::UnsafeCell;

struct State {
    /// The record buffer handed to the host.
    buf: Vec<u8>,
    /// The extension value `Extension::start` built; None before start,
    /// after a refused start and after stop.
    ext: Option<Box<dyn Any>>,
    busy: bool,
}

struct Global(UnsafeCell<State>);

// Safety: wasm32-wasi modules built by this SDK have one thread; native
// tests do not call the exports. Access goes through `with_state`, which
// refuses re-entry.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State { buf: Vec::new(), ext: None, busy: false }));

/// Runs f with exclusive access to the state, or returns None when a
/// callback is already running.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    // Safety: single-threaded; the busy flag prevents a second &mut while
    // one is live (only f could re-enter, through an export call, which
    // the host never makes during a callback).
    let st = unsafe { &mut *STATE.0.get() };
    if st.busy {
        return None;
    }
    st.busy = true;
    let r = f(st);
    st.busy = false;
    Some(r)
}

/// The answer given when a deciding callback cannot run its handler
/// (malformed record, no started extension): DENY with 0x80 (unspecified
/// error), the fail-closed answer of ABI.md section 7.
const FAIL_CLOSED: i32 = (0x80 << 8) | abi::DECISION_DENY as i32;

fn report(callback: &str, e: &DecodeError) {
    let msg = format!("{}: {}", callback, e);
    host::log(Level::Error, &msg);
    let _ = host::set_reason(&msg);
}

/// Runs a callback: the record of `len` bytes is handed with the
/// extension to `handle`, which decodes it (so that the record view
/// borrows the buffer for that call only); `fail` answers when the
/// handler cannot run (no started extension, a length outside the
/// buffer, re-entry).
fn call<T, R, H>(callback: &'static str, len: i32, handle: H, fail: R) -> R
where
    T: Extension,
    H: FnOnce(&mut T, &[u8]) -> R,
    R: Copy,
{
    with_state(|st| {
        if len < 0 || len as usize > st.buf.len() {
            host::log(Level::Error, &format!("{}: record length {} outside the buffer of {} bytes", callback, len, st.buf.len()));
            return fail;
        }
        let ext = match st.ext.as_mut().and_then(|e| e.downcast_mut::<T>()) {
            Some(e) => e,
            None => {
                host::log(Level::Error, &format!("{}: called before the extension started", callback));
                return fail;
            }
        };
        let rec = &st.buf[..len as usize];
        handle(ext, rec)
    })
    .unwrap_or(fail)
}

/// `propolis_abi_v1`: the ABI minor version this SDK was built to.
pub fn marker<T: Extension>() -> i32 {
    abi::ABI_MINOR
}

/// `propolis_buffer`: a buffer of at least `size` bytes, or 0 when `size`
/// is above `T::MAX_RECORD_SIZE` or memory cannot grow that far (the
/// previous buffer then stays valid).
pub fn buffer<T: Extension>(size: i32) -> i32 {
    with_state(|st| {
        if size < 0 || size as usize > T::MAX_RECORD_SIZE {
            return 0;
        }
        // ABI.md asks for at least 4,096 bytes; never hand out the dangling
        // pointer of an empty buffer.
        let size = (size as usize).max(1);
        if size <= st.buf.len() {
            return st.buf.as_mut_ptr() as usize as i32;
        }
        let mut v: Vec<u8> = Vec::new();
        if v.try_reserve_exact(size).is_err() {
            return 0;
        }
        v.resize(size, 0);
        st.buf = v;
        st.buf.as_mut_ptr() as usize as i32
    })
    .unwrap_or(0)
}

/// `propolis_start`: decodes START and builds the extension with
/// `T::start`; an error refuses the start with its text as the reason.
pub fn start<T: Extension>(len: i32) -> i32 {
    with_state(|st| {
        if len < 0 || len as usize > st.buf.len() {
            let _ = host::set_reason("START record length outside the buffer");
            return 1;
        }
        let rec = &st.buf[..len as usize];
        let info = match record::Start::decode(rec) {
            Ok(s) => s,
            Err(e) => {
                let _ = host::set_reason(&e.to_string());
                return 1;
            }
        };
        match T::start(&info) {
            Ok(ext) => {
                st.ext = Some(Box::new(ext));
                0
            }
            Err(reason) => {
                st.ext = None;
                let _ = host::set_reason(truncate(&reason, 1024));
                1
            }
        }
    })
    .unwrap_or(1)
}

/// Cuts s to at most n bytes on a character boundary.
fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `propolis_stop`: calls `Extension::stop` and drops the extension.
pub fn stop<T: Extension>() {
    with_state(|st| {
        if let Some(mut e) = st.ext.take() {
            if let Some(ext) = e.downcast_mut::<T>() {
                ext.stop();
            }
        }
    });
}

fn refuse<T>(callback: &str, r: Result<T, DecodeError>) -> Result<T, i32> {
    r.map_err(|e| {
        report(callback, &e);
        FAIL_CLOSED
    })
}

/// `propolis_authenticate`.
pub fn authenticate<T: crate::Authenticate>(len: i32) -> i32 {
    call::<T, i32, _>(
        "propolis_authenticate",
        len,
        |ext, rec| match refuse("propolis_authenticate", record::Connect::decode(rec)) {
            Ok(c) => ext.authenticate(&c).encode(),
            Err(code) => code,
        },
        FAIL_CLOSED,
    )
}

/// `propolis_authorize_publish`.
pub fn authorize_publish<T: crate::AuthorizePublish>(len: i32) -> i32 {
    call::<T, i32, _>(
        "propolis_authorize_publish",
        len,
        |ext, rec| match refuse("propolis_authorize_publish", record::Publish::decode(rec)) {
            Ok(p) => ext.authorize_publish(&p).encode(),
            Err(code) => code,
        },
        FAIL_CLOSED,
    )
}

/// `propolis_authorize_subscribe`.
pub fn authorize_subscribe<T: crate::AuthorizeSubscribe>(len: i32) -> i32 {
    call::<T, i32, _>(
        "propolis_authorize_subscribe",
        len,
        |ext, rec| match refuse("propolis_authorize_subscribe", record::Subscribe::decode(rec)) {
            Ok(s) => ext.authorize_subscribe(&s).encode(),
            Err(code) => code,
        },
        FAIL_CLOSED,
    )
}

/// `propolis_on_event`: a malformed record is logged and the event dropped.
pub fn on_event<T: crate::OnEvent>(len: i32) {
    call::<T, (), _>(
        "propolis_on_event",
        len,
        |ext, rec| match record::Event::decode(rec) {
            Ok(e) => ext.on_event(&e),
            Err(e) => host::log(Level::Error, &format!("propolis_on_event: {}", e)),
        },
        (),
    )
}

/// `propolis_tick`.
pub fn tick<T: crate::Tick>() {
    with_state(|st| {
        if let Some(ext) = st.ext.as_mut().and_then(|e| e.downcast_mut::<T>()) {
            ext.tick();
        }
    });
}

/// An interceptor's answer when it cannot run its handler: NEXT, the
/// packet unchanged (an interceptor never fails closed, ABI.md section 7).
const UNCHANGED: i32 = abi::DECISION_NEXT as i32;

fn intercept<T, H>(callback: &'static str, len: i32, handle: H) -> i32
where
    T: Extension,
    H: FnOnce(&mut T, &[u8]) -> Result<i32, DecodeError>,
{
    call::<T, i32, _>(
        callback,
        len,
        |ext, rec| match handle(ext, rec) {
            Ok(v) => v,
            Err(e) => {
                host::log(Level::Error, &format!("{}: {}", callback, e));
                UNCHANGED
            }
        },
        UNCHANGED,
    )
}

/// `propolis_intercept_connect`.
pub fn intercept_connect<T: crate::InterceptConnect>(len: i32) -> i32 {
    intercept::<T, _>("propolis_intercept_connect", len, |ext, rec| {
        ext.intercept_connect(&record::Connect::decode(rec)?);
        Ok(UNCHANGED)
    })
}

/// `propolis_intercept_connack`.
pub fn intercept_connack<T: crate::InterceptConnack>(len: i32) -> i32 {
    intercept::<T, _>("propolis_intercept_connack", len, |ext, rec| {
        ext.intercept_connack(&record::Connack::decode(rec)?);
        Ok(UNCHANGED)
    })
}

/// `propolis_intercept_publish_inbound`.
pub fn intercept_publish_inbound<T: crate::InterceptPublishInbound>(len: i32) -> i32 {
    intercept::<T, _>("propolis_intercept_publish_inbound", len, |ext, rec| {
        Ok(ext.intercept_publish_inbound(&record::Message::decode(rec)?).encode())
    })
}

/// `propolis_intercept_publish_outbound`.
pub fn intercept_publish_outbound<T: crate::InterceptPublishOutbound>(len: i32) -> i32 {
    intercept::<T, _>("propolis_intercept_publish_outbound", len, |ext, rec| {
        Ok(ext.intercept_publish_outbound(&record::Message::decode(rec)?).encode())
    })
}

/// `propolis_intercept_subscribe`.
pub fn intercept_subscribe<T: crate::InterceptSubscribe>(len: i32) -> i32 {
    intercept::<T, _>("propolis_intercept_subscribe", len, |ext, rec| {
        Ok(ext.intercept_subscribe(&record::Subscription::decode(rec)?).encode())
    })
}

/// `propolis_intercept_disconnect`.
pub fn intercept_disconnect<T: crate::InterceptDisconnect>(len: i32) -> i32 {
    intercept::<T, _>("propolis_intercept_disconnect", len, |ext, rec| {
        ext.intercept_disconnect(&record::Disconnect::decode(rec)?);
        Ok(UNCHANGED)
    })
}

// Decision encodings (ABI.md section 3, "Decisions").

/// A refusing reason code: 0 keeps the host's default; a code below 0x80
/// is not a refusal code and becomes 0x80 (unspecified error).
fn refusal(code: u8) -> i32 {
    let c = if code != 0 && code < 0x80 { 0x80 } else { code };
    (c as i32) << 8
}

impl Decision {
    /// The i32 answer of ABI.md section 3.
    pub fn encode(self) -> i32 {
        match self {
            Decision::Next => abi::DECISION_NEXT as i32,
            Decision::Allow => abi::DECISION_ALLOW as i32,
            Decision::Deny(c) => refusal(c) | abi::DECISION_DENY as i32,
            Decision::Disconnect(c) => refusal(c) | abi::DECISION_DISCONNECT as i32,
        }
    }
}

impl AuthDecision {
    /// The i32 answer of ABI.md section 3.
    pub fn encode(self) -> i32 {
        match self {
            AuthDecision::Next => abi::DECISION_NEXT as i32,
            AuthDecision::Allow => abi::DECISION_ALLOW as i32,
            AuthDecision::Deny(c) => refusal(c) | abi::DECISION_DENY as i32,
        }
    }
}

impl Intercept {
    /// The i32 answer of ABI.md section 3.
    pub fn encode(self) -> i32 {
        match self {
            Intercept::Next => abi::DECISION_NEXT as i32,
            Intercept::Prevent(c) => refusal(c) | abi::DECISION_DENY as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_encode_as_abi_md_examples() {
        assert_eq!(Decision::Allow.encode(), 0x0000_0001);
        assert_eq!(AuthDecision::Deny(0x86).encode(), 0x0000_8602);
        assert_eq!(Decision::Disconnect(0x98).encode(), 0x0000_9803);
        assert_eq!(Decision::Deny(0).encode(), 0x0000_0002);
        assert_eq!(Decision::Deny(0x05).encode(), 0x0000_8002, "a success code is no refusal");
        assert_eq!(Intercept::Prevent(0x99).encode(), 0x0000_9902);
        assert_eq!(Intercept::Next.encode(), 0);
    }

    #[test]
    fn truncate_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
