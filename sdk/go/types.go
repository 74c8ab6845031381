package propolis

import (
	"bytes"
	"strings"
	"time"
)

// StartInfo describes the extension instance being started. It is passed
// to Extension.Start.
type StartInfo struct {
	// ID is the extension id from the manifest.
	ID string
	// Version is the extension version from the manifest.
	Version string
	// BrokerVersion is the version of the broker running the extension.
	BrokerVersion string
	// PreviousVersion is the version this one replaces on a hot reload,
	// empty otherwise.
	PreviousVersion string
	// Config is the manifest's config section as JSON ("{}" when absent).
	Config []byte
	// Instance is this instance's index within this load of the extension:
	// 0 for the first instance started, then 1, 2, ... for every later one
	// (the rest of the pool, and replacements of discarded instances). A
	// hot reload starts again at 0. Start runs once per instance, so
	// something to do once per load, such as a start-up warning, belongs
	// under Instance == 0. Brokers running ABI 1.0 always send 0.
	Instance uint32
}

// UserProperty is an MQTT 5 user property: a key/value pair.
type UserProperty struct {
	// Key is the property name.
	Key string
	// Value is the property value.
	Value string
}

// Will is the will message of a CONNECT.
type Will struct {
	// Topic is the will topic.
	Topic string
	// Payload is the will payload.
	Payload []byte
	// QoS is the will QoS (0, 1 or 2).
	QoS uint8
	// Retain reports whether the will is to be retained.
	Retain bool
	// Delay is the will delay interval in seconds (MQTT 5; brokers
	// running ABI 1.0 or 1.1 send 0).
	Delay uint32
}

// Connect is a client's CONNECT, as passed to Extension.Authenticate.
//
// Like Publish, the *Connect and every string, byte slice and list in it
// are views of memory the SDK reuses for the next CONNECT: they are valid
// only while the handler runs (and while the SDK applies the AuthResult it
// returns, so a permission or property may use them as they are). Use
// Clone (or strings.Clone / bytes.Clone) to keep anything.
type Connect struct {
	// ProtocolVersion is the MQTT protocol level: 3 (MQTT 3.1), 4 (3.1.1)
	// or 5.
	ProtocolVersion uint8
	// CleanStart reports the clean start (3.1.1: clean session) flag.
	CleanStart bool
	// HasUsername reports whether the client sent a user name (it may be
	// empty).
	HasUsername bool
	// HasPassword reports whether the client sent a password (it may be
	// empty).
	HasPassword bool
	// TLS reports whether the connection uses TLS.
	TLS bool
	// Keepalive is the keepalive the client asked for, in seconds.
	Keepalive uint16
	// SessionExpiry is the session expiry interval the client asked for,
	// in seconds (MQTT 5).
	SessionExpiry uint32
	// ReceiveMaximum is the Receive Maximum the client sent (MQTT 5; 0
	// when it sent none, which means 65,535, and from brokers running ABI
	// 1.0 or 1.1).
	ReceiveMaximum uint16
	// ClientID is the client identifier, as assigned by the broker when the
	// client sent none.
	ClientID string
	// Username is the user name, empty without one.
	Username string
	// Password is the password (any bytes), nil without one.
	Password []byte
	// RemoteAddr is the client's address, "host:port".
	RemoteAddr string
	// Listener is the name of the listener in the broker configuration.
	Listener string
	// TLSSubject is the verified client certificate's subject (RFC 2253),
	// empty without a client certificate.
	TLSSubject string
	// TLSSANs holds the client certificate's DNS names, IP addresses, URIs
	// and e-mail addresses.
	TLSSANs []string
	// Will is the will message, nil when the CONNECT has none.
	Will *Will
	// UserProperties holds the user properties of the CONNECT, in order.
	UserProperties []UserProperty
}

// Clone returns a deep copy of c that stays valid after the handler
// returns.
func (c *Connect) Clone() *Connect {
	d := *c
	d.ClientID, d.Username = strings.Clone(c.ClientID), strings.Clone(c.Username)
	d.Password = bytes.Clone(c.Password)
	d.RemoteAddr, d.Listener, d.TLSSubject = strings.Clone(c.RemoteAddr), strings.Clone(c.Listener), strings.Clone(c.TLSSubject)
	if c.TLSSANs != nil {
		d.TLSSANs = make([]string, len(c.TLSSANs))
		for i, s := range c.TLSSANs {
			d.TLSSANs[i] = strings.Clone(s)
		}
	}
	if c.Will != nil {
		d.Will = &Will{Topic: strings.Clone(c.Will.Topic), Payload: bytes.Clone(c.Will.Payload), QoS: c.Will.QoS, Retain: c.Will.Retain, Delay: c.Will.Delay}
	}
	if c.UserProperties != nil {
		d.UserProperties = make([]UserProperty, len(c.UserProperties))
		for i, p := range c.UserProperties {
			d.UserProperties[i] = UserProperty{Key: strings.Clone(p.Key), Value: strings.Clone(p.Value)}
		}
	}
	return &d
}

// Publish is a PUBLISH (or the will of a CONNECT being authenticated), as
// passed to Extension.AuthorizePublish.
//
// To keep the per-message path cheap, the *Publish and every field of it
// are only valid while the handler runs: the strings and the payload are
// views of memory the SDK reuses for the next message. Use Clone (or
// strings.Clone / bytes.Clone) to keep anything.
type Publish struct {
	// QoS is the QoS of the message (0, 1 or 2).
	QoS uint8
	// Retain reports the retain flag.
	Retain bool
	// Will reports whether this is the will of a CONNECT being
	// authenticated rather than a PUBLISH packet.
	Will bool
	// ClientID is the publishing client's identifier.
	ClientID string
	// Username is the publishing client's user name.
	Username string
	// Topic is the topic name.
	Topic string
	// Payload is the message payload.
	Payload []byte
}

// A note on Publish's lifetime: ClientID, Username, Topic and Payload are
// views of the record the host wrote into memory the SDK reuses for the
// next call. They are valid only until AuthorizePublish returns. Compare
// them, match them, log them; to keep any of them, copy it
// (strings.Clone, bytes.Clone, or Publish.Clone). This makes
// AuthorizePublish, the one handler that can run for every message,
// allocate and copy nothing.

// Clone returns a copy of p that stays valid after the handler returns.
func (p *Publish) Clone() *Publish {
	c := *p
	c.ClientID = strings.Clone(p.ClientID)
	c.Username = strings.Clone(p.Username)
	c.Topic = strings.Clone(p.Topic)
	c.Payload = bytes.Clone(p.Payload)
	return &c
}

// Subscribe is one topic filter of a SUBSCRIBE, as passed to
// Extension.AuthorizeSubscribe (a SUBSCRIBE with several filters asks once
// per filter). The *Subscribe is reused by the SDK after the handler
// returns; its strings are copies and may be kept.
type Subscribe struct {
	// QoS is the maximum QoS requested.
	QoS uint8
	// Shared reports a shared subscription ("$share/<group>/<filter>").
	Shared bool
	// ClientID is the subscribing client's identifier.
	ClientID string
	// Username is the subscribing client's user name.
	Username string
	// Filter is the topic filter, including any "$share/<group>/" prefix.
	Filter string
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventConnectionStart reports a new network connection.
	EventConnectionStart EventKind = 1
	// EventAuthSucceeded reports an accepted CONNECT.
	EventAuthSucceeded EventKind = 2
	// EventAuthFailed reports a refused CONNECT; Event.ReasonCode holds the
	// reason code.
	EventAuthFailed EventKind = 3
	// EventDisconnect reports the end of a connection; see
	// Event.DisconnectKind and Event.ReasonCode.
	EventDisconnect EventKind = 4
	// EventSubscribe reports a SUBSCRIBE; see Event.Filters.
	EventSubscribe EventKind = 5
	// EventUnsubscribe reports an UNSUBSCRIBE; see Event.Filters.
	EventUnsubscribe EventKind = 6
)

// String returns the kind's ABI.md name, e.g. "connection_start".
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && eventKindNames[k] != "" {
		return eventKindNames[k]
	}
	return "unknown"
}

// DisconnectKind says how a connection ended (EventDisconnect).
type DisconnectKind uint8

// Disconnect kinds.
const (
	// DisconnectNone is the DisconnectKind of every event but
	// EventDisconnect.
	DisconnectNone DisconnectKind = 0
	// DisconnectByClient means the client sent DISCONNECT.
	DisconnectByClient DisconnectKind = 1
	// DisconnectConnectionLost means the network connection was lost (or
	// the keepalive expired).
	DisconnectConnectionLost DisconnectKind = 2
	// DisconnectByServer means the broker closed the connection.
	DisconnectByServer DisconnectKind = 3
)

// String returns the kind's ABI.md name, e.g. "lost" ("none" for 0).
func (k DisconnectKind) String() string {
	if k == DisconnectNone {
		return "none"
	}
	if int(k) < len(disconnectKindNames) && disconnectKindNames[k] != "" {
		return disconnectKindNames[k]
	}
	return "unknown"
}

// FilterResult is one topic filter of a SUBSCRIBE or UNSUBSCRIBE event with
// the broker's answer.
type FilterResult struct {
	// Filter is the topic filter.
	Filter string
	// QoS is the requested QoS.
	QoS uint8
	// ReasonCode is the reason code the broker answered (granted QoS, or
	// >= 0x80 for a refusal).
	ReasonCode byte
}

// Event is a lifecycle event, as passed to Extension.OnEvent. Events are
// delivered after the fact and never block a client. All fields are copies.
type Event struct {
	// Kind says what happened.
	Kind EventKind
	// DisconnectKind says how the connection ended (EventDisconnect only).
	DisconnectKind DisconnectKind
	// ReasonCode is the reason code of a refused CONNECT (EventAuthFailed)
	// or of a disconnect (EventDisconnect).
	ReasonCode byte
	// ProtocolVersion is the client's MQTT protocol level.
	ProtocolVersion uint8
	// Time is when it happened (for a disconnect: when the connection
	// ended). It is the zero Time if the host did not say.
	Time time.Time
	// ClientID is the client identifier.
	ClientID string
	// Username is the client's user name.
	Username string
	// Listener is the name of the listener the client connected to.
	Listener string
	// RemoteAddr is the client's address, "host:port".
	RemoteAddr string
	// ReasonString is the reason string, if any.
	ReasonString string
	// Filters holds the topic filters of EventSubscribe and
	// EventUnsubscribe.
	Filters []FilterResult
}
