package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// This file asks Extensions.Interceptors (interceptors.go) at each
// interception point and applies their changes to mochi's packets:
//
//	CONNECT     OnPacketRead, before mochi validates it (interceptConnect)
//	CONNACK     OnPacketEncode, once the broker has shaped it (interceptConnack)
//	PUBLISH in  OnPublish, after its authorization (interceptPublish)
//	PUBLISH out OnPacketEncode, every delivery and resend (interceptDelivery)
//	SUBSCRIBE   OnSubscribe, per filter, before its authorization (interceptSubscribe)
//	DISCONNECT  OnPacketRead (the client's) and OnPacketEncode (the broker's)
//
// With no Interceptors, or none active at a point, the broker builds
// nothing: each point costs a nil check and, with Interceptors, one call
// of Active (an atomic load in the host).

// interceptors returns the Interceptors when one intercepts at p now, nil
// otherwise.
func (h *hook) interceptors(p InterceptPoint) Interceptors {
	ic := h.ext.Interceptors
	if ic == nil || !ic.Active().Has(p) {
		return nil
	}
	return ic
}

// peer names cl for an interceptor, with its connection's attributes: the
// clientState's, or for a CONNECT not accepted (yet) the ones its
// interception made (outConn.connectConn).
func (h *hook) peer(cl *mqtt.Client) Peer {
	if st := h.state(cl); st != nil {
		return st.peer
	}
	p := Peer{ID: cl.ID, Username: string(cl.Properties.Username), ProtocolVersion: cl.Properties.ProtocolVersion}
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		p.Conn = oc.connectConn
	}
	return p
}

// userProperties views mochi's user properties as the broker's, without
// copying (the two types have one layout: see the check below); nil for
// none. The view's capacity is its length, so an append never writes into
// mochi's array, and interceptors replace the slice rather than write into
// it: a message's properties cost nothing on a path where no interceptor
// changes them (a delivery an outbound filter does not match).
func userProperties(in []packets.UserProperty) []UserProperty {
	if len(in) == 0 {
		return nil
	}
	return unsafe.Slice((*UserProperty)(unsafe.Pointer(unsafe.SliceData(in))), len(in))
}

// mochiProperties is the reverse of userProperties, a view too.
func mochiProperties(in []UserProperty) []packets.UserProperty {
	if len(in) == 0 {
		return nil
	}
	return unsafe.Slice((*packets.UserProperty)(unsafe.Pointer(unsafe.SliceData(in))), len(in))
}

// The conversions above need UserProperty and packets.UserProperty to be
// two strings in the same order: this fails to compile otherwise.
var (
	_ [unsafe.Sizeof(UserProperty{}) - unsafe.Sizeof(packets.UserProperty{})]struct{}
	_ [unsafe.Sizeof(packets.UserProperty{}) - unsafe.Sizeof(UserProperty{})]struct{}
	_ [unsafe.Offsetof(UserProperty{}.Value) - unsafe.Offsetof(packets.UserProperty{}.Val)]struct{}
	_ [unsafe.Offsetof(packets.UserProperty{}.Val) - unsafe.Offsetof(UserProperty{}.Value)]struct{}
)

// sameProperties reports whether a and b hold the same user properties in
// the same order.
func sameProperties(a []UserProperty, b []packets.UserProperty) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Value != b[i].Val {
			return false
		}
	}
	return true
}

// --- CONNECT ---

// interceptConnect runs the CONNECT interceptors on pk, as the client sent
// it (its client id possibly empty), and writes every change back into pk
// before mochi validates it: flags follow their fields (user name and
// password flags, the will flag; a will with an empty topic is removed, one
// with a topic added), the will delay goes into the will properties, and a
// changed session expiry sets its property flag. The Connect's Conn is kept
// on the outConn, so that authenticateConnect hands the same connection
// attributes to the Authenticator. OnPacketRead calls it on the client's
// goroutine, under the broker's CONNECT deadline.
func (h *hook) interceptConnect(ic Interceptors, cl *mqtt.Client, pk *packets.Packet) {
	c := &Connect{
		ClientID:        pk.Connect.ClientIdentifier,
		Username:        string(pk.Connect.Username),
		HasUsername:     pk.Connect.UsernameFlag,
		ProtocolVersion: pk.ProtocolVersion,
		CleanStart:      pk.Connect.Clean,
		Keepalive:       pk.Connect.Keepalive,
		SessionExpiry:   pk.Properties.SessionExpiryInterval,
		ReceiveMaximum:  pk.Properties.ReceiveMaximum,
		RemoteAddr:      cl.Net.Remote,
		Listener:        cl.Net.Listener,
		UserProperties:  userProperties(pk.Properties.User),
		Conn:            newConn(),
	}
	if pk.Connect.PasswordFlag || pk.Connect.Password != nil {
		c.Password = pk.Connect.Password
		if c.Password == nil {
			c.Password = []byte{}
		}
	}
	if pk.Connect.WillFlag {
		c.Will = &WillInfo{Topic: pk.Connect.WillTopic, Payload: pk.Connect.WillPayload, QoS: pk.Connect.WillQos,
			Retain: pk.Connect.WillRetain, Delay: pk.Connect.WillProperties.WillDelayInterval}
	}
	if tc, ok := tlsConn(cl.Net.Conn); ok {
		c.TLS = tlsInfo(tc.ConnectionState())
	}
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		oc.connectConn = c.Conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.connectTimeout())
	ok := h.callIntercept("connect", c.ClientID, func() { ic.InterceptConnect(ctx, c) })
	cancel()
	if ok {
		applyConnect(pk, c)
	}
}

// applyConnect writes the interceptable fields of c into the CONNECT pk.
// An id given to an MQTT 5 client that sent none is the id the broker
// assigned it, as far as the client is concerned: the CONNACK tells it
// (Assigned Client Identifier, [MQTT-3.2.2-16]), which mochi does only for
// an id still empty when it parses the CONNECT.
func applyConnect(pk *packets.Packet, c *Connect) {
	cp := &pk.Connect
	if cp.ClientIdentifier == "" && c.ClientID != "" && pk.ProtocolVersion >= 5 {
		pk.Properties.AssignedClientID = c.ClientID
	}
	cp.ClientIdentifier = c.ClientID
	cp.Username = []byte(c.Username)
	cp.UsernameFlag = c.HasUsername || c.Username != ""
	cp.Password = c.Password
	cp.PasswordFlag = c.Password != nil
	cp.Keepalive = c.Keepalive
	if c.SessionExpiry != pk.Properties.SessionExpiryInterval {
		pk.Properties.SessionExpiryInterval = c.SessionExpiry
		pk.Properties.SessionExpiryIntervalFlag = true
	}
	pk.Properties.ReceiveMaximum = c.ReceiveMaximum
	if !sameProperties(c.UserProperties, pk.Properties.User) {
		pk.Properties.User = mochiProperties(c.UserProperties)
	}
	w := c.Will
	if w == nil || w.Topic == "" {
		cp.WillFlag, cp.WillTopic, cp.WillPayload, cp.WillQos, cp.WillRetain = false, "", nil, 0, false
		cp.WillProperties = packets.Properties{}
		return
	}
	cp.WillFlag, cp.WillTopic, cp.WillPayload, cp.WillQos, cp.WillRetain = true, w.Topic, w.Payload, w.QoS, w.Retain
	cp.WillProperties.WillDelayInterval = w.Delay
}

// callIntercept runs one interceptor call with a recover: an
// implementation that panics leaves the packet as it was (the callers
// apply only what the call left in its argument) and is logged.
func (h *hook) callIntercept(point, client string, f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("interceptor panicked", "point", point, "client", client, "panic", r)
			ok = false
		}
	}()
	f()
	return true
}

// --- CONNACK ---

// interceptConnack runs the CONNACK interceptors on the CONNACK about to be
// written to cl (accepting or refusing, shaped by connectAck or
// refusingConnack). An MQTT 5 client gets the user properties and reason
// string they produced; an MQTT 3.1.1 CONNACK has no properties, so their
// changes go nowhere. OnPacketEncode calls it on the writer's goroutine.
func (h *hook) interceptConnack(ic Interceptors, cl *mqtt.Client, pk packets.Packet) packets.Packet {
	a := &Connack{ReasonCode: pk.ReasonCode, SessionPresent: pk.SessionPresent,
		ReasonString: pk.Properties.ReasonString, UserProperties: userProperties(pk.Properties.User)}
	if !h.callIntercept("connack", cl.ID, func() { ic.InterceptConnack(h.peer(cl), a) }) {
		return pk
	}
	if cl.Properties.ProtocolVersion < 5 {
		return pk
	}
	pk.Properties.ReasonString = a.ReasonString
	if !sameProperties(a.UserProperties, pk.Properties.User) {
		pk.Properties.User = mochiProperties(a.UserProperties)
	}
	return pk
}

// --- DISCONNECT ---

// interceptDisconnect runs the DISCONNECT interceptors on a DISCONNECT the
// client sent (OnPacketRead, before mochi acts on it) or the broker is
// about to write (OnPacketEncode, MQTT 5 clients only: a 3.1.1 DISCONNECT
// has no properties). The reason string and user properties they produce
// go into the packet (MQTT 5); the reason string of the client's DISCONNECT
// is also what the disconnect event reports (clientState.leaving).
func (h *hook) interceptDisconnect(ic Interceptors, cl *mqtt.Client, pk packets.Packet, outbound bool) packets.Packet {
	d := &DisconnectPacket{Outbound: outbound, ReasonCode: pk.ReasonCode,
		ReasonString: pk.Properties.ReasonString, UserProperties: userProperties(pk.Properties.User)}
	if !h.callIntercept("disconnect", cl.ID, func() { ic.InterceptDisconnect(h.peer(cl), d) }) {
		return pk
	}
	pk.Properties.ReasonString = d.ReasonString
	if !sameProperties(d.UserProperties, pk.Properties.User) {
		pk.Properties.User = mochiProperties(d.UserProperties)
	}
	return pk
}

// clientLeaving records the reason string of the DISCONNECT cl sent, for
// its disconnect event (see disconnectCause); OnPacketRead calls it.
func (h *hook) clientLeaving(cl *mqtt.Client, pk packets.Packet) {
	if st := h.state(cl); st != nil && pk.Properties.ReasonString != "" {
		reason := pk.Properties.ReasonString
		st.leaving.Store(&reason)
	}
}

// --- SUBSCRIBE ---

// interceptSubscribe runs the SUBSCRIBE interceptors on each filter of pk,
// changing its QoS and options in place (pk.Filters is the packet's own).
// It returns the verdicts of the filters an interceptor removed (nil when
// none): beginSubscribe records them as refusals, so they get their reason
// code in the SUBACK (0x80 for MQTT 3.1.1) and are not subscribed, and does
// not authorize them. OnSubscribe calls it on the client's goroutine.
func (h *hook) interceptSubscribe(ic Interceptors, cl *mqtt.Client, pk *packets.Packet) map[string]Verdict {
	var removed map[string]Verdict
	peer := h.peer(cl)
	var id uint32
	if ids := pk.Properties.SubscriptionIdentifier; len(ids) > 0 && ids[0] > 0 {
		id = uint32(ids[0])
	}
	user := userProperties(pk.Properties.User)
	for i := range pk.Filters {
		f := &pk.Filters[i]
		_, _, shared := topic.SplitShared(f.Filter)
		s := &Subscription{Filter: f.Filter, QoS: f.Qos, Shared: shared, Identifier: id, UserProperties: user,
			Options: SubscriptionOptions{NoLocal: f.NoLocal, RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling}}
		var prev Prevented
		if !h.callIntercept("subscribe", cl.ID, func() { prev = ic.InterceptSubscribe(peer, s) }) {
			continue
		}
		if prev.Stop {
			if removed == nil {
				removed = make(map[string]Verdict)
			}
			code := prev.ReasonCode
			if code < 0x80 {
				code = codeImplementationSpecific
			}
			removed[f.Filter] = Verdict{Decision: Deny, ReasonCode: code, ReasonString: prev.ReasonString}
			h.log.Debug("subscription prevented", "client", cl.ID, "filter", f.Filter, "extension", prev.Extension, "code", logCode(code))
			continue
		}
		if s.QoS <= 2 {
			f.Qos = s.QoS
		}
		if s.Options.RetainHandling <= 2 {
			f.RetainHandling = s.Options.RetainHandling
		}
		f.NoLocal = s.Options.NoLocal && !shared // MQTT 5, 3.8.3.1: not on a shared subscription
		f.RetainAsPublished = s.Options.RetainAsPublished
	}
	return removed
}

// codeImplementationSpecific is the reason code of a prevention that named
// none (MQTT 5, 0x83).
const codeImplementationSpecific byte = 0x83

// --- PUBLISH inbound ---

// messageOfPacket is a PUBLISH as interceptors see it: a view, sharing
// its payload and byte fields with pk.
func messageOfPacket(pk *packets.Packet) Message {
	p := &pk.Properties
	return Message{
		Topic:           pk.TopicName,
		Payload:         pk.Payload,
		QoS:             pk.FixedHeader.Qos,
		Retain:          pk.FixedHeader.Retain,
		MessageExpiry:   p.MessageExpiryInterval,
		PayloadFormat:   p.PayloadFormat,
		ContentType:     p.ContentType,
		ResponseTopic:   p.ResponseTopic,
		CorrelationData: p.CorrelationData,
		UserProperties:  userProperties(p.User),
	}
}

// interceptPublish is OnPublish for a client's PUBLISH once authorized,
// when an extension intercepts it: the interceptors change *pk or stop
// it; a change of topic, QoS, retain or payload is authorized again (a
// refusal answered like any refusal of the PUBLISH as sent). It returns
// packets.ErrRejectPacket for a PUBLISH answered here (stopped, or
// refused after a change), which OnPublish returns; otherwise OnPublish
// stamps it and makes it durable like any PUBLISH, through downgraded when
// its QoS was lowered. *pk is changed in place: the 800-byte packet is not
// copied per intercepted PUBLISH.
func (h *hook) interceptPublish(ic Interceptors, cl *mqtt.Client, pk *packets.Packet) error {
	sent := pk.FixedHeader.Qos
	st := h.state(cl)
	if st == nil { // authorizePublish refused it
		return packets.ErrRejectPacket
	}
	// The client's goroutine handles one PUBLISH at a time: one Message
	// per client, reused.
	m := &st.msg
	*m = messageOfPacket(pk)
	defer func() { *m = Message{} }()
	prev, ok := h.callPublish(ic, st.peer, m)
	if !ok {
		return nil
	}
	if prev.Stop {
		h.preventPublish(cl, pk, prev)
		return packets.ErrRejectPacket
	}
	if err := checkChanged(m, pk); err != nil {
		h.log.Warn("interceptor answer ignored", "client", cl.ID, "topic", pk.TopicName, "error", err)
		return nil
	}
	reauthorize := m.Topic != pk.TopicName || m.QoS != sent || m.Retain != pk.FixedHeader.Retain || !sameBytes(m.Payload, pk.Payload)
	applyMessage(pk, m)
	if reauthorize {
		if v := h.publishVerdict(cl, pk); v.Decision != Allow {
			answer := *pk
			answer.FixedHeader.Qos = sent // the publisher's flow is that of the QoS it sent
			h.refusePublish(cl, &answer, v)
			return packets.ErrRejectPacket
		}
	}
	return nil
}

// callPublish runs InterceptPublish with a recover (see callIntercept),
// without a closure: it is on every intercepted PUBLISH.
func (h *hook) callPublish(ic Interceptors, peer Peer, m *Message) (prev Prevented, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("interceptor panicked", "point", "publish", "client", peer.ID, "panic", r)
			prev, ok = Prevented{}, false
		}
	}()
	return ic.InterceptPublish(peer, m), true
}

// wantsDelivery is ic.WantsDelivery, a panic logged and taken for
// "wanted": the delivery then goes to InterceptDelivery, so that an
// interceptor is not skipped because its filter test failed.
func (h *hook) wantsDelivery(ic Interceptors, clientID, topic string) (wanted bool) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("interceptor panicked", "point", "delivery filter", "client", clientID, "panic", r)
			wanted = true
		}
	}()
	return ic.WantsDelivery(clientID, topic)
}

// callDelivery is callPublish for InterceptDelivery.
func (h *hook) callDelivery(ic Interceptors, peer Peer, publisher string, m *Message) (prev Prevented, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("interceptor panicked", "point", "delivery", "client", peer.ID, "panic", r)
			prev, ok = Prevented{}, false
		}
	}()
	return ic.InterceptDelivery(peer, publisher, m), true
}

// checkChanged refuses a message m, changed from pk by interceptors, that
// the broker cannot deliver: a topic or response topic that is not a topic
// name, a QoS raised, a payload format above 1. The host checks every
// answer already; this keeps a broken Interceptors from reaching mochi.
func checkChanged(m *Message, pk *packets.Packet) error {
	if m.Topic != pk.TopicName {
		if err := checkTopicName(m.Topic); err != nil {
			return err
		}
	}
	if r := m.ResponseTopic; r != "" && r != pk.Properties.ResponseTopic {
		if err := checkTopicName(r); err != nil {
			return fmt.Errorf("response topic: %w", err)
		}
	}
	if m.QoS > pk.FixedHeader.Qos {
		return fmt.Errorf("%w: QoS raised from %d to %d", ErrInvalidArgument, pk.FixedHeader.Qos, m.QoS)
	}
	if m.PayloadFormat > 1 {
		return fmt.Errorf("%w: payload format %d, want 0 or 1", ErrInvalidArgument, m.PayloadFormat)
	}
	return nil
}

// sameBytes reports whether a and b are the same slice (not merely equal
// bytes): an interceptor that changes a payload passes a new one.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// acceptPublish stamps an authorized PUBLISH, hands it to the cluster and
// writes it as pending (admitPublish; see OnPublish).
func (h *hook) acceptPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.stampPublish(&pk)
	if v := h.admitPublish(cl, &pk); v != nil {
		h.failPublish(cl, &pk, *v)
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// applyMessage writes the interceptable fields of m into the PUBLISH pk.
func applyMessage(pk *packets.Packet, m *Message) {
	p := &pk.Properties
	pk.TopicName = m.Topic
	pk.Payload = m.Payload
	pk.FixedHeader.Qos = m.QoS
	pk.FixedHeader.Retain = m.Retain
	p.MessageExpiryInterval = m.MessageExpiry
	p.PayloadFormat, p.PayloadFormatFlag = m.PayloadFormat, m.PayloadFormat != 0 || p.PayloadFormatFlag
	p.ContentType = m.ContentType
	p.ResponseTopic = m.ResponseTopic
	p.CorrelationData = m.CorrelationData
	if !sameProperties(m.UserProperties, p.User) {
		p.User = mochiProperties(m.UserProperties)
	}
}

// preventPublish answers a PUBLISH an interceptor stopped: an MQTT 5
// publisher gets the reason code (and string) in its PUBACK or PUBREC,
// which ends a QoS 2 flow; an MQTT 3.1.1 one, which cannot be told, gets a
// success PUBACK, or PUBREC then PUBCOMP, and stays connected; QoS 0 is
// dropped. Nothing is delivered or retained. Logged at debug.
func (h *hook) preventPublish(cl *mqtt.Client, pk *packets.Packet, prev Prevented) {
	code := prev.ReasonCode
	if code < 0x80 {
		code = codeImplementationSpecific
	}
	h.log.Debug("publish prevented", "client", cl.ID, "topic", pk.TopicName, "extension", prev.Extension, "code", logCode(code))
	h.stats.dropped[dropPrevented].Add(1)
	switch {
	case pk.FixedHeader.Qos == 0:
	case cl.Properties.ProtocolVersion >= 5:
		h.failPublish(cl, pk, Verdict{Decision: Deny, ReasonCode: code, ReasonString: prev.ReasonString})
	default:
		h.ackPublisher(cl, pk.PacketID, pk.FixedHeader.Qos)
	}
}

// ackPublisher answers a PUBLISH of QoS sent with success the way mochi
// would, for a PUBLISH the broker handles itself (prevented for an MQTT
// 3.1.1 client, or delivered at a lower QoS): openFlow, then writeAck. It
// reports whether the acknowledgement was written.
func (h *hook) ackPublisher(cl *mqtt.Client, id uint16, sent byte) bool {
	h.openFlow(cl, id, sent)
	return h.writeAck(cl, id, sent)
}

// openFlow opens a QoS 2 flow the broker acknowledges itself: its PUBREC
// goes into cl's in-flight map (stored for a persistent session), so that
// mochi answers the PUBREL with a PUBCOMP, resends the PUBREC at a
// reconnection, and a resent PUBLISH of the flow is not delivered again.
// Nothing for QoS 1.
func (h *hook) openFlow(cl *mqtt.Client, id uint16, sent byte) {
	if sent != 2 {
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: id, Created: h.nextSeq()}
	if cl.State.Inflight.Set(ack) {
		atomic.AddInt64(&h.mochi.Info.Inflight, 1)
		h.saveInflight(cl, ack)
	}
}

// writeAck writes the PUBACK (QoS 1) or PUBREC (QoS 2, its flow opened by
// openFlow) of a PUBLISH the broker acknowledges itself. A PUBACK ends its
// flow: a packet id the client's PUBLISH was renamed from is free again
// (aliasEnded; mochi's own PUBACKs get there through OnQosComplete).
func (h *hook) writeAck(cl *mqtt.Client, id uint16, sent byte) bool {
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}
	if sent == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if err := cl.WritePacket(ack); err != nil {
		h.log.Debug("write ack", "client", cl.ID, "error", err)
		return false
	}
	if sent == 1 {
		ack.Created = 1 // the broker's own PUBACK, as aliasEnded tells them apart
		h.aliasEnded(cl, ack)
	}
	return true
}

// downgraded delivers a PUBLISH whose QoS an interceptor lowered, stamped
// and authorized. mochi drives the publisher's acknowledgement from the
// packet's QoS after OnPublish, so the broker keeps the flow of the QoS the
// publisher sent itself, and acknowledges only once the message is
// retained and fanned out, as mochi does: first it is made durable at its
// new QoS (admitPublish: forwarded to a cluster, savePending) and a QoS 2 flow is opened (openFlow). At QoS 0
// mochi then retains and delivers it, without an acknowledgement, and
// OnPublished writes the one owed (owedAck). At QoS 1 (from 2) it is
// retained and delivered through mochi's inline client (reinject), then
// acknowledged, and mochi is told to do nothing more; should the
// re-publication fail, its pending record stays for the next start. See
// RATIONALE.md, "Why does the broker acknowledge a PUBLISH whose QoS an
// interceptor lowered itself?".
func (h *hook) downgraded(cl *mqtt.Client, pk packets.Packet, sent byte) (packets.Packet, error) {
	if v := h.admitPublish(cl, &pk); v != nil {
		answer := pk
		answer.FixedHeader.Qos = sent
		h.failPublish(cl, &answer, *v)
		return pk, packets.ErrRejectPacket
	}
	h.openFlow(cl, pk.PacketID, sent)
	if pk.FixedHeader.Qos == 0 {
		if st := h.state(cl); st != nil {
			st.owedAck = owedAck{id: pk.PacketID, sent: sent, owed: true}
		}
		return pk, nil
	}
	if !h.reinject(cl, pk) {
		return pk, packets.ErrRejectPacket // the pending record stays (forgetPending)
	}
	h.deletePending(cl, pk)
	h.writeAck(cl, pk.PacketID, sent)
	return pk, packets.ErrRejectPacket
}

// owedAck is the acknowledgement of a PUBLISH lowered to QoS 0, which
// OnPublished writes once mochi has retained and delivered it (ackOwed).
// Only the client's reader goroutine, which handles one PUBLISH at a time,
// sets and takes it.
type owedAck struct {
	id   uint16
	sent byte
	owed bool
}

// ackOwed writes the acknowledgement owed for cl's PUBLISH, if any
// (downgraded); OnPublished calls it.
func (h *hook) ackOwed(cl *mqtt.Client) {
	st := h.state(cl)
	if st == nil || !st.owedAck.owed {
		return
	}
	a := st.owedAck
	st.owedAck = owedAck{}
	h.writeAck(cl, a.id, a.sent)
}

// reinjection is what a PUBLISH re-published through the inline client
// keeps of its first pass (see reinject).
type reinjection struct {
	origin          string
	created, expiry int64
}

// reinjectKey marks a PUBLISH reinject hands to mochi's inline client: its
// CONNECT-only client identifier field, which a PUBLISH never encodes,
// holds this prefix and its ordering key.
const reinjectKey = "\x00propolis-reinject:"

// reinject publishes pk, a client's PUBLISH not yet acknowledged, through
// mochi's inline client: mochi fans it out and retains it at pk's QoS
// without acknowledging anything. mochi makes the inline client its origin
// and restamps it; OnPublish (reinjected) puts back the publisher as its
// origin (No Local) and the ordering key and expiry it was stored with.
func (h *hook) reinject(cl *mqtt.Client, pk packets.Packet) bool {
	inline, ok := h.mochi.Clients.Get(mqtt.InlineClientId)
	if !ok {
		h.log.Error("publish not delivered: mochi has no inline client", "client", cl.ID, "topic", pk.TopicName)
		return false
	}
	key := reinjectKey + strconv.FormatInt(pk.Created, 10)
	h.reinjects.Store(key, &reinjection{origin: cl.ID, created: pk.Created, expiry: pk.Expiry})
	defer h.reinjects.Delete(key)
	pk.Connect.ClientIdentifier = key
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false // resolved on the first pass
	if err := h.mochi.InjectPacket(inline, pk); err != nil {
		h.log.Error("publish not delivered", "client", cl.ID, "topic", pk.TopicName, "error", err)
		return false
	}
	return true
}

// reinjected restores, on a PUBLISH of the inline client, what reinject
// kept of it, and reports whether it was one. OnPublish calls it.
func (h *hook) reinjected(pk *packets.Packet) bool {
	if pk.Connect.ClientIdentifier == "" {
		return false
	}
	v, ok := h.reinjects.Load(pk.Connect.ClientIdentifier)
	if !ok {
		return false
	}
	r := v.(*reinjection)
	pk.Connect = packets.ConnectParams{}
	pk.Origin, pk.Created, pk.Expiry = r.origin, r.created, r.expiry
	if pk.Expiry > 0 {
		pk.ProtocolVersion = 5 // see stampPublish
	}
	return true
}

// --- PUBLISH outbound ---

// messages reuses the Message of deliveries.
var messages = sync.Pool{New: func() any { return new(Message) }}

// interceptDelivery runs the delivery interceptors on one PUBLISH about to
// be written to cl (a first send or a resend): topic, payload and user
// properties they change go into this copy only, *pk, changed in place (the
// 800-byte packet is not copied per delivery). A prevented delivery is not
// written (preventDelivery). OnPacketEncode calls it on the writer's
// goroutine.
func (h *hook) interceptDelivery(ic Interceptors, cl *mqtt.Client, pk *packets.Packet) {
	if !h.wantsDelivery(ic, cl.ID, pk.TopicName) {
		return
	}
	publisher := pk.Origin
	if publisher == mqtt.InlineClientId {
		publisher = ""
	}
	m := messages.Get().(*Message)
	*m = messageOfPacket(pk)
	defer func() { *m = Message{}; messages.Put(m) }()
	prev, ok := h.callDelivery(ic, h.peer(cl), publisher, m)
	if !ok {
		return
	}
	if prev.Stop {
		*pk = h.preventDelivery(cl, *pk, prev)
		return
	}
	if m.Topic != pk.TopicName {
		if err := checkTopicName(m.Topic); err != nil {
			h.log.Warn("interceptor answer ignored: invalid topic", "client", cl.ID, "topic", pk.TopicName, "error", err)
			return
		}
		pk.TopicName = m.Topic
	}
	pk.Payload = m.Payload
	if !sameProperties(m.UserProperties, pk.Properties.User) {
		pk.Properties.User = mochiProperties(m.UserProperties)
	}
}

// preventDelivery stops one delivery to cl: the PUBLISH becomes a marker
// the client's outConn drops (outConn.dropMarked), so nothing reaches the
// socket and mochi's write succeeds (a failed write would end a resend at
// reconnection, and the connection with it). A QoS 1/2 copy is finished as
// if cl had acknowledged it: out of mochi's in-flight map and the store;
// it never took from the client's send quota, since outConn counts what it
// sends. Without an outConn the packet is made too large for mochi to write.
func (h *hook) preventDelivery(cl *mqtt.Client, pk packets.Packet, prev Prevented) packets.Packet {
	h.log.Debug("delivery prevented", "client", cl.ID, "topic", pk.TopicName, "extension", prev.Extension)
	h.stats.dropped[dropPrevented].Add(1)
	if pk.FixedHeader.Qos > 0 {
		if cl.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&h.mochi.Info.Inflight, -1)
			h.inflightAcked(cl, pk)
		}
	}
	oc, ok := cl.Net.Conn.(*outConn)
	if !ok {
		pk.Mods.MaxSize = 1
		return pk
	}
	oc.marked.Add(1)
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Auth}, ReasonCode: dropMarkerCode}
}

// dropMarkerCode is the reason code of the AUTH packet that stands for a
// prevented delivery (see preventDelivery); the broker sends no other AUTH.
const dropMarkerCode = 0xFF

// dropMarked removes from p, whole packets as mochi writes them, the AUTH
// packets preventDelivery made, counting them off c.marked. Write calls it
// with c.mu held, only while c.marked is above 0.
func (c *outConn) dropMarked(p []byte) []byte {
	var out []byte
	rest := p
	for len(rest) > 0 {
		n := frameLen(rest)
		if n == 0 { // not whole packets: leave it as it is
			if out == nil {
				return p
			}
			return append(out, rest...)
		}
		f := rest[:n]
		rest = rest[n:]
		if f[0] == packets.Auth<<4 && c.marked.Load() > 0 {
			c.marked.Add(-1)
			if out == nil {
				out = append(make([]byte, 0, len(p)), p[:len(p)-len(rest)-n]...)
			}
			continue
		}
		if out != nil {
			out = append(out, f...)
		}
	}
	if out == nil {
		return p
	}
	return out
}
