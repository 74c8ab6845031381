package propolis

// Decision is what a handler answers (ABI.md section 3, "Decisions").
type Decision uint8

// Decisions.
const (
	// DecisionNext passes the question to the next extension in the chain
	// (and, for publishes and subscribes, finally to the client's
	// permissions).
	DecisionNext Decision = 0
	// DecisionAllow allows the CONNECT, PUBLISH or SUBSCRIBE.
	DecisionAllow Decision = 1
	// DecisionDeny refuses the CONNECT, PUBLISH or SUBSCRIBE.
	DecisionDeny Decision = 2
	// DecisionDisconnect refuses a PUBLISH or SUBSCRIBE and disconnects the
	// client. It is not valid for Authenticate, where the SDK sends it as
	// DecisionDeny.
	DecisionDisconnect Decision = 3
)

// String returns the decision's name, e.g. "allow".
func (d Decision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return "invalid"
}

// Reason codes commonly used with Deny and Disconnect (MQTT 5). Any code
// from 0x80 up may be used.
const (
	// CodeUnspecified is 0x80, unspecified error.
	CodeUnspecified byte = 0x80
	// CodeBadUsernameOrPassword is 0x86, bad user name or password.
	CodeBadUsernameOrPassword byte = 0x86
	// CodeNotAuthorized is 0x87, not authorized (also what code 0 means).
	CodeNotAuthorized byte = 0x87
	// CodeServerUnavailable is 0x88, server unavailable (3.1.1 clients get
	// return code 3): for an identity service that does not answer.
	CodeServerUnavailable byte = 0x88
	// CodeBanned is 0x8A, banned.
	CodeBanned byte = 0x8A
	// CodeTopicFilterInvalid is 0x8F, topic filter invalid: for a
	// SUBSCRIBE (3.1.1 clients get 0x80 in the SUBACK).
	CodeTopicFilterInvalid byte = 0x8F
	// CodeTopicNameInvalid is 0x90, topic name invalid.
	CodeTopicNameInvalid byte = 0x90
	// CodeQuotaExceeded is 0x97, quota exceeded.
	CodeQuotaExceeded byte = 0x97
	// CodeAdministrativeAction is 0x98, administrative action.
	CodeAdministrativeAction byte = 0x98
)

// maxReason is the longest reason string set_reason accepts.
const maxReason = 1024

// Verdict is a handler's answer: a decision, with a reason code and reason
// string for DecisionDeny and DecisionDisconnect. The zero Verdict is
// Next(). Build one with Allow, Deny, Next or Disconnect.
type Verdict struct {
	// Decision is the decision.
	Decision Decision
	// Code is the MQTT 5 reason code of a deny or disconnect; 0 means 0x87
	// (not authorized). ABI.md requires codes >= 0x80: the SDK sends any
	// other non-zero code as 0x80 (unspecified error).
	Code byte
	// Reason is the MQTT 5 reason string of a deny or disconnect (empty:
	// none). The SDK truncates it to 1,024 bytes.
	Reason string
}

// Allow returns a verdict allowing the CONNECT, PUBLISH or SUBSCRIBE.
func Allow() Verdict { return Verdict{Decision: DecisionAllow} }

// Next returns a verdict passing the question to the next extension in the
// chain.
func Next() Verdict { return Verdict{} }

// Deny returns a verdict refusing the CONNECT, PUBLISH or SUBSCRIBE with an
// MQTT 5 reason code (>= 0x80; 0 means 0x87 not authorized) and an optional
// reason string.
func Deny(code byte, reason string) Verdict {
	return Verdict{Decision: DecisionDeny, Code: code, Reason: reason}
}

// Disconnect returns a verdict refusing a PUBLISH or SUBSCRIBE and
// disconnecting the client, with an MQTT 5 reason code (>= 0x80; 0 means
// 0x87) and an optional reason string. From Authenticate it acts as Deny.
func Disconnect(code byte, reason string) Verdict {
	return Verdict{Decision: DecisionDisconnect, Code: code, Reason: reason}
}

// Encode returns the verdict as the i32 a callback returns to the host:
// the decision in bits 0-7 and, for a deny or disconnect, the reason code
// in bits 8-15. A decision outside the four defined ones encodes as a deny
// with 0x80 (fail closed); so does a non-zero code below 0x80.
func (v Verdict) Encode() uint32 {
	switch v.Decision {
	case DecisionNext, DecisionAllow:
		return uint32(v.Decision)
	case DecisionDeny, DecisionDisconnect:
		code := v.Code
		if code != 0 && code < 0x80 {
			code = CodeUnspecified
		}
		return uint32(v.Decision) | uint32(code)<<8
	}
	return uint32(DecisionDeny) | uint32(CodeUnspecified)<<8
}

// refuses reports whether the verdict is a deny or disconnect (or invalid,
// which Encode sends as a deny).
func (v Verdict) refuses() bool {
	return v.Decision != DecisionNext && v.Decision != DecisionAllow
}

// forAuthenticate returns the verdict as sent from Authenticate, where
// DecisionDisconnect is not valid: a disconnect becomes a deny.
func (v Verdict) forAuthenticate() Verdict {
	if v.Decision == DecisionDisconnect {
		v.Decision = DecisionDeny
	}
	return v
}

// truncateReason cuts s to at most maxReason bytes, on a UTF-8 boundary.
func truncateReason(s string) string {
	if len(s) <= maxReason {
		return s
	}
	n := maxReason
	for n > 0 && s[n]&0xC0 == 0x80 { // s[n] continues a rune: back up
		n--
	}
	return s[:n]
}

// AuthResult is Authenticate's answer: a verdict and, on Allow, settings
// and default permissions for the client. Settings left at their zero
// value keep the broker's defaults. Everything but the verdict is ignored
// unless the verdict is Allow.
type AuthResult struct {
	// Verdict is the decision: Allow, Deny or Next (Disconnect acts as
	// Deny).
	Verdict
	// SessionExpiry, if not nil, sets the client's session expiry in
	// seconds (the broker caps it at its configured maximum).
	SessionExpiry *uint32
	// ReceiveMaximum, if not 0, sets how many QoS 1/2 PUBLISH packets the
	// client may have unacknowledged.
	ReceiveMaximum uint16
	// Keepalive, if not nil, overrides the client's keepalive in seconds
	// (MQTT 5 clients are told in the CONNACK).
	Keepalive *uint16
	// MaxQueued, if not 0, sets how many QoS 1/2 messages the broker keeps
	// for the client (at most the broker's own limit).
	MaxQueued uint16
	// NoThrottling (ABI 1.3) exempts the client from the broker's overload
	// throttling: however high the broker's stress level, the client's
	// socket is not read more slowly for it. The broker's per-client
	// limits (client_limits) apply either way. Default false: the client's
	// listener decides.
	NoThrottling bool
	// ConnackUserProperties are added to the CONNACK (MQTT 5 clients; at
	// most 32).
	ConnackUserProperties []UserProperty
	// Permissions are the client's default topic permissions, tried in
	// order by the host on every PUBLISH and SUBSCRIBE that no
	// AuthorizePublish/AuthorizeSubscribe handler decided. Once a client has
	// any permission, whatever none of them matches is denied.
	//
	// WITH NO PERMISSIONS, EVERYTHING IS ALLOWED: a client allowed with an
	// empty list may publish and subscribe to every topic that no
	// authorize handler (of this extension or another) refuses. Give at
	// least one permission to restrict it, or set Unrestricted to say that
	// this is meant; otherwise the SDK logs a warning (once per instance).
	// At most 256.
	Permissions []Permission
	// Unrestricted confirms that an Allow with no Permissions is meant to
	// leave the client's topics unrestricted (for example because another
	// extension's authorize handlers decide them). It silences the SDK's
	// warning and changes nothing else; with Permissions it has no effect.
	Unrestricted bool
}
