//! probe: a test extension exercising the Rust SDK's callbacks, records
//! and host wrappers beyond the rate-cap example, driven by
//! host/sdk_rust_test.go (TestRustSDKProbe) through a real broker. Not an
//! example to copy: each behaviour exists to be observed from an MQTT
//! client.
//!
//! - authenticate: user `bad` is refused with 0x86 and a reason string;
//!   others are allowed with a CONNACK user property `sdk=rust` and two
//!   permissions (deny publishing under `forbidden/`, allow the rest).
//! - authorize_subscribe: filters under `secret/` are refused with 0x87.
//! - intercept_connack: adds the user property `intercepted=yes`.
//! - intercept_publish_inbound (only for `legacy/#`): moves `legacy/X` to
//!   `modern/X` and appends the user property `via=rust`; the payload
//!   `drop` is prevented with 0x99 and the reason `dropped`.
//! - on_event: publishes the event's name to `probe/events/<client id>`
//!   (service `publish`).

use propolis::host::{self, Activity, OutMessage, Permission, PermissionDecision};
use propolis::record::encode_pairs;
use propolis::{
    abi, code, AuthDecision, Authenticate, AuthorizeSubscribe, Connack, Connect, Decision, Event, Extension, Intercept,
    InterceptConnack, InterceptPublishInbound, Message, OnEvent, Start, Subscribe,
};

struct Probe;

impl Extension for Probe {
    fn start(_: &Start<'_>) -> Result<Self, String> {
        host::add_intercept_filter(abi::CALLBACK_INTERCEPT_PUBLISH_INBOUND, "legacy/#").map_err(|e| e.to_string())?;
        Ok(Probe)
    }
}

impl Authenticate for Probe {
    fn authenticate(&mut self, c: &Connect<'_>) -> AuthDecision {
        if c.username == "bad" {
            let _ = host::set_reason("bad user name or password");
            return AuthDecision::Deny(code::BAD_USERNAME_OR_PASSWORD);
        }
        let steps = [
            host::add_connack_user_property("sdk", "rust"),
            host::add_permission(&Permission::new(PermissionDecision::Deny, Activity::Publish, "forbidden/#")),
            host::add_permission(&Permission::new(PermissionDecision::Allow, Activity::Both, "#")),
        ];
        for s in steps {
            if let Err(e) = s {
                host::log(host::Level::Error, &format!("authenticate: {}", e));
                return AuthDecision::Deny(code::UNSPECIFIED_ERROR);
            }
        }
        AuthDecision::Allow
    }
}

impl AuthorizeSubscribe for Probe {
    fn authorize_subscribe(&mut self, s: &Subscribe<'_>) -> Decision {
        if s.filter.starts_with("secret/") {
            let _ = host::set_reason("secret");
            return Decision::Deny(code::NOT_AUTHORIZED);
        }
        Decision::Next
    }
}

impl InterceptConnack for Probe {
    fn intercept_connack(&mut self, c: &Connack<'_>) {
        let mut props: Vec<(&str, &str)> = c.user_properties.iter().collect();
        props.push(("intercepted", "yes"));
        let _ = host::packet_set(abi::FIELD_USER_PROPERTIES, &encode_pairs(props));
    }
}

impl InterceptPublishInbound for Probe {
    fn intercept_publish_inbound(&mut self, m: &Message<'_>) -> Intercept {
        if m.payload == b"drop" {
            let _ = host::set_reason("dropped");
            return Intercept::Prevent(code::PAYLOAD_FORMAT_INVALID);
        }
        if let Some(rest) = m.topic.strip_prefix("legacy/") {
            let _ = host::packet_set(abi::FIELD_TOPIC, format!("modern/{}", rest).as_bytes());
        }
        let mut props: Vec<(&str, &str)> = m.user_properties.iter().collect();
        props.push(("via", "rust"));
        let _ = host::packet_set(abi::FIELD_USER_PROPERTIES, &encode_pairs(props));
        Intercept::Next
    }
}

impl OnEvent for Probe {
    fn on_event(&mut self, e: &Event<'_>) {
        let topic = format!("probe/events/{}", e.client_id);
        let msg = OutMessage { topic: &topic, payload: e.name().as_bytes(), ..OutMessage::default() };
        if let Err(err) = host::publish(&msg) {
            host::log(host::Level::Warn, &format!("on_event: publish {}: {}", topic, err));
        }
    }
}

propolis::extension!(Probe, authenticate, authorize_subscribe, intercept_connack, intercept_publish_inbound, on_event);
