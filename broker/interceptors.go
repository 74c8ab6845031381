package broker

import "context"

// This file declares the interceptors the broker consults (ABI 1.2,
// abi/ABI.md section 8, "Interception"): extensions that change or stop
// packets on their way through the broker. The broker never imports the
// extension host; cmd/propolis wires it into Extensions.Interceptors.

// InterceptPoint names one place where the broker asks the interceptors.
type InterceptPoint uint8

// The interception points.
const (
	// InterceptConnect: a CONNECT, before it is validated and authenticated.
	InterceptConnect InterceptPoint = iota
	// InterceptConnack: a CONNACK about to be written.
	InterceptConnack
	// InterceptPublishInbound: a client's PUBLISH, after its authorization.
	InterceptPublishInbound
	// InterceptPublishOutbound: one delivery of a PUBLISH to one subscriber.
	InterceptPublishOutbound
	// InterceptSubscribe: one topic filter of a SUBSCRIBE, before its
	// authorization.
	InterceptSubscribe
	// InterceptDisconnect: a DISCONNECT the client sent or the broker is
	// about to send.
	InterceptDisconnect
)

// InterceptPoints is a set of interception points, one bit per
// InterceptPoint.
type InterceptPoints uint8

// Has reports whether p is in the set.
func (s InterceptPoints) Has(p InterceptPoint) bool { return s&(1<<p) != 0 }

// Peer names the client a packet comes from or goes to.
type Peer struct {
	ID       string
	Username string
	// ProtocolVersion is 3 (3.1), 4 (3.1.1) or 5.
	ProtocolVersion byte
	// Conn is the client's connection (connection attributes); zero when
	// the client is not connected (a delivery resent at reconnection has
	// one).
	Conn Conn
}

// Prevented says that an interceptor stopped a packet: a PUBLISH (inbound:
// for every subscriber; outbound: for that one), or one filter of a
// SUBSCRIBE.
type Prevented struct {
	// Stop is true when the packet was stopped.
	Stop bool
	// ReasonCode is the MQTT 5 reason code (>= 0x80) the client gets in
	// its PUBACK, PUBREC or SUBACK.
	ReasonCode   byte
	ReasonString string
	// Extension is the id of the extension that stopped it, for logs.
	Extension string
}

// Connack is a CONNACK about to be written to a client.
type Connack struct {
	ReasonCode     byte
	SessionPresent bool
	ReasonString   string
	UserProperties []UserProperty
}

// DisconnectPacket is a DISCONNECT a client sent (Outbound false) or the broker
// is about to send (Outbound true).
type DisconnectPacket struct {
	Outbound       bool
	ReasonCode     byte
	ReasonString   string
	UserProperties []UserProperty
}

// SubscriptionOptions are the MQTT 5 options of one topic filter.
type SubscriptionOptions struct {
	NoLocal           bool
	RetainAsPublished bool
	// RetainHandling is 0, 1 or 2 (MQTT 5 section 3.8.3.1).
	RetainHandling byte
}

// Subscription is one topic filter of a SUBSCRIBE being intercepted.
type Subscription struct {
	Filter string
	QoS    byte
	// Shared is true for a $share/<group>/<filter> subscription; Filter
	// then holds the whole string.
	Shared     bool
	Options    SubscriptionOptions
	Identifier uint32
	// UserProperties are the SUBSCRIBE's (read only).
	UserProperties []UserProperty
}

// Interceptors change or stop packets. Each method asks, in priority order,
// every running extension that intercepts at that point, each seeing what
// the previous one produced, and changes its argument in place. An
// interceptor that fails (traps, overruns, answers invalidly) leaves the
// packet as it was when it was called; the methods never fail. They run on
// the goroutine of the client concerned, must be safe for concurrent use,
// must not keep their arguments after returning, and cost one atomic load
// when no extension intercepts at that point.
type Interceptors interface {
	// Active is the set of points at which an extension intercepts now.
	// The broker may skip building an argument for a point not in it.
	Active() InterceptPoints
	// InterceptConnect changes a CONNECT before it is validated and
	// authenticated. c.Conn is the connection; ctx carries the broker's
	// CONNECT deadline.
	InterceptConnect(ctx context.Context, c *Connect)
	// InterceptConnack changes the CONNACK about to be written to cl.
	InterceptConnack(cl Peer, a *Connack)
	// InterceptPublish changes, or stops, a client's PUBLISH after its
	// authorization.
	InterceptPublish(cl Peer, m *Message) Prevented
	// InterceptDelivery changes, or stops, one delivery of a PUBLISH to
	// one subscriber; publisher is the publishing client's id ("" for the
	// broker's own). It runs at every delivery WantsDelivery answers true
	// for, resends included.
	InterceptDelivery(cl Peer, publisher string, m *Message) Prevented
	// WantsDelivery reports whether InterceptDelivery could change or stop
	// a delivery of topic to the client clientID: it must answer true
	// whenever it could. For false the broker does not build the delivery
	// or call InterceptDelivery; the PUBLISH is written unchanged. Called
	// on every delivery while InterceptPublishOutbound is active: it must
	// be cheap and must not allocate.
	WantsDelivery(clientID, topic string) bool
	// InterceptSubscribe changes, or removes, one topic filter of a
	// SUBSCRIBE before its authorization.
	InterceptSubscribe(cl Peer, s *Subscription) Prevented
	// InterceptDisconnect changes a DISCONNECT.
	InterceptDisconnect(cl Peer, d *DisconnectPacket)
}
