package host

import (
	"context"
	"errors"
	"strings"
	"unsafe"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// The interceptors (ABI 1.2, ABI.md section 8, "Interception"): Host
// implements broker.Interceptors. Each method runs the chain of one
// interceptor callback: every running extension that exports and declares
// it, in priority order (chain.callers), restricted by the extension's
// intercept filters for the publish interceptors and its client patterns
// for the outbound one. For each, it encodes the
// record from the packet as it is now (so each sees what the previous
// produced), calls through invokeFor with the client's connection, and on
// a valid answer applies the changes the guest staged (packetset.go). A
// DENY stops the chain. A failed call (trap, deadline, invalid answer or
// change, no instance, record too large, extension stopped) leaves the
// packet as it was before that extension and the chain goes on: an
// interceptor never fails closed and never disconnects the client. The
// failure is logged here, with the client, and counted by release (the
// crash-loop stop of ABI.md section 7).

var _ broker.Interceptors = (*Host)(nil)

// interceptPoints maps each interceptor callback to the broker's point.
var interceptPoints = [...]struct {
	cb    abi.Callback
	point broker.InterceptPoint
}{
	{abi.CallbackInterceptConnect, broker.InterceptConnect},
	{abi.CallbackInterceptConnack, broker.InterceptConnack},
	{abi.CallbackInterceptPublishInbound, broker.InterceptPublishInbound},
	{abi.CallbackInterceptPublishOutbound, broker.InterceptPublishOutbound},
	{abi.CallbackInterceptSubscribe, broker.InterceptSubscribe},
	{abi.CallbackInterceptDisconnect, broker.InterceptDisconnect},
}

// activePoints is the set of points some extension of c intercepts.
func (c *chain) activePoints() broker.InterceptPoints {
	var s broker.InterceptPoints
	for _, p := range interceptPoints {
		if len(c.by[p.cb]) > 0 {
			s |= 1 << p.point
		}
	}
	return s
}

// Active implements broker.Interceptors: one atomic load.
func (h *Host) Active() broker.InterceptPoints { return h.chain.Load().active }

// Indexes of extension.interceptFilters.
const (
	filterInbound  = 0
	filterOutbound = 1
)

// filterIndex returns the interceptFilters index of a publish
// interceptor's bit in an add_intercept_filter mask.
var filterBits = [2]uint32{
	filterInbound:  abi.Callbacks[abi.CallbackInterceptPublishInbound].Bit,
	filterOutbound: abi.Callbacks[abi.CallbackInterceptPublishOutbound].Bit,
}

// wantsIntercept reports whether the publish interceptor of index i
// (filterInbound, filterOutbound) is called for a message on name.
func (e *extension) wantsIntercept(i int, name string) bool {
	fs := e.interceptFilters[i]
	if len(fs) == 0 {
		return true
	}
	for _, f := range fs {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// interceptsDelivery reports whether e's intercept_publish_outbound runs
// for a delivery of topic name to the client clientID: its intercept
// filters match the topic and its client patterns the client.
func (e *extension) interceptsDelivery(clientID, name string) bool {
	return e.clientMatch.match(clientID) && e.wantsIntercept(filterOutbound, name)
}

// clientPatterns is an extension's add_intercept_client patterns, indexed
// for the check made on every delivery: a map lookup for the exact client
// ids and a scan of the prefixes, without allocating. The zero value
// matches every client.
type clientPatterns struct {
	// narrow: some pattern was added and none is "*"; otherwise every
	// client matches.
	narrow   bool
	exact    map[string]struct{}
	prefixes []string
}

// newClientPatterns indexes patterns checked by clientPattern.
func newClientPatterns(patterns []string) clientPatterns {
	c := clientPatterns{narrow: len(patterns) > 0}
	for _, p := range patterns {
		prefix, ok := strings.CutSuffix(p, "*")
		switch {
		case ok && prefix == "":
			return clientPatterns{}
		case ok:
			c.prefixes = append(c.prefixes, prefix)
		default:
			if c.exact == nil {
				c.exact = make(map[string]struct{}, len(patterns))
			}
			c.exact[p] = struct{}{}
		}
	}
	return c
}

// match reports whether client id matches one of the patterns.
func (c *clientPatterns) match(id string) bool {
	if !c.narrow {
		return true
	}
	if _, ok := c.exact[id]; ok {
		return true
	}
	for _, p := range c.prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	return false
}

// interceptFailed logs an interceptor call that failed: the packet stays
// as it was before this extension. The failure itself was counted by
// release (or acquire); the line is rate-limited per extension, since a
// broken interceptor fails on every packet.
func interceptFailed(e *extension, cb abi.Callback, client string, err error) {
	if errors.Is(err, ErrCanceled) || !e.gate.logLimiter.Allow() {
		return
	}
	e.log.Warn("interceptor failed; packet left unchanged", "callback", cb.String(), "client", client, "error", err)
}

// codeImplementationSpecific is 0x83, implementation specific error: the
// reason code of a DENY answered with code 0 (ABI.md section 8).
const codeImplementationSpecific = 0x83

// prevented turns a DENY answer into the broker's Prevented.
func prevented(a *answer) broker.Prevented {
	code := a.code
	if code == 0 {
		code = codeImplementationSpecific
	}
	return broker.Prevented{Stop: true, ReasonCode: code, ReasonString: a.out.reason, Extension: a.ext.ID()}
}

// InterceptConnect implements broker.Interceptors: intercept_connect on a
// CONNECT before it is validated and authenticated. ctx (the broker's
// CONNECT deadline) bounds every call, as for Authenticate.
func (h *Host) InterceptConnect(ctx context.Context, c *broker.Connect) {
	const cb = abi.CallbackInterceptConnect
	for _, e := range h.chain.Load().callers(cb) {
		var props [8]abi.Pair
		rec := connectRecord(c, props[:0])
		a, err := h.invokeFor(ctx, e, cb, &rec, c.Conn)
		if err != nil {
			interceptFailed(a.ext, cb, c.ClientID, err)
			continue
		}
		applyConnect(c, a.out.packet)
	}
}

// InterceptConnack implements broker.Interceptors.
func (h *Host) InterceptConnack(cl broker.Peer, ack *broker.Connack) {
	const cb = abi.CallbackInterceptConnack
	for _, e := range h.chain.Load().callers(cb) {
		rec := abi.ConnackRecord{ReasonCode: ack.ReasonCode, ProtocolVersion: cl.ProtocolVersion, ClientID: cl.ID,
			Username: cl.Username, ReasonString: ack.ReasonString, UserProperties: abiPairs(ack.UserProperties)}
		if ack.SessionPresent {
			rec.Flags |= abi.ConnackSessionPresent
		}
		a, err := h.invokeFor(context.Background(), e, cb, &rec, cl.Conn)
		if err != nil {
			interceptFailed(a.ext, cb, cl.ID, err)
			continue
		}
		applyReply(&ack.ReasonString, &ack.UserProperties, a.out.packet)
	}
}

// InterceptPublish implements broker.Interceptors: intercept_publish_inbound
// on a client's PUBLISH. This is a per-message path: with no change the
// record is encoded straight into guest memory and nothing is allocated.
func (h *Host) InterceptPublish(cl broker.Peer, m *broker.Message) broker.Prevented {
	return h.interceptMessage(abi.CallbackInterceptPublishInbound, filterInbound, cl, cl.ID, m)
}

// InterceptDelivery implements broker.Interceptors:
// intercept_publish_outbound on one delivery to cl. Only extensions whose
// intercept filters match the topic and whose client patterns
// (add_intercept_client) match cl's client id are called.
func (h *Host) InterceptDelivery(cl broker.Peer, publisher string, m *broker.Message) broker.Prevented {
	return h.interceptMessage(abi.CallbackInterceptPublishOutbound, filterOutbound, cl, publisher, m)
}

// WantsDelivery implements broker.Interceptors: whether InterceptDelivery
// would call an extension for a delivery of topic to the client clientID.
// The broker asks before it builds the delivery's Message, so that a
// delivery no filter matches costs a filter test and nothing else.
func (h *Host) WantsDelivery(clientID, topic string) bool {
	for _, e := range h.chain.Load().callers(abi.CallbackInterceptPublishOutbound) {
		if e.interceptsDelivery(clientID, topic) {
			return true
		}
	}
	return false
}

// interceptMessage runs a publish interceptor's chain on m.
func (h *Host) interceptMessage(cb abi.Callback, filter int, cl broker.Peer, publisher string, m *broker.Message) broker.Prevented {
	dir := uint8(abi.Inbound)
	if filter == filterOutbound {
		dir = abi.Outbound
	}
	for _, e := range h.chain.Load().callers(cb) {
		if filter == filterOutbound && !e.interceptsDelivery(cl.ID, m.Topic) || filter == filterInbound && !e.wantsIntercept(filter, m.Topic) {
			continue
		}
		rec := abi.MessageRecord{Direction: dir, ProtocolVersion: cl.ProtocolVersion, ClientID: cl.ID, Username: cl.Username,
			Publisher: publisher, Message: abi.Message{QoS: m.QoS, PayloadFormat: m.PayloadFormat, MessageExpiry: m.MessageExpiry,
				Topic: m.Topic, Payload: m.Payload, UserProperties: abiPairs(m.UserProperties), ContentType: m.ContentType,
				ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData}}
		if m.Retain {
			rec.Flags |= abi.MessageRetain
		}
		a, err := h.invokeFor(context.Background(), e, cb, &rec, cl.Conn)
		if err != nil {
			interceptFailed(a.ext, cb, cl.ID, err)
			continue
		}
		if a.decision == abi.DecisionDeny {
			return prevented(&a)
		}
		applyMessage(m, a.out.packet)
	}
	return broker.Prevented{}
}

// InterceptSubscribe implements broker.Interceptors: intercept_subscribe on
// one topic filter of a SUBSCRIBE.
func (h *Host) InterceptSubscribe(cl broker.Peer, s *broker.Subscription) broker.Prevented {
	const cb = abi.CallbackInterceptSubscribe
	for _, e := range h.chain.Load().callers(cb) {
		rec := abi.SubscriptionRecord{QoS: s.QoS, Options: optionsByte(s.Options), ProtocolVersion: cl.ProtocolVersion,
			Identifier: s.Identifier, ClientID: cl.ID, Username: cl.Username, Filter: s.Filter,
			UserProperties: abiPairs(s.UserProperties)}
		if s.Shared {
			rec.Flags |= abi.SubscribeShared
		}
		a, err := h.invokeFor(context.Background(), e, cb, &rec, cl.Conn)
		if err != nil {
			interceptFailed(a.ext, cb, cl.ID, err)
			continue
		}
		if a.decision == abi.DecisionDeny {
			return prevented(&a)
		}
		applySubscription(s, a.out.packet)
	}
	return broker.Prevented{}
}

// InterceptDisconnect implements broker.Interceptors.
func (h *Host) InterceptDisconnect(cl broker.Peer, d *broker.DisconnectPacket) {
	const cb = abi.CallbackInterceptDisconnect
	for _, e := range h.chain.Load().callers(cb) {
		rec := abi.DisconnectRecord{Direction: abi.Inbound, ReasonCode: d.ReasonCode, ProtocolVersion: cl.ProtocolVersion,
			ClientID: cl.ID, Username: cl.Username, ReasonString: d.ReasonString, UserProperties: abiPairs(d.UserProperties)}
		if d.Outbound {
			rec.Direction = abi.Outbound
		}
		a, err := h.invokeFor(context.Background(), e, cb, &rec, cl.Conn)
		if err != nil {
			interceptFailed(a.ext, cb, cl.ID, err)
			continue
		}
		applyReply(&d.ReasonString, &d.UserProperties, a.out.packet)
	}
}

// optionsByte encodes o as ABI.md's options byte.
func optionsByte(o broker.SubscriptionOptions) uint8 {
	return subscriptionOptions(broker.SubscriptionInfo{NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished,
		RetainHandling: o.RetainHandling})
}

// abi.Pair and broker.UserProperty are the same struct (a conversion
// between them compiles only then), so lists convert without a copy: the
// per-message path allocates nothing for its user properties.
var _ = abi.Pair(broker.UserProperty{})

// abiPairs views ps as ABI pairs.
func abiPairs(ps []broker.UserProperty) []abi.Pair {
	return unsafe.Slice((*abi.Pair)(unsafe.SliceData(ps)), len(ps))
}

// brokerProps views ps as broker user properties.
func brokerProps(ps []abi.Pair) []broker.UserProperty {
	return unsafe.Slice((*broker.UserProperty)(unsafe.SliceData(ps)), len(ps))
}

// The apply functions change a packet with the changes one interceptor
// staged, in the order it made them (the last change of a field wins).
// The changes were checked when staged (packetset.go) and hold copies, so
// the packet owns what it is given.

func applyConnect(c *broker.Connect, changes []packetChange) {
	for i := range changes {
		ch := &changes[i]
		switch ch.field {
		case abi.FieldClientID:
			c.ClientID = ch.s
		case abi.FieldUsername:
			c.Username, c.HasUsername = ch.s, true
		case abi.FieldPassword:
			c.Password = ch.b
			if c.Password == nil {
				c.Password = []byte{} // set, if empty
			}
		case abi.FieldSessionExpiry:
			c.SessionExpiry = uint32(ch.n)
		case abi.FieldKeepalive:
			c.Keepalive = uint16(ch.n)
		case abi.FieldReceiveMaximum:
			c.ReceiveMaximum = uint16(ch.n)
		case abi.FieldUserProperties:
			c.UserProperties = ch.props
		case abi.FieldWillTopic:
			switch {
			case ch.s == "":
				c.Will = nil
			case c.Will == nil:
				c.Will = &broker.WillInfo{Topic: ch.s}
			default:
				w := *c.Will // the broker's WillInfo may be shared: change a copy
				w.Topic = ch.s
				c.Will = &w
			}
		case abi.FieldWillPayload, abi.FieldWillQoS, abi.FieldWillRetain, abi.FieldWillDelay:
			if c.Will == nil { // refused when staged; kept safe here
				continue
			}
			w := *c.Will
			switch ch.field {
			case abi.FieldWillPayload:
				w.Payload = ch.b
			case abi.FieldWillQoS:
				w.QoS = byte(ch.n)
			case abi.FieldWillRetain:
				w.Retain = ch.n != 0
			case abi.FieldWillDelay:
				w.Delay = uint32(ch.n)
			}
			c.Will = &w
		}
	}
}

// applyReply applies the changes of a CONNACK or DISCONNECT.
func applyReply(reason *string, props *[]broker.UserProperty, changes []packetChange) {
	for i := range changes {
		switch ch := &changes[i]; ch.field {
		case abi.FieldReasonString:
			*reason = ch.s
		case abi.FieldUserProperties:
			*props = ch.props
		}
	}
}

func applyMessage(m *broker.Message, changes []packetChange) {
	for i := range changes {
		switch ch := &changes[i]; ch.field {
		case abi.FieldTopic:
			m.Topic = ch.s
		case abi.FieldPayload:
			m.Payload = ch.b
		case abi.FieldQoS:
			m.QoS = byte(ch.n)
		case abi.FieldRetain:
			m.Retain = ch.n != 0
		case abi.FieldMessageExpiry:
			m.MessageExpiry = uint32(ch.n)
		case abi.FieldContentType:
			m.ContentType = ch.s
		case abi.FieldPayloadFormat:
			m.PayloadFormat = byte(ch.n)
		case abi.FieldResponseTopic:
			m.ResponseTopic = ch.s
		case abi.FieldCorrelationData:
			m.CorrelationData = ch.b
		case abi.FieldUserProperties:
			m.UserProperties = ch.props
		}
	}
}

func applySubscription(s *broker.Subscription, changes []packetChange) {
	for i := range changes {
		switch ch := &changes[i]; ch.field {
		case abi.FieldQoS:
			s.QoS = byte(ch.n)
		case abi.FieldSubscriptionOptions:
			o := byte(ch.n)
			s.Options = broker.SubscriptionOptions{NoLocal: o&abi.SubscriptionNoLocal != 0,
				RetainAsPublished: o&abi.SubscriptionRetainAsPublished != 0,
				RetainHandling:    o & abi.SubscriptionRetainHandlingMask >> abi.SubscriptionRetainHandlingShift}
		}
	}
}
