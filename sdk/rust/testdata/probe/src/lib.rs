//! probe: a test extension exercising the Rust SDK's callbacks, records
//! and host wrappers beyond the rate-cap example, driven by
//! host/sdk_rust_test.go (TestRustSDKProbe) through a real broker. Not an
//! example to copy: each behaviour exists to be observed from an MQTT
//! client.
//!
//! - authenticate: users `bad` and `anon` are refused with 0x86 and a reason string;
//!   others are allowed with a CONNACK user property `sdk=rust` and two
//!   permissions (deny publishing under `forbidden/`, allow the rest).
//! - authorize_subscribe: filters under `secret/` are refused with 0x87.
//! - intercept_connack: adds the user property `intercepted=yes`.
//! - intercept_publish_inbound (only for `legacy/#`): moves `legacy/X` to
//!   `modern/X` and appends the user property `via=rust`; the payload
//!   `drop` is prevented with 0x99 and the reason `dropped`.
//! - on_event: publishes the event's name to `probe/events/<client id>`,
//!   followed by `:` and the reason string when there is one (service
//!   `publish`).
//! - intercept_connect: the user name `anon` becomes `guest` (authenticate
//!   refuses `anon`, so only the rewrite lets such a client in).
//! - intercept_subscribe: a QoS 2 request for `capped/#` is lowered to 1.
//! - intercept_publish_outbound (only `modern/#`, only to clients `plain*`):
//!   removes every user property of that delivery.
//! - intercept_disconnect: a DISCONNECT the client sends gets the reason
//!   string `said goodbye` (the disconnect event then carries it).
//! - tick: counts its calls in storage (`ticks`) and publishes the count
//!   to `probe/tick` (services `storage`, `publish`).

use propolis::host::{self, Activity, OutMessage, Permission, PermissionDecision};
use propolis::record::encode_pairs;
use propolis::{
    abi, code, AuthDecision, Authenticate, AuthorizeSubscribe, Connack, Connect, Decision, Disconnect, Event, Extension, Intercept,
    InterceptConnack, InterceptConnect, InterceptDisconnect, InterceptPublishInbound, InterceptPublishOutbound, InterceptSubscribe,
    Message, OnEvent, Start, Subscribe, Subscription, Tick,
};

struct Probe;

impl Extension for Probe {
    fn start(_: &Start<'_>) -> Result<Self, String> {
        host::add_intercept_filter(abi::CALLBACK_INTERCEPT_PUBLISH_INBOUND, "legacy/#").map_err(|e| e.to_string())?;
        host::add_intercept_filter(abi::CALLBACK_INTERCEPT_PUBLISH_OUTBOUND, "modern/#").map_err(|e| e.to_string())?;
        host::add_intercept_client("plain*").map_err(|e| e.to_string())?;
        Ok(Probe)
    }
}

impl Authenticate for Probe {
    fn authenticate(&mut self, c: &Connect<'_>) -> AuthDecision {
        if c.username == "bad" || c.username == "anon" {
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
        let mut payload = e.name().to_string();
        if !e.reason_string.is_empty() {
            payload = format!("{}:{}", payload, e.reason_string);
        }
        let msg = OutMessage { topic: &topic, payload: payload.as_bytes(), ..OutMessage::default() };
        if let Err(err) = host::publish(&msg) {
            host::log(host::Level::Warn, &format!("on_event: publish {}: {}", topic, err));
        }
    }
}

impl InterceptConnect for Probe {
    fn intercept_connect(&mut self, c: &Connect<'_>) {
        if c.username == "anon" {
            let _ = host::packet_set(abi::FIELD_USERNAME, b"guest");
        }
    }
}

impl InterceptSubscribe for Probe {
    fn intercept_subscribe(&mut self, s: &Subscription<'_>) -> Intercept {
        if s.filter == "capped/#" && s.qos > 1 {
            let _ = host::packet_set_int(abi::FIELD_QOS, 1);
        }
        Intercept::Next
    }
}

impl InterceptPublishOutbound for Probe {
    fn intercept_publish_outbound(&mut self, _: &Message<'_>) -> Intercept {
        let _ = host::packet_set(abi::FIELD_USER_PROPERTIES, &encode_pairs([]));
        Intercept::Next
    }
}

impl InterceptDisconnect for Probe {
    fn intercept_disconnect(&mut self, d: &Disconnect<'_>) {
        if d.direction == 1 {
            let _ = host::packet_set(abi::FIELD_REASON_STRING, b"said goodbye");
        }
    }
}

impl Tick for Probe {
    fn tick(&mut self) {
        let n = match host::storage_get(b"ticks") {
            Ok(Some(v)) => std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0),
            Ok(None) => 0,
            Err(e) => {
                host::log(host::Level::Warn, &format!("tick: storage_get: {}", e));
                return;
            }
        };
        let count = (n + 1).to_string();
        if let Err(e) = host::storage_put(b"ticks", count.as_bytes()) {
            host::log(host::Level::Warn, &format!("tick: storage_put: {}", e));
            return;
        }
        let _ = host::publish(&OutMessage { topic: "probe/tick", payload: count.as_bytes(), ..OutMessage::default() });
    }
}

propolis::extension!(
    Probe,
    authenticate,
    authorize_subscribe,
    intercept_connect,
    intercept_connack,
    intercept_publish_inbound,
    intercept_publish_outbound,
    intercept_subscribe,
    intercept_disconnect,
    on_event,
    tick,
);
