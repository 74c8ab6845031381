package propolis

// Interceptors (ABI 1.2, ABI.md sections 3 and 8): handlers that change,
// or stop, packets on their way through the broker. Each gets a packet
// type below, a view of the record the broker passed: its strings, byte
// slices and lists point into memory the SDK reuses for the next call, so
// they are valid only while the handler runs (copy what you keep, with
// strings.Clone or bytes.Clone).
//
// A packet's fields are read-only: assigning to them changes nothing in
// the broker. Change the packet with its Set methods, which pass the new
// value to the broker at once (packet_set, packet_set_int) and then update
// the field, so the handler reads back what it set. The broker checks
// every change (a topic must be a valid topic name, a QoS may only go
// down, and so on: ABI.md's field table); a refused change returns an
// error, and the broker then treats the whole call as failed: the packet
// stays as it was before this extension's interceptor, and the failure
// counts towards the crash-loop stop. Several Sets of one field: the last
// wins. A payload is passed from the handler's own slice, so an unchanged
// payload is never copied, and a changed one only once, by the broker.
//
// A packet built by a unit test (a literal PublishPacket, not one the
// broker passed) takes the Set methods' changes into its fields without a
// broker, and Prevent records itself (Prevented), so an interceptor's
// handler is tested with plain go test; the broker's checks do not run
// then.
//
// An interceptor that panics, overruns its deadline or fails a change
// leaves the packet unchanged and the client connected: interceptors
// never fail closed. Several extensions' interceptors run in priority
// order, each seeing what the previous ones produced.

// CodeImplementationSpecific is 0x83, implementation specific error: what
// the broker sends when Prevent is given code 0.
const CodeImplementationSpecific byte = 0x83

// FilterTarget says which interceptors a topic filter narrows
// (AddInterceptFilter).
type FilterTarget uint32

// Filter targets; combine them with |.
const (
	// FilterPublishInbound narrows Extension.InterceptPublishInbound.
	FilterPublishInbound FilterTarget = callbackInterceptPublishInbound
	// FilterPublishOutbound narrows Extension.InterceptPublishOutbound.
	FilterPublishOutbound FilterTarget = callbackInterceptPublishOutbound
)

// AddInterceptFilter narrows the publish interceptors of targets to
// topics matching filter (an MQTT topic filter, "+" and "#" wildcards):
// with at least one filter, only matching PUBLISH packets reach the
// interceptor, and the others cost no Wasm call. It is for filters that
// depend on the configuration; fixed ones go in
// Extension.InterceptInboundFilters and InterceptOutboundFilters. Call it
// from Start only (elsewhere it returns ErrNotAvailable). Errors:
// ErrInvalidArgument (an invalid filter, or targets not only publish
// interceptors), ErrTooLarge (more than 1,024 filters per interceptor).
func AddInterceptFilter(targets FilterTarget, filter string) error {
	return statusErr(host.addInterceptFilter(uint32(targets), filter))
}

// AddInterceptClient narrows Extension.InterceptPublishOutbound to
// deliveries to subscribers whose client id matches pattern: an exact
// client id, or a prefix followed by a final "*" ("sensor-*"; "*" alone
// matches every client). With at least one pattern, deliveries to other
// clients cost no Wasm call; with topic filters too (AddInterceptFilter,
// Extension.InterceptOutboundFilters), a delivery must match both. It is
// for patterns that depend on the configuration; fixed ones go in
// Extension.InterceptOutboundClients. Call it from Start only (elsewhere
// it returns ErrNotAvailable). Errors: ErrInvalidArgument (an empty
// pattern, a "*" before its end, not UTF-8, longer than 65,535 bytes),
// ErrTooLarge (more than 1,024 patterns).
func AddInterceptClient(pattern string) error {
	return statusErr(host.addInterceptClient(pattern))
}

// prevention is the Prevent state of a packet.
type prevention struct {
	set    bool
	code   byte
	reason string
}

// Prevent stops the packet: ABI.md's DENY with an MQTT 5 reason code
// (>= 0x80; 0 means 0x83, implementation specific error; another code
// below 0x80 is sent as 0x80) and an optional reason string (truncated to
// 1,024 bytes). Changes set before are dropped with the packet.
func (p *prevention) Prevent(code byte, reason string) {
	p.set, p.code, p.reason = true, code, reason
}

// Prevented reports whether Prevent was called.
func (p *prevention) Prevented() bool { return p.set }

// answer returns the decision for the host (and sends the reason).
func (p *prevention) answer(h hostAPI) uint32 {
	if !p.set {
		return uint32(DecisionNext)
	}
	sendReason(h, p.reason)
	code := p.code
	if code != 0 && code < 0x80 {
		code = CodeUnspecified
	}
	return uint32(DecisionDeny) | uint32(code)<<8
}

// ConnectPacket is a CONNECT as passed to Extension.InterceptConnect,
// before the broker validates and authenticates it: the client id is the
// one the client sent (possibly empty; the broker assigns one later), and
// authentication sees what the interceptors produced. It embeds the same
// view as Authenticate gets.
type ConnectPacket struct {
	Connect
	h hostAPI
}

// SetClientID replaces the client identifier (UTF-8; empty lets the broker
// assign one, as if the client had sent none).
func (c *ConnectPacket) SetClientID(id string) error {
	if err := setText(c.h, fieldClientId, id); err != nil {
		return err
	}
	c.ClientID = id
	return nil
}

// SetUsername replaces the user name (UTF-8).
func (c *ConnectPacket) SetUsername(name string) error {
	if err := setText(c.h, fieldUsername, name); err != nil {
		return err
	}
	c.Username, c.HasUsername = name, true
	return nil
}

// SetPassword replaces the password (any bytes).
func (c *ConnectPacket) SetPassword(pw []byte) error {
	if err := setText(c.h, fieldPassword, view(pw)); err != nil {
		return err
	}
	c.Password, c.HasPassword = pw, true
	return nil
}

// SetSessionExpiry replaces the session expiry interval, in seconds (the
// broker still caps it at its maximum).
func (c *ConnectPacket) SetSessionExpiry(seconds uint32) error {
	if err := setInt(c.h, fieldSessionExpiry, int64(seconds)); err != nil {
		return err
	}
	c.SessionExpiry = seconds
	return nil
}

// SetKeepalive replaces the keepalive, in seconds (0 disables it).
func (c *ConnectPacket) SetKeepalive(seconds uint16) error {
	if err := setInt(c.h, fieldKeepalive, int64(seconds)); err != nil {
		return err
	}
	c.Keepalive = seconds
	return nil
}

// SetReceiveMaximum replaces the Receive Maximum (1 to 65,535): how many
// QoS 1/2 messages the broker may send the client unacknowledged.
func (c *ConnectPacket) SetReceiveMaximum(n uint16) error {
	if err := setInt(c.h, fieldReceiveMaximum, int64(n)); err != nil {
		return err
	}
	c.ReceiveMaximum = n
	return nil
}

// SetUserProperties replaces the CONNECT's user properties (nil removes
// them all).
func (c *ConnectPacket) SetUserProperties(ps []UserProperty) error {
	return setProperties(c.h, &c.UserProperties, ps)
}

// AddUserProperty appends a user property to the CONNECT's.
func (c *ConnectPacket) AddUserProperty(key, value string) error {
	return addProperty(c.h, &c.UserProperties, key, value)
}

// SetWillTopic replaces the will's topic (a valid topic name). On a
// CONNECT without a will it adds one (payload empty, QoS 0, not retained,
// no delay, unless set too); an empty topic removes the will.
func (c *ConnectPacket) SetWillTopic(topic string) error {
	if err := setText(c.h, fieldWillTopic, topic); err != nil {
		return err
	}
	switch {
	case topic == "":
		c.Will = nil
	case c.Will == nil:
		connWill = Will{Topic: topic}
		c.Will = &connWill
	default:
		c.Will.Topic = topic
	}
	return nil
}

// RemoveWill removes the will (SetWillTopic("")).
func (c *ConnectPacket) RemoveWill() error { return c.SetWillTopic("") }

// SetWillPayload replaces the will's payload. Without a will (none sent,
// none added with SetWillTopic) the broker refuses it.
func (c *ConnectPacket) SetWillPayload(payload []byte) error {
	if err := setText(c.h, fieldWillPayload, view(payload)); err != nil {
		return err
	}
	if c.Will != nil {
		c.Will.Payload = payload
	}
	return nil
}

// SetWillQoS replaces the will's QoS (0, 1 or 2).
func (c *ConnectPacket) SetWillQoS(qos uint8) error {
	if err := setInt(c.h, fieldWillQos, int64(qos)); err != nil {
		return err
	}
	if c.Will != nil {
		c.Will.QoS = qos
	}
	return nil
}

// SetWillRetain replaces the will's retain flag.
func (c *ConnectPacket) SetWillRetain(retain bool) error {
	if err := setInt(c.h, fieldWillRetain, b2i(retain)); err != nil {
		return err
	}
	if c.Will != nil {
		c.Will.Retain = retain
	}
	return nil
}

// SetWillDelay replaces the will's delay interval, in seconds.
func (c *ConnectPacket) SetWillDelay(seconds uint32) error {
	if err := setInt(c.h, fieldWillDelay, int64(seconds)); err != nil {
		return err
	}
	if c.Will != nil {
		c.Will.Delay = seconds
	}
	return nil
}

// ConnackPacket is a CONNACK about to be written, as passed to
// Extension.InterceptConnack. Its reason code and session present flag are
// the broker's and read-only; the interceptor may add user properties and
// a reason string. MQTT 3.1 and 3.1.1 CONNACKs have no properties: the
// interceptor is called, but what it sets is not sent.
type ConnackPacket struct {
	// ReasonCode is the CONNACK's reason code (MQTT 5 numbering; 0
	// success).
	ReasonCode byte
	// SessionPresent is the session present flag.
	SessionPresent bool
	// ProtocolVersion is the client's MQTT protocol level: 3, 4 or 5.
	ProtocolVersion uint8
	// ClientID and Username are the client's.
	ClientID string
	Username string
	// ReasonString is the CONNACK's reason string, empty without one.
	ReasonString string
	// UserProperties are the CONNACK's user properties.
	UserProperties []UserProperty
	h              hostAPI
}

// SetReasonString replaces the reason string (at most 1,024 bytes).
func (a *ConnackPacket) SetReasonString(s string) error {
	if err := setText(a.h, fieldReasonString, s); err != nil {
		return err
	}
	a.ReasonString = s
	return nil
}

// SetUserProperties replaces the CONNACK's user properties.
func (a *ConnackPacket) SetUserProperties(ps []UserProperty) error {
	return setProperties(a.h, &a.UserProperties, ps)
}

// AddUserProperty appends a user property to the CONNACK's.
func (a *ConnackPacket) AddUserProperty(key, value string) error {
	return addProperty(a.h, &a.UserProperties, key, value)
}

// PublishPacket is a PUBLISH as passed to Extension.InterceptPublishInbound
// (a client's PUBLISH, after its authorization: Outbound false) and
// Extension.InterceptPublishOutbound (one delivery to one subscriber:
// Outbound true).
//
// Inbound, every Set method may be used; if the topic, QoS, retain flag or
// payload changed, the broker authorizes the final PUBLISH again. Outbound,
// only SetTopic, SetPayload and the user properties may be (the change is
// for that subscriber only); the others are refused. Prevent stops the
// PUBLISH (inbound: for every subscriber, and an MQTT 5 publisher gets the
// reason code in its PUBACK or PUBREC; outbound: that one delivery).
type PublishPacket struct {
	// Outbound is false for a PUBLISH arriving from a client, true for one
	// delivery to a subscriber.
	Outbound bool
	// ProtocolVersion is the MQTT protocol level (3, 4 or 5) of the
	// client of ClientID.
	ProtocolVersion uint8
	// ClientID and Username are the publisher's (inbound) or the
	// subscriber's (outbound).
	ClientID string
	Username string
	// Publisher is the publishing client's id (outbound; empty for the
	// broker's own messages); inbound it equals ClientID.
	Publisher string
	// QoS is 0, 1 or 2.
	QoS uint8
	// Retain is the retain flag.
	Retain bool
	// PayloadFormat is the payload format indicator: 0 bytes, 1 UTF-8.
	PayloadFormat uint8
	// MessageExpiry is the message expiry interval in seconds, 0 for none.
	MessageExpiry uint32
	// Topic is the topic name.
	Topic string
	// Payload is the payload.
	Payload []byte
	// UserProperties are the PUBLISH's user properties, in order.
	UserProperties []UserProperty
	// ContentType, ResponseTopic and CorrelationData are the MQTT 5
	// properties, empty when absent.
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	prevention
	h hostAPI
}

// SetTopic replaces the topic (a valid topic name: not empty, no
// wildcards).
func (p *PublishPacket) SetTopic(topic string) error {
	if err := setText(p.h, fieldTopic, topic); err != nil {
		return err
	}
	p.Topic = topic
	return nil
}

// SetPayload replaces the payload. The SDK passes payload as it is (no
// copy); the broker copies it once.
func (p *PublishPacket) SetPayload(payload []byte) error {
	if err := setText(p.h, fieldPayload, view(payload)); err != nil {
		return err
	}
	p.Payload = payload
	return nil
}

// SetQoS lowers the QoS (inbound only; a QoS above the packet's is
// refused). The publisher's acknowledgements stay those of the QoS it
// sent; the message is delivered, retained and stored at the new QoS.
func (p *PublishPacket) SetQoS(qos uint8) error {
	if err := setInt(p.h, fieldQos, int64(qos)); err != nil {
		return err
	}
	p.QoS = qos
	return nil
}

// SetRetain replaces the retain flag (inbound only).
func (p *PublishPacket) SetRetain(retain bool) error {
	if err := setInt(p.h, fieldRetain, b2i(retain)); err != nil {
		return err
	}
	p.Retain = retain
	return nil
}

// SetMessageExpiry replaces the message expiry interval in seconds, 0 for
// none (inbound only).
func (p *PublishPacket) SetMessageExpiry(seconds uint32) error {
	if err := setInt(p.h, fieldMessageExpiry, int64(seconds)); err != nil {
		return err
	}
	p.MessageExpiry = seconds
	return nil
}

// SetContentType replaces the content type, "" to remove it (inbound
// only).
func (p *PublishPacket) SetContentType(ct string) error {
	if err := setText(p.h, fieldContentType, ct); err != nil {
		return err
	}
	p.ContentType = ct
	return nil
}

// SetPayloadFormat replaces the payload format indicator: 0 bytes, 1
// UTF-8 (inbound only).
func (p *PublishPacket) SetPayloadFormat(f uint8) error {
	if err := setInt(p.h, fieldPayloadFormat, int64(f)); err != nil {
		return err
	}
	p.PayloadFormat = f
	return nil
}

// SetResponseTopic replaces the response topic (a valid topic name), ""
// to remove it (inbound only).
func (p *PublishPacket) SetResponseTopic(topic string) error {
	if err := setText(p.h, fieldResponseTopic, topic); err != nil {
		return err
	}
	p.ResponseTopic = topic
	return nil
}

// SetCorrelationData replaces the correlation data, nil to remove it
// (inbound only).
func (p *PublishPacket) SetCorrelationData(d []byte) error {
	if err := setText(p.h, fieldCorrelationData, view(d)); err != nil {
		return err
	}
	p.CorrelationData = d
	return nil
}

// SetUserProperties replaces the PUBLISH's user properties (nil removes
// them all).
func (p *PublishPacket) SetUserProperties(ps []UserProperty) error {
	return setProperties(p.h, &p.UserProperties, ps)
}

// AddUserProperty appends a user property to the PUBLISH's.
func (p *PublishPacket) AddUserProperty(key, value string) error {
	return addProperty(p.h, &p.UserProperties, key, value)
}

// SubscriptionPacket is one topic filter of a SUBSCRIBE, as passed to
// Extension.InterceptSubscribe before its authorization (a SUBSCRIBE with
// several filters calls once per filter). The interceptor may change the
// QoS and the options, or Prevent the filter: it is not subscribed, and
// the SUBACK carries the reason code for it (MQTT 3.1.1: 0x80); the other
// filters are not affected.
type SubscriptionPacket struct {
	// Filter is the topic filter, including any "$share/<group>/" prefix
	// (read-only).
	Filter string
	// QoS is the maximum QoS requested.
	QoS uint8
	// NoLocal, RetainAsPublished and RetainHandling are the MQTT 5
	// subscription options.
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    uint8
	// Shared reports a shared subscription.
	Shared bool
	// ProtocolVersion is the client's MQTT protocol level.
	ProtocolVersion uint8
	// Identifier is the subscription identifier, 0 for none.
	Identifier uint32
	// ClientID and Username are the subscribing client's.
	ClientID string
	Username string
	// UserProperties are the SUBSCRIBE's (read-only).
	UserProperties []UserProperty
	prevention
	h hostAPI
}

// SetQoS replaces the maximum QoS requested (0, 1 or 2).
func (s *SubscriptionPacket) SetQoS(qos uint8) error {
	if err := setInt(s.h, fieldQos, int64(qos)); err != nil {
		return err
	}
	s.QoS = qos
	return nil
}

// SetNoLocal replaces the No Local option.
func (s *SubscriptionPacket) SetNoLocal(on bool) error {
	o := *s
	o.NoLocal = on
	return s.setOptions(&o)
}

// SetRetainAsPublished replaces the Retain As Published option.
func (s *SubscriptionPacket) SetRetainAsPublished(on bool) error {
	o := *s
	o.RetainAsPublished = on
	return s.setOptions(&o)
}

// SetRetainHandling replaces the Retain Handling option (0, 1 or 2).
func (s *SubscriptionPacket) SetRetainHandling(rh uint8) error {
	o := *s
	o.RetainHandling = rh
	return s.setOptions(&o)
}

// setOptions sends o's options byte and, on success, takes its options.
func (s *SubscriptionPacket) setOptions(o *SubscriptionPacket) error {
	v := Subscription{NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling}.options()
	if err := setInt(s.h, fieldSubscriptionOptions, int64(v)); err != nil {
		return err
	}
	s.NoLocal, s.RetainAsPublished, s.RetainHandling = o.NoLocal, o.RetainAsPublished, o.RetainHandling
	return nil
}

// DisconnectPacket is a DISCONNECT as passed to
// Extension.InterceptDisconnect: one the client sent (Outbound false),
// before the broker acts on it, or one the broker is about to send
// (Outbound true). The interceptor may add user properties and a reason
// string. MQTT 3.1.1 DISCONNECTs have no properties, and the broker sends
// none to 3.1.1 clients.
type DisconnectPacket struct {
	// Outbound is true for a DISCONNECT the broker sends.
	Outbound bool
	// ReasonCode is the DISCONNECT's reason code (read-only).
	ReasonCode byte
	// ProtocolVersion is the client's MQTT protocol level.
	ProtocolVersion uint8
	// ClientID and Username are the client's.
	ClientID string
	Username string
	// ReasonString is the reason string, empty without one.
	ReasonString string
	// UserProperties are the DISCONNECT's user properties.
	UserProperties []UserProperty
	h              hostAPI
}

// SetReasonString replaces the reason string (at most 1,024 bytes).
func (d *DisconnectPacket) SetReasonString(s string) error {
	if err := setText(d.h, fieldReasonString, s); err != nil {
		return err
	}
	d.ReasonString = s
	return nil
}

// SetUserProperties replaces the DISCONNECT's user properties.
func (d *DisconnectPacket) SetUserProperties(ps []UserProperty) error {
	return setProperties(d.h, &d.UserProperties, ps)
}

// AddUserProperty appends a user property to the DISCONNECT's.
func (d *DisconnectPacket) AddUserProperty(key, value string) error {
	return addProperty(d.h, &d.UserProperties, key, value)
}

// setText calls packet_set. A packet the SDK did not decode (h nil: one a
// unit test built) takes the change into its fields only.
func setText(h hostAPI, f uint32, v string) error {
	if h == nil {
		return nil
	}
	return statusErr(h.packetSet(f, v))
}

// setInt calls packet_set_int (see setText for h nil).
func setInt(h hostAPI, f uint32, v int64) error {
	if h == nil {
		return nil
	}
	return statusErr(h.packetSetInt(f, v))
}

// b2i is 1 for true.
func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// propBuf holds the encoded argument of the last user_properties change.
var propBuf []byte

// setProperties sends ps as the whole user property list and, on success,
// makes it *dst (capped, so that a later AddUserProperty does not write
// into the caller's array).
func setProperties(h hostAPI, dst *[]UserProperty, ps []UserProperty) error {
	propBuf = appendU32(propBuf[:0], uint32(len(ps)))
	for _, p := range ps {
		propBuf = appendStr(propBuf, p.Key)
		propBuf = appendStr(propBuf, p.Value)
	}
	if err := setText(h, fieldUserProperties, view(propBuf)); err != nil {
		return err
	}
	*dst = ps[:len(ps):len(ps)]
	return nil
}

// addScratch builds the lists of AddUserProperty, so that stamping a
// property on every message allocates nothing once it has grown.
var addScratch []UserProperty

// addProperty sends *dst plus one property as the whole list.
func addProperty(h hostAPI, dst *[]UserProperty, key, value string) error {
	// *dst may be addScratch itself (a second AddUserProperty): copying it
	// onto itself is a no-op.
	addScratch = append(append(addScratch[:0], *dst...), UserProperty{Key: key, Value: value})
	return setProperties(h, dst, addScratch)
}
