//! rate-cap: a per-connection publish rate cap, a Propolis extension built
//! with the Rust SDK.
//!
//! Every PUBLISH (on the topics configured) takes a token from its
//! connection's bucket, which refills at `rate` tokens per second up to
//! `burst`. A PUBLISH finding the bucket empty is refused with 0x96
//! (message rate too high) or the configured code, and the reason string
//! says the cap; others pass on (NEXT), so the rest of the chain decides.
//!
//! Where the bucket lives: instances are pooled and any instance serves
//! any client (ABI.md section 1), so a bucket in a global would count a
//! client's publishes once per instance and let it through `pool_size`
//! times faster. The bucket is a connection attribute instead (service
//! `connection_attributes`): 16 bytes in the broker's memory, per network
//! connection, shared by every instance, gone when the connection ends. A
//! reconnecting client starts with a full bucket; a client that needs a cap
//! across reconnects would keep it in a session attribute (stored with the
//! session, at the cost of a store write per publish).
//!
//! Each counted PUBLISH costs one or two service calls (read the bucket,
//! write it back when allowed), which the extension's service rate limit
//! bounds (manifest `limits.service_rate`, within the broker's
//! `extension_services` cap, 10,000 calls per second by default): size it
//! to about twice the publishes per second the broker takes on the capped
//! topics. A call over that limit (RATE_LIMITED) means publishes arrive
//! faster than the budget sized for the cap: the PUBLISH is treated as over
//! the cap and refused with the cap's code, so a flood cannot turn the cap
//! off by exhausting the budget. When the broker fails otherwise (INTERNAL,
//! NOT_PERMITTED) the PUBLISH is refused with 0x80 (`fail_open: false`, the
//! default) or passes on (`fail_open: true`).
//!
//! Configuration (manifest `config`), every key optional:
//!
//! ```yaml
//! config:
//!   rate: 10          # publishes per second per connection, > 0 (0.5 = one every 2 s)
//!   burst: 20         # publishes at once; default: rate rounded up, at least 1
//!   topics: ["#"]     # topic filters whose publishes count; default every topic
//!   code: 0x96        # reason code of the refusal, 0x80 to 0xFF
//!   disconnect: false # true: DISCONNECT the client instead of DENY
//!   fail_open: false  # true: pass on when the broker fails (not when rate limited)
//! ```

use propolis::host::{self, Level};
use propolis::json::{self, Value};
use propolis::{code, AuthorizePublish, Decision, Extension, Publish, Start};
use std::time::{SystemTime, UNIX_EPOCH};

/// The connection attribute holding the bucket. Attributes are shared by
/// every extension: the key carries this extension's id.
const BUCKET_KEY: &str = "rate-cap.bucket";

/// Nano-tokens per token: the bucket counts in billionths of a publish so
/// that a refill over a few nanoseconds is not lost to rounding.
const SCALE: u128 = 1_000_000_000;

/// The configuration, from the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Refill, in thousandths of a publish per second (1 to 10^9).
    pub rate_milli: u64,
    /// Bucket size, in publishes (1 to 10^6).
    pub burst: u64,
    /// Topic filters whose publishes count; empty: every topic.
    pub topics: Vec<String>,
    /// Reason code of a refusal.
    pub code: u8,
    /// DISCONNECT instead of DENY.
    pub disconnect: bool,
    /// Pass on when the broker fails to read or write the bucket (never
    /// when the service budget is spent: that refuses as over the cap).
    pub fail_open: bool,
}

impl Config {
    /// Reads the manifest's config (JSON), refusing unknown keys and values
    /// out of range with a message naming the key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let v = json::parse(text).map_err(|e| format!("config: {}", e))?;
        let members = match &v {
            Value::Object(m) => m,
            Value::Null => return Config::parse("{}"),
            _ => return Err("config: must be a mapping".to_string()),
        };
        for (k, _) in members {
            if !["rate", "burst", "topics", "code", "disconnect", "fail_open"].contains(&k.as_str()) {
                return Err(format!("config.{}: unknown key (known: rate, burst, topics, code, disconnect, fail_open)", k));
            }
        }
        let rate = match v.get("rate") {
            None => 10.0,
            Some(r) => r.as_f64().ok_or("config.rate: must be a number")?,
        };
        if !(rate >= 0.001 && rate <= 1_000_000.0) {
            return Err(format!("config.rate: {} out of range 0.001-1000000 publishes per second", rate));
        }
        let rate_milli = (rate * 1000.0).round() as u64;
        let burst = match v.get("burst") {
            None => ((rate_milli + 999) / 1000).max(1),
            Some(b) => b.as_u64().ok_or("config.burst: must be a whole number")?,
        };
        if !(1..=1_000_000).contains(&burst) {
            return Err(format!("config.burst: {} out of range 1-1000000", burst));
        }
        let mut topics = Vec::new();
        if let Some(t) = v.get("topics") {
            let list = t.as_array().ok_or("config.topics: must be a list of topic filters")?;
            for (i, f) in list.iter().enumerate() {
                match f.as_str() {
                    Some(s) if !s.is_empty() => topics.push(s.to_string()),
                    _ => return Err(format!("config.topics[{}]: must be a non-empty topic filter", i)),
                }
            }
        }
        let code = match v.get("code") {
            None => code::MESSAGE_RATE_TOO_HIGH,
            Some(c) => match c.as_u64() {
                Some(n) if (0x80..=0xFF).contains(&n) => n as u8,
                _ => return Err("config.code: must be a reason code from 0x80 to 0xFF".to_string()),
            },
        };
        let flag = |key: &str, default: bool| -> Result<bool, String> {
            match v.get(key) {
                None => Ok(default),
                Some(b) => b.as_bool().ok_or(format!("config.{}: must be true or false", key)),
            }
        };
        Ok(Config { rate_milli, burst, topics, code, disconnect: flag("disconnect", false)?, fail_open: flag("fail_open", false)? })
    }
}

/// A bucket: tokens in nano-tokens, and when it was last refilled (Unix
/// ns). Stored as 16 little-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Nano-tokens left.
    pub tokens: u64,
    /// Unix nanoseconds of the last refill.
    pub last: u64,
}

impl Bucket {
    /// Decodes a stored bucket; anything but 16 bytes is None (a fresh
    /// bucket is used).
    pub fn decode(b: &[u8]) -> Option<Bucket> {
        if b.len() != 16 {
            return None;
        }
        let mut t = [0u8; 8];
        let mut l = [0u8; 8];
        t.copy_from_slice(&b[..8]);
        l.copy_from_slice(&b[8..]);
        Some(Bucket { tokens: u64::from_le_bytes(t), last: u64::from_le_bytes(l) })
    }

    /// The 16 bytes stored.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.tokens.to_le_bytes());
        out[8..].copy_from_slice(&self.last.to_le_bytes());
        out
    }

    /// Refills the bucket up to `now` and takes one token: the bucket
    /// after, and whether there was a token. A clock that went back
    /// refills nothing and restarts from `now`.
    pub fn take(prev: Option<Bucket>, now: u64, cfg: &Config) -> (Bucket, bool) {
        let cap = cfg.burst as u128 * SCALE;
        let mut tokens = match prev {
            None => cap,
            Some(b) => {
                let elapsed = now.saturating_sub(b.last) as u128;
                // elapsed ns * (rate_milli / 1000) tokens/s = nano-tokens.
                (b.tokens as u128 + elapsed * cfg.rate_milli as u128 / 1000).min(cap)
            }
        };
        let allowed = tokens >= SCALE;
        if allowed {
            tokens -= SCALE;
        }
        (Bucket { tokens: tokens as u64, last: now }, allowed)
    }
}

/// The extension: its configuration, and per instance only a counter that
/// spaces out log lines.
pub struct RateCap {
    cfg: Config,
    reason: String,
    errors: u64,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl RateCap {
    /// The refusal of a PUBLISH over the cap.
    fn over_cap(&self) -> Decision {
        let _ = host::set_reason(&self.reason);
        if self.cfg.disconnect {
            Decision::Disconnect(self.cfg.code)
        } else {
            Decision::Deny(self.cfg.code)
        }
    }

    /// The answer when the broker cannot give or keep the bucket. Over the
    /// service budget (RATE_LIMITED) is over the cap: the budget is sized
    /// for publishes at the cap, so spending it means a flood, which
    /// passing on would let through uncapped.
    fn broker_failed(&mut self, what: &str, e: host::Error) -> Decision {
        self.errors += 1;
        if self.errors == 1 || self.errors % 1000 == 0 {
            let hint = match e {
                host::Error::NotPermitted => " (grant connection_attributes in the manifest's services)",
                host::Error::RateLimited => " (over limits.service_rate: refused as over the cap)",
                _ => "",
            };
            host::log(Level::Warn, &format!("{} the bucket: {}{} ({} times in this instance)", what, e, hint, self.errors));
        }
        if e == host::Error::RateLimited {
            self.over_cap()
        } else if self.cfg.fail_open {
            Decision::Next
        } else {
            let _ = host::set_reason("rate cap unavailable");
            Decision::Deny(code::UNSPECIFIED_ERROR)
        }
    }
}

impl Extension for RateCap {
    fn start(info: &Start<'_>) -> Result<Self, String> {
        let cfg = Config::parse(info.config)?;
        for f in &cfg.topics {
            host::add_publish_filter(f).map_err(|e| format!("config.topics: {:?}: {}", f, e))?;
        }
        let rate = cfg.rate_milli as f64 / 1000.0;
        if info.instance == 0 {
            host::log(Level::Info, &format!("rate cap {} publishes per second per connection, burst {}", rate, cfg.burst));
        }
        let reason = format!("publish rate above {} per second (burst {})", rate, cfg.burst);
        Ok(RateCap { cfg, reason, errors: 0 })
    }
}

impl AuthorizePublish for RateCap {
    fn authorize_publish(&mut self, p: &Publish<'_>) -> Decision {
        if p.is_will() {
            // A will is published by the broker when the connection ends,
            // not by the client now: it is not counted.
            return Decision::Next;
        }
        let prev = match host::connection_attribute_get(BUCKET_KEY) {
            Ok(v) => v.as_deref().and_then(Bucket::decode),
            Err(e) => return self.broker_failed("read", e),
        };
        let (bucket, allowed) = Bucket::take(prev, now_ns(), &self.cfg);
        if !allowed {
            // Nothing to store: the next call refills from the same point.
            return self.over_cap();
        }
        match host::connection_attribute_put(BUCKET_KEY, &bucket.encode()) {
            Ok(()) => Decision::Next,
            // The connection ended meanwhile: nothing left to cap.
            Err(host::Error::NotFound) => Decision::Next,
            Err(e) => self.broker_failed("write", e),
        }
    }
}

propolis::extension!(RateCap, authorize_publish);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = cfg("{}");
        assert_eq!((c.rate_milli, c.burst, c.code, c.disconnect, c.fail_open), (10_000, 10, 0x96, false, false));
        assert!(cfg(r#"{"fail_open": true}"#).fail_open);
        assert_eq!(cfg(r#"{"rate": 0.5}"#).burst, 1);
        assert_eq!(cfg(r#"{"rate": 2.5}"#).burst, 3);
        for (text, want) in [
            (r#"{"rat": 1}"#, "config.rat: unknown key (known: rate, burst, topics, code, disconnect, fail_open)"),
            (r#"{"rate": 0}"#, "config.rate: 0 out of range 0.001-1000000 publishes per second"),
            (r#"{"rate": "fast"}"#, "config.rate: must be a number"),
            (r#"{"burst": 0}"#, "config.burst: 0 out of range 1-1000000"),
            (r#"{"burst": 1.5}"#, "config.burst: must be a whole number"),
            (r#"{"code": 5}"#, "config.code: must be a reason code from 0x80 to 0xFF"),
            (r#"{"topics": ["a/#", ""]}"#, "config.topics[1]: must be a non-empty topic filter"),
            (r#"{"disconnect": "yes"}"#, "config.disconnect: must be true or false"),
            ("[1]", "config: must be a mapping"),
        ] {
            assert_eq!(Config::parse(text).err().unwrap(), want, "config {}", text);
        }
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let c = cfg(r#"{"rate": 2, "burst": 3}"#);
        let t0 = 1_000_000_000_000u64;
        let mut b = None;
        for i in 0..3 {
            let (nb, ok) = Bucket::take(b, t0, &c);
            assert!(ok, "publish {} of the burst refused", i);
            b = Some(nb);
        }
        let (nb, ok) = Bucket::take(b, t0, &c);
        assert!(!ok, "a fourth publish at once passed");
        // Refused calls are not stored: refill from the last stored state.
        let _ = nb;
        let (nb, ok) = Bucket::take(b, t0 + 499_999_999, &c);
        assert!(!ok, "a token came back before half a second at 2 per second");
        let _ = nb;
        let (nb, ok) = Bucket::take(b, t0 + 500_000_000, &c);
        assert!(ok, "no token after half a second at 2 per second");
        let (_, ok) = Bucket::take(Some(nb), t0 + 500_000_000, &c);
        assert!(!ok);
        // A long pause refills to the burst, not beyond.
        let (full, _) = Bucket::take(Some(nb), t0 + 3_600_000_000_000, &c);
        assert_eq!(full.tokens as u128, 2 * SCALE);
    }

    #[test]
    fn clock_going_back_refills_nothing() {
        let c = cfg(r#"{"rate": 1000, "burst": 1}"#);
        let (b, ok) = Bucket::take(None, 10_000, &c);
        assert!(ok);
        let (b2, ok) = Bucket::take(Some(b), 5_000, &c);
        assert!(!ok);
        assert_eq!(b2.last, 5_000);
    }

    #[test]
    fn bucket_bytes_round_trip() {
        let b = Bucket { tokens: 7, last: 1 << 60 };
        assert_eq!(Bucket::decode(&b.encode()), Some(b));
        assert_eq!(Bucket::decode(&[1, 2, 3]), None);
    }
}
