//! Propolis extensions in Rust: the guest side of ABI 1 (`abi/ABI.md`),
//! with no dependencies, built for `wasm32-wasi`.
//!
//! An extension is a type implementing [`Extension`] (built by `start`
//! from the START record, once per instance) and one trait per callback it
//! handles ([`AuthorizePublish`], [`Authenticate`], ...). The
//! [`extension!`] macro exports the marker, the record buffer, start, stop
//! and exactly the callbacks named, so the host never calls what the
//! extension does not handle:
//!
//! ```ignore
//! use propolis::{AuthorizePublish, Decision, Extension, Publish, Start};
//!
//! struct Guard { max: usize }
//!
//! impl Extension for Guard {
//!     fn start(_: &Start) -> Result<Self, String> { Ok(Guard { max: 1024 }) }
//! }
//!
//! impl AuthorizePublish for Guard {
//!     fn authorize_publish(&mut self, p: &Publish) -> Decision {
//!         if p.payload.len() > self.max { Decision::Deny(0x97) } else { Decision::Next }
//!     }
//! }
//!
//! propolis::extension!(Guard, authorize_publish);
//! ```
//!
//! Records arrive as views borrowing the module's buffer ([`record`]),
//! checked field by field: a malformed record is never read out of bounds;
//! a deciding callback then fails closed (DENY 0x80, logged), an
//! interceptor leaves the packet unchanged. Host functions are safe
//! wrappers in [`host`]; the raw imports, constants and export shims are
//! generated from the ABI's table into [`abi`].
//!
//! Instances are pooled (ABI.md section 1): the host sends any client's
//! callbacks to any instance, so `self` holds configuration and caches
//! only; per-client state belongs in the broker (connection or session
//! attributes, storage) through [`host`].

#[rustfmt::skip] // generated from abi/table.go
pub mod abi;
pub mod host;
pub mod json;
pub mod record;
#[doc(hidden)]
pub mod rt;
pub mod services;

pub use host::Error;
pub use record::{Connack, Connect, DecodeError, Disconnect, Event, Message, Pairs, Publish, Start, Subscribe, Subscription};

/// MQTT 5 reason codes a refusal commonly carries (any code >= 0x80 may be
/// used).
pub mod code {
    /// Unspecified error.
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    /// Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
    /// Bad user name or password.
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    /// Banned.
    pub const BANNED: u8 = 0x8A;
    /// Topic filter invalid.
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    /// Topic name invalid.
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    /// Message rate too high.
    pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    /// Quota exceeded.
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    /// Administrative action.
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    /// Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
}

/// The answer of `authorize_publish` and `authorize_subscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Pass the question to the next extension in the chain.
    Next,
    /// Accept.
    Allow,
    /// Refuse with this MQTT 5 reason code (0: 0x87 not authorized; a
    /// code below 0x80 is sent as 0x80). The reason string is what
    /// [`host::set_reason`] set during the call.
    Deny(u8),
    /// Refuse and disconnect the client with this reason code.
    Disconnect(u8),
}

/// The answer of `authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// Pass the CONNECT to the next extension in the chain.
    Next,
    /// Accept the client, with the settings and permissions set during the
    /// call.
    Allow,
    /// Refuse with this MQTT 5 reason code (0: 0x87; e.g. 0x86 bad user
    /// name or password).
    Deny(u8),
}

/// The answer of the interceptors that may prevent a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intercept {
    /// Go on with the packet, changed by the `packet_set` calls made.
    Next,
    /// Prevent the packet (the PUBLISH, that delivery, that filter) with
    /// this reason code (0: 0x83); the call's changes are discarded.
    Prevent(u8),
}

/// An extension: built by `start` in every instance, dropped at stop.
pub trait Extension: Sized + 'static {
    /// The largest record this extension accepts, in bytes (default 4
    /// MiB). A larger record is declined (`propolis_buffer` answers 0): the
    /// host then fails that call closed without calling the extension.
    const MAX_RECORD_SIZE: usize = 4 << 20;

    /// Builds the extension from the START record (its `config` is the
    /// manifest's, as JSON). An error refuses the start; its text is the
    /// reason the broker logs and shows (at most 1,024 bytes). Host calls
    /// that configure the extension (`add_publish_filter`, ...) belong here.
    fn start(info: &Start<'_>) -> Result<Self, String>;

    /// Called once before the instance is closed.
    fn stop(&mut self) {}
}

/// `propolis_authenticate`: decides on a CONNECT.
pub trait Authenticate: Extension {
    /// Answers NEXT, ALLOW or DENY.
    fn authenticate(&mut self, connect: &Connect<'_>) -> AuthDecision;
}

/// `propolis_authorize_publish`: decides on a PUBLISH (or a will).
pub trait AuthorizePublish: Extension {
    /// Answers NEXT, ALLOW, DENY or DISCONNECT.
    fn authorize_publish(&mut self, publish: &Publish<'_>) -> Decision;
}

/// `propolis_authorize_subscribe`: decides on one topic filter.
pub trait AuthorizeSubscribe: Extension {
    /// Answers NEXT, ALLOW, DENY or DISCONNECT.
    fn authorize_subscribe(&mut self, subscribe: &Subscribe<'_>) -> Decision;
}

/// `propolis_on_event`: lifecycle events, after the fact.
pub trait OnEvent: Extension {
    /// Handles one event.
    fn on_event(&mut self, event: &Event<'_>);
}

/// `propolis_tick`: housekeeping every manifest `tick` interval.
pub trait Tick: Extension {
    /// Runs one tick.
    fn tick(&mut self);
}

/// `propolis_intercept_connect` (1.2): may change a CONNECT with
/// [`host::packet_set`] and [`host::packet_set_int`].
pub trait InterceptConnect: Extension {
    /// Sees (and may change) one CONNECT.
    fn intercept_connect(&mut self, connect: &Connect<'_>);
}

/// `propolis_intercept_connack` (1.2): may add user properties and a
/// reason string to a CONNACK.
pub trait InterceptConnack: Extension {
    /// Sees (and may change) one CONNACK.
    fn intercept_connack(&mut self, connack: &Connack<'_>);
}

/// `propolis_intercept_publish_inbound` (1.2).
pub trait InterceptPublishInbound: Extension {
    /// Sees, may change or prevent, one PUBLISH from a client.
    fn intercept_publish_inbound(&mut self, message: &Message<'_>) -> Intercept;
}

/// `propolis_intercept_publish_outbound` (1.2).
pub trait InterceptPublishOutbound: Extension {
    /// Sees, may change or prevent, one delivery.
    fn intercept_publish_outbound(&mut self, message: &Message<'_>) -> Intercept;
}

/// `propolis_intercept_subscribe` (1.2).
pub trait InterceptSubscribe: Extension {
    /// Sees, may change or prevent, one topic filter.
    fn intercept_subscribe(&mut self, subscription: &Subscription<'_>) -> Intercept;
}

/// `propolis_intercept_disconnect` (1.2).
pub trait InterceptDisconnect: Extension {
    /// Sees (and may add properties and a reason string to) one DISCONNECT.
    fn intercept_disconnect(&mut self, disconnect: &Disconnect<'_>);
}

/// Exports an extension type: the marker, `propolis_buffer`, start and stop,
/// and one export per callback named, each of which needs the type to
/// implement that callback's trait:
///
/// `authenticate`, `authorize_publish`, `authorize_subscribe`, `on_event`,
/// `tick`, `intercept_connect`, `intercept_connack`,
/// `intercept_publish_inbound`, `intercept_publish_outbound`,
/// `intercept_subscribe`, `intercept_disconnect`.
///
/// ```ignore
/// propolis::extension!(RateCap, authorize_publish);
/// ```
///
/// Use it once, in the crate built as the `cdylib`.
#[macro_export]
macro_rules! extension {
    ($t:ty $(, $cb:ident)* $(,)?) => {
        $crate::__propolis_export!($t, marker);
        $crate::__propolis_export!($t, buffer);
        $crate::__propolis_export!($t, start);
        $crate::__propolis_export!($t, stop);
        $( $crate::__propolis_export!($t, $cb); )*
    };
}
