package broker

import (
	"context"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
)

// This file declares everything the broker needs from its extensions. The
// broker never imports the extension host: cmd/propolis wires an
// implementation (the Wasm host) into Options.Extensions.

// Decision is the outcome of an authentication or authorization.
type Decision uint8

const (
	// Deny refuses the CONNECT, PUBLISH or SUBSCRIBE with ReasonCode. It is the
	// zero value, so a forgotten decision fails closed.
	Deny Decision = iota
	// Allow accepts it.
	Allow
	// Disconnect refuses a PUBLISH or SUBSCRIBE and closes the client's
	// connection with ReasonCode (MQTT 5 DISCONNECT).
	Disconnect
)

// String returns "deny", "allow" or "disconnect".
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Disconnect:
		return "disconnect"
	default:
		return "deny"
	}
}

// MQTT 5 reason codes the broker and extensions use most.
const (
	CodeSuccess                     byte = 0x00
	CodeUnspecifiedError            byte = 0x80
	CodeImplementationSpecificError byte = 0x83
	CodeNotAuthorized               byte = 0x87
	CodeBadUserOrPassword           byte = 0x86
	CodeServerUnavailable           byte = 0x88
	CodeServerShutdown              byte = 0x8B
	CodeTopicFilterInvalid          byte = 0x8F
	CodeTopicNameInvalid            byte = 0x90
	CodeQuotaExceeded               byte = 0x97
)

// UserProperty is one MQTT 5 user property.
type UserProperty struct {
	Key, Value string
}

// TLSInfo describes the client certificate of a TLS connection.
type TLSInfo struct {
	// PeerSubject is the subject of the verified client certificate, in
	// RFC 2253 form; empty when the client sent none.
	PeerSubject string
	// PeerSANs lists the certificate's DNS names, IP addresses, URIs and e-mail
	// addresses.
	PeerSANs []string
}

// WillInfo describes the will message a CONNECT carries.
type WillInfo struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Delay is the will delay interval in seconds (MQTT 5).
	Delay uint32
}

// Connect is a CONNECT being authenticated. The broker fills it on the
// client's goroutine; the Authenticator must not keep it after returning.
type Connect struct {
	ClientID        string
	Username        string
	HasUsername     bool   // the CONNECT carried a user name (possibly empty)
	Password        []byte // nil when the CONNECT carried none
	ProtocolVersion byte   // 3 (3.1), 4 (3.1.1) or 5
	CleanStart      bool
	Keepalive       uint16 // seconds
	SessionExpiry   uint32 // seconds, MQTT 5 only
	// ReceiveMaximum is the CONNECT's Receive Maximum (MQTT 5; 0 when it
	// sent none, which means 65,535).
	ReceiveMaximum uint16
	RemoteAddr     string
	Listener       string   // the listener's name from the configuration
	TLS            *TLSInfo // nil on a plain TCP or WebSocket connection
	UserProperties []UserProperty
	Will           *WillInfo // nil when the CONNECT has no will
	// Conn is the connection, for ConnectionAttributes: what the
	// Authenticator writes there stays with the connection when it is
	// accepted (see svc_connattrs.go).
	Conn Conn
}

// ClientSettings are per-client limits an authenticator may set on Allow. A
// zero field leaves the broker's value in place.
type ClientSettings struct {
	// ReceiveMaximum is how many QoS 1/2 PUBLISH packets the client may have
	// unacknowledged towards the broker; one more disconnects it (0x93).
	ReceiveMaximum uint16
	// SessionExpiry overrides the session expiry, in seconds, when non-nil.
	SessionExpiry *uint32
	// Keepalive overrides the keepalive, in seconds, when non-nil; the CONNACK
	// tells an MQTT 5 client (Server Keep Alive). Like the client's own, it
	// is capped at mqtt.max_keepalive, and 0 means that maximum.
	Keepalive *uint16
	// MaxQueued caps the QoS 1/2 messages kept for this client (in flight and
	// queued), below the broker's mqtt.max_queued_messages; when full, new
	// messages for the client are dropped.
	MaxQueued uint16
	// NoThrottling exempts the client from overload throttling: however
	// high the node's stress level, its socket is not read more slowly for
	// it (as if its listener had overload_protection: false). The
	// operator's client_limits still apply.
	NoThrottling bool
}

// AuthResult is an Authenticator's answer to one CONNECT.
type AuthResult struct {
	Decision Decision
	// ReasonCode is the MQTT 5 CONNACK reason code for Deny (0x87 when zero).
	// MQTT 3.1.1 clients get the matching 3.1.1 return code.
	ReasonCode   byte
	ReasonString string
	Settings     ClientSettings
	// ConnackUserProperties are sent to MQTT 5 clients in the CONNACK.
	ConnackUserProperties []UserProperty
	// Client authorizes this client's publishes and subscriptions for the
	// life of the connection. Required on Allow: an Allow without it is
	// treated as Deny.
	Client ClientAuthorizer
	// DecidedBy names what took the decision: the extension host sets the
	// id of the extension whose answer it returns. The broker keeps it
	// with the session (ClientInfo.AuthenticatedBy); "" when unknown.
	DecidedBy string
}

// Authenticator decides whether a CONNECT is accepted.
//
// Authenticate is called on the connecting client's goroutine, before the
// CONNACK; ctx carries the broker's deadline for the decision. It must be
// safe for concurrent use.
type Authenticator interface {
	Authenticate(ctx context.Context, c *Connect) AuthResult
	// SecurityExtensions names what can currently decide. An empty result
	// means every CONNECT will be refused; the broker says so at start-up.
	SecurityExtensions() []string
}

// Publish is a PUBLISH (or a will) being authorized.
type Publish struct {
	Topic   string
	QoS     byte
	Retain  bool
	Payload []byte
	// Will is true when this is the will of a CONNECT being authenticated.
	Will bool
}

// Subscribe is one topic filter of a SUBSCRIBE being authorized.
type Subscribe struct {
	Filter string
	QoS    byte
	// Shared is true for a $share/<group>/<filter> subscription; Filter then
	// holds the whole string.
	Shared bool
}

// Verdict is the answer to a publish or subscribe authorization.
type Verdict struct {
	Decision Decision
	// ReasonCode is the MQTT 5 reason code for Deny or Disconnect (0x87 when
	// zero).
	ReasonCode   byte
	ReasonString string
}

// ClientAuthorizer authorizes one connected client's PUBLISH and SUBSCRIBE
// packets. Its methods run on that client's goroutine, one at a time, on the
// hot path of every PUBLISH: they must be fast and must not block, and must
// not keep p or s after returning (the broker reuses them).
type ClientAuthorizer interface {
	AuthorizePublish(p *Publish) Verdict
	AuthorizeSubscribe(s *Subscribe) Verdict
}

// EventKind names a lifecycle event. Its values and names are the ABI's
// (abi.EventKinds), so that logs, extensions and the broker agree.
type EventKind uint8

const (
	// EventConnectionStart: a CONNECT arrived, before authentication.
	EventConnectionStart EventKind = abi.EventConnectionStart
	// EventAuthSucceeded: the CONNECT was accepted.
	EventAuthSucceeded EventKind = abi.EventAuthSucceeded
	// EventAuthFailed: the CONNECT was refused (ReasonCode says why).
	EventAuthFailed EventKind = abi.EventAuthFailed
	// EventDisconnect: an accepted client's connection ended (Disconnect says how).
	EventDisconnect EventKind = abi.EventDisconnect
	// EventSubscribe: a SUBSCRIBE was processed (Filters, with their granted codes).
	EventSubscribe EventKind = abi.EventSubscribe
	// EventUnsubscribe: an UNSUBSCRIBE was processed.
	EventUnsubscribe EventKind = abi.EventUnsubscribe
)

// String returns the event's name as logs and the ABI spell it
// ("connection_start", ...).
func (k EventKind) String() string { return abi.NameOf(abi.EventKinds, uint16(k)) }

// DisconnectKind says who ended a connection. Its values and names are the
// ABI's (abi.DisconnectKinds).
type DisconnectKind uint8

const (
	// DisconnectByClient: the client sent DISCONNECT (graceful).
	DisconnectByClient DisconnectKind = abi.DisconnectByClient
	// DisconnectLost: the network connection broke or the keepalive ran out.
	DisconnectLost DisconnectKind = abi.DisconnectLost
	// DisconnectByServer: the broker closed it (take-over, shutdown, a
	// protocol error, an extension's decision).
	DisconnectByServer DisconnectKind = abi.DisconnectByServer
)

// String returns "client", "lost" or "server".
func (k DisconnectKind) String() string { return abi.NameOf(abi.DisconnectKinds, uint16(k)) }

// FilterResult is one topic filter of a SUBSCRIBE or UNSUBSCRIBE event.
type FilterResult struct {
	Filter string
	QoS    byte
	// Code is the reason code the broker answered with (granted QoS, or an
	// error code >= 0x80).
	Code byte
}

// Event is a lifecycle notification.
type Event struct {
	Kind            EventKind
	Time            time.Time // when it happened (for a disconnect: when the connection ended)
	ClientID        string
	Username        string
	Listener        string
	RemoteAddr      string
	ProtocolVersion byte
	// ReasonCode is the MQTT 5 reason code of a refused CONNECT or of a
	// disconnect.
	ReasonCode   byte
	ReasonString string
	Disconnect   DisconnectKind // EventDisconnect only
	Filters      []FilterResult // EventSubscribe and EventUnsubscribe only
	// Conn is the connection the event is about, for ConnectionAttributes
	// (readable after the connection ended; see svc_connattrs.go); zero
	// for an event without one.
	Conn Conn
}

// EventListener hears lifecycle events. OnEvent runs on the client's
// goroutine and must not block; it must not keep e after returning.
type EventListener interface {
	OnEvent(e *Event)
}

// Extensions is what the broker consults. A nil Authenticator means no
// security extension: every CONNECT is refused (default deny).
type Extensions struct {
	Authenticator Authenticator
	Events        EventListener // optional
	// Interceptors change or stop packets (optional; see intercept.go).
	Interceptors Interceptors
}
