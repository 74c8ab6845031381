package broker

import (
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file is the packet tap: every MQTT packet a client sends (after
// mochi decodes it and the interceptors ran, OnPacketRead) and every packet
// the broker writes to a client (as mochi encodes it, OnPacketEncode) is
// offered to the PacketTap that SetPacketTap installed, if any. Package
// trace (trace recordings) is the tap; the broker knows nothing of
// recordings or files.
//
// Cost: with no tap, one atomic load and a nil test per packet, inlined
// into OnPacketRead and OnPacketEncode (tapRead, tapWrite). With a
// tap, its Takes prefilter decides from the client id and packet type
// alone, before anything is copied or allocated; only a packet it takes is
// decoded into a TracedPacket and handed to Trace, on the goroutine
// handling the packet (the client's reader or writer).

// PacketTap receives the MQTT packets of the clients. Both methods are
// called on the goroutine reading or writing the packet's connection, for
// every client at once, so they must be safe for concurrent use and quick:
// the packet waits for them.
type PacketTap interface {
	// Takes is the prefilter, called for every packet before anything is
	// copied: whether a packet of type typ (packets.Connect = 1 to
	// packets.Auth = 15, the numbers of PacketTypeName) of clientID may be
	// wanted. A CONNECT is offered under the client id it carries ("" when
	// the client asks for one to be assigned). Returning false costs the
	// packet nothing more.
	Takes(clientID string, typ byte) bool
	// Trace receives a packet Takes took. p and what it points to
	// (Payload, Filters, ...) belong to the broker and are valid during
	// the call only: a tap keeping any of it copies it.
	Trace(p *TracedPacket)
}

// TracedPacket is one MQTT packet as a trace records it: who, which way,
// when, and its decoded fields. Fields a packet does not have are zero.
type TracedPacket struct {
	// Time is when the broker read the packet or started writing it.
	Time time.Time
	// ClientID is the client's id; for a CONNECT, the id it carries ("" if
	// it asks the broker to assign one; the CONNACK then goes to the
	// assigned id).
	ClientID string
	// Inbound is true for a packet the client sent, false for one the
	// broker sends.
	Inbound bool
	// Type is the packet type's name (PacketTypeName): "CONNECT",
	// "PUBLISH", ...
	Type string
	// TypeCode is the packet type's number, 1 (CONNECT) to 15 (AUTH).
	TypeCode byte
	// ProtocolVersion is the client's MQTT version: 3, 4 (3.1.1) or 5.
	ProtocolVersion byte

	// PacketID is the packet identifier of a PUBLISH (QoS 1/2), its
	// acknowledgements, SUBSCRIBE, UNSUBSCRIBE and their acks, as on the
	// wire: a client's own id, also for a flow the broker runs under an
	// alias (packetid.go).
	PacketID uint16
	// Topic, QoS, Retain, Dup and Payload are a PUBLISH's; Topic is the
	// one a client's topic alias stands for when it sent only the alias.
	// Payload is the broker's buffer (see PacketTap.Trace).
	Topic   string
	QoS     byte
	Retain  bool
	Dup     bool
	Payload []byte
	// ReasonCode is the reason code of a CONNACK (the 3.1.1 return code
	// for 3.1.1 clients), PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT or
	// AUTH, as the receiver reads it (one left out of the packet is 0);
	// ReasonString is its MQTT 5 reason string.
	ReasonCode   byte
	ReasonString string
	// Filters are a SUBSCRIBE's or UNSUBSCRIBE's topic filters (an
	// UNSUBSCRIBE's carry the filter only).
	Filters []SubscriptionInfo
	// ReasonCodes are a SUBACK's or UNSUBACK's, one per filter.
	ReasonCodes []byte
	// SessionPresent is a CONNACK's Session Present flag.
	SessionPresent bool
	// UserProperties are the packet's MQTT 5 user properties.
	UserProperties []UserProperty
	// Properties holds the packet's other MQTT 5 properties that are set,
	// by their names in the specification in snake_case
	// ("message_expiry_interval", "content_type", "correlation_data" as
	// []byte, "subscription_identifier" as []int, ...); nil when none is.
	// Outbound, only what mochi's encoder writes. The authentication data,
	// a credential, is never in it: "authentication_data_set" is true
	// instead.
	Properties map[string]any

	// Username, KeepAlive, CleanStart and the will's topic, QoS and retain
	// flag are a CONNECT's; PasswordSet says that it carried a password
	// (its Password Flag, an empty password too), which is never part of
	// a TracedPacket.
	Username    string
	KeepAlive   uint16
	CleanStart  bool
	PasswordSet bool
	WillTopic   string
	WillQoS     byte
	WillRetain  bool
}

// packetTypeNames are the MQTT control packet types by number.
var packetTypeNames = [16]string{"", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

// PacketTypeName is the name of MQTT control packet type typ (1 to 15:
// "CONNECT" ... "AUTH"), or "" for another number.
func PacketTypeName(typ byte) string {
	if int(typ) >= len(packetTypeNames) {
		return ""
	}
	return packetTypeNames[typ]
}

// PacketTypeCode is the number of the packet type named name (as
// PacketTypeName spells it), and whether there is one.
func PacketTypeCode(name string) (byte, bool) {
	for i, n := range packetTypeNames {
		if n != "" && n == name {
			return byte(i), true
		}
	}
	return 0, false
}

// tapRef holds the installed tap; Server keeps a pointer to one, nil when
// there is none.
type tapRef struct{ t PacketTap }

// SetPacketTap installs t as the packet tap, replacing any other; nil
// removes it, after which packets cost one atomic load each. Packets being
// handled at that moment may still reach the tap that was installed. Safe
// to call at any time, from any goroutine.
func (s *Server) SetPacketTap(t PacketTap) {
	if t == nil {
		s.hook.tap.Store(nil)
		return
	}
	s.hook.tap.Store(&tapRef{t: t})
}

// asSent is what OnPacketRead may change in a packet before the tap sees
// it, kept as the client sent it: the packet id (renameInbound gives a
// client's flow an alias) and a CONNECT's Password Flag
// (keepEmptyPassword clears it for an empty password).
type asSent struct {
	packetID    uint16
	passwordSet bool
}

// sentAs is pk's asSent, taken before OnPacketRead changes anything.
func sentAs(pk *packets.Packet) asSent {
	return asSent{packetID: pk.PacketID, passwordSet: pk.Connect.PasswordFlag}
}

// tapRead offers pk, read from cl and handled by OnPacketRead, to the
// installed tap, with sent as the client sent it. It is small enough to
// be inlined: with no tap, a packet pays one atomic load and a nil test.
func (h *hook) tapRead(cl *mqtt.Client, pk *packets.Packet, sent asSent) {
	if h.tap.Load() != nil {
		h.offer(cl, pk, &sent)
	}
}

// tapWrite offers pk, about to be written to cl, to the installed tap;
// inlined like tapRead.
func (h *hook) tapWrite(cl *mqtt.Client, pk *packets.Packet) {
	if h.tap.Load() != nil {
		h.offer(cl, pk, nil)
	}
}

// offer runs the installed tap's prefilter on pk and hands it, decoded,
// to the tap if the prefilter takes it. sent is nil for a packet the
// broker writes.
func (h *hook) offer(cl *mqtt.Client, pk *packets.Packet, sent *asSent) {
	ref := h.tap.Load()
	if ref == nil { // removed since tapRead or tapWrite looked
		return
	}
	typ := pk.FixedHeader.Type
	id := cl.ID
	if typ == packets.Connect {
		id = pk.Connect.ClientIdentifier
	}
	if !ref.t.Takes(id, typ) {
		return
	}
	inbound := sent != nil
	if !inbound {
		sent = &asSent{packetID: pk.PacketID}
	}
	tp := h.tracedPacket(cl, pk, id, inbound, *sent)
	ref.t.Trace(&tp)
}

// tracedPacket decodes pk for a tap.
// Inbound, the packet id and Password Flag are sent's, and a PUBLISH
// carrying only a topic alias gets the topic the alias stands for
// (inboundTopic).
func (h *hook) tracedPacket(cl *mqtt.Client, pk *packets.Packet, id string, inbound bool, sent asSent) TracedPacket {
	typ := pk.FixedHeader.Type
	tp := TracedPacket{
		Time:            time.Now(),
		ClientID:        id,
		Inbound:         inbound,
		Type:            PacketTypeName(typ),
		TypeCode:        typ,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		PacketID:        sent.packetID,
	}
	if typ == packets.Connect {
		tp.ProtocolVersion = pk.ProtocolVersion
	}
	if tp.ProtocolVersion >= 5 { // 3.1.1 packets carry no properties on the wire
		tp.Properties = tracedProperties(pk, typ, inbound)
		// Outbound, mochi leaves out problem information when the client
		// asked for none (Mods.DisallowProblemInfo).
		if inbound || !pk.Mods.DisallowProblemInfo {
			if (onAcks|onConnack|onDisconnect|onAuth)&(1<<typ) != 0 {
				tp.ReasonString = pk.Properties.ReasonString
			}
			if onAllWithUser&(1<<typ) != 0 {
				for _, u := range pk.Properties.User {
					tp.UserProperties = append(tp.UserProperties, UserProperty{Key: u.Key, Value: u.Val})
				}
			}
		}
	}
	switch typ {
	case packets.Connect:
		c := &pk.Connect
		tp.Username = string(c.Username)
		tp.KeepAlive = c.Keepalive
		tp.CleanStart = c.Clean
		tp.PasswordSet = sent.passwordSet
		if c.WillFlag {
			tp.WillTopic, tp.WillQoS, tp.WillRetain = c.WillTopic, c.WillQos, c.WillRetain
		}
	case packets.Connack:
		tp.ReasonCode = pk.ReasonCode
		tp.SessionPresent = pk.SessionPresent
	case packets.Publish:
		tp.Topic = pk.TopicName
		if tp.Topic == "" && inbound && pk.Properties.TopicAliasFlag && pk.Properties.TopicAlias > 0 {
			tp.Topic = inboundTopic(cl, pk.Properties.TopicAlias)
		}
		tp.QoS = pk.FixedHeader.Qos
		tp.Retain = pk.FixedHeader.Retain
		tp.Dup = pk.FixedHeader.Dup
		tp.Payload = pk.Payload
		if tp.QoS == 0 {
			tp.PacketID = 0
		}
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		tp.ReasonCode = pk.ReasonCode
		// mochi writes an acknowledgement's reason code only when it is
		// an error or properties follow; left out, it reads as 0x00. (It
		// keeps the granted QoS, 0x01, in a success PUBACK.)
		if !inbound && tp.ReasonCode < 0x80 && tp.ReasonString == "" && len(tp.UserProperties) == 0 {
			tp.ReasonCode = 0
		}
	case packets.Disconnect, packets.Auth:
		tp.ReasonCode = pk.ReasonCode
	case packets.Subscribe, packets.Unsubscribe:
		tp.Filters = make([]SubscriptionInfo, len(pk.Filters))
		for i, f := range pk.Filters {
			tp.Filters[i] = SubscriptionInfo{Filter: f.Filter, QoS: f.Qos, NoLocal: f.NoLocal,
				RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling, Identifier: f.Identifier}
			if typ == packets.Unsubscribe {
				tp.Filters[i] = SubscriptionInfo{Filter: f.Filter}
			}
		}
	case packets.Suback, packets.Unsuback:
		tp.ReasonCodes = pk.ReasonCodes
	}
	return tp
}

// Packet types that may carry each MQTT 5 property (specification
// 2.2.2.2), as bits 1<<type: a property mochi holds in a packet that may
// not carry it (a PUBACK inherits the PUBLISH's expiry) is not on the wire.
const (
	onPublish     = 1 << packets.Publish
	onConnect     = 1 << packets.Connect
	onConnack     = 1 << packets.Connack
	onDisconnect  = 1 << packets.Disconnect
	onAuth        = 1 << packets.Auth
	onSubscribe   = 1 << packets.Subscribe
	onAcks        = 1<<packets.Puback | 1<<packets.Pubrec | 1<<packets.Pubrel | 1<<packets.Pubcomp | 1<<packets.Suback | 1<<packets.Unsuback
	onAllWithUser = onPublish | onConnect | onConnack | onDisconnect | onAuth | onSubscribe | onAcks | 1<<packets.Unsubscribe
)

// tracedProperties returns the MQTT 5 properties of pk, a packet of type
// typ, other than the reason string and user properties, that go on the
// wire, by their snake_case specification names; nil when there are none.
func tracedProperties(pk *packets.Packet, typ byte, inbound bool) map[string]any {
	p := &pk.Properties
	var m map[string]any
	// Outbound, mochi writes the request/response properties only when
	// the client asked for them (Mods.AllowResponseInfo).
	response := inbound || pk.Mods.AllowResponseInfo
	set := func(on int, name string, v any) {
		if on&(1<<typ) == 0 {
			return
		}
		if m == nil {
			m = map[string]any{}
		}
		m[name] = v
	}
	if p.PayloadFormatFlag {
		set(onPublish, "payload_format_indicator", p.PayloadFormat)
	}
	if p.MessageExpiryInterval != 0 {
		set(onPublish, "message_expiry_interval", p.MessageExpiryInterval)
	}
	if p.ContentType != "" {
		set(onPublish, "content_type", p.ContentType)
	}
	if p.ResponseTopic != "" && response && (inbound || !strings.ContainsAny(p.ResponseTopic, "+#")) {
		set(onPublish, "response_topic", p.ResponseTopic)
	}
	if len(p.CorrelationData) > 0 && response {
		set(onPublish, "correlation_data", p.CorrelationData)
	}
	if ids := subscriptionIDs(p.SubscriptionIdentifier); len(ids) > 0 {
		set(onPublish|onSubscribe, "subscription_identifier", ids)
	}
	if p.SessionExpiryIntervalFlag {
		set(onConnect|onConnack|onDisconnect, "session_expiry_interval", p.SessionExpiryInterval)
	}
	if p.AssignedClientID != "" {
		set(onConnack, "assigned_client_identifier", p.AssignedClientID)
	}
	if p.ServerKeepAliveFlag {
		set(onConnack, "server_keep_alive", p.ServerKeepAlive)
	}
	if p.AuthenticationMethod != "" {
		set(onConnect|onConnack|onAuth, "authentication_method", p.AuthenticationMethod)
	}
	if len(p.AuthenticationData) > 0 {
		// A credential, like the password: only that it is there.
		set(onConnect|onConnack|onAuth, "authentication_data_set", true)
	}
	if p.RequestProblemInfoFlag {
		set(onConnect, "request_problem_information", p.RequestProblemInfo)
	}
	if p.RequestResponseInfo != 0 {
		set(onConnect, "request_response_information", p.RequestResponseInfo)
	}
	if p.ResponseInfo != "" && response {
		set(onConnack, "response_information", p.ResponseInfo)
	}
	if p.ServerReference != "" {
		set(onConnack|onDisconnect, "server_reference", p.ServerReference)
	}
	if p.ReceiveMaximum != 0 {
		set(onConnect|onConnack, "receive_maximum", p.ReceiveMaximum)
	}
	if p.TopicAliasMaximum != 0 {
		set(onConnect|onConnack, "topic_alias_maximum", p.TopicAliasMaximum)
	}
	if p.TopicAliasFlag && p.TopicAlias > 0 {
		set(onPublish, "topic_alias", p.TopicAlias)
	}
	if p.MaximumQosFlag && (inbound || p.MaximumQos < 2) {
		set(onConnack, "maximum_qos", p.MaximumQos)
	}
	if p.RetainAvailableFlag {
		set(onConnack, "retain_available", p.RetainAvailable)
	}
	if p.MaximumPacketSize != 0 {
		set(onConnect|onConnack, "maximum_packet_size", p.MaximumPacketSize)
	}
	if p.WildcardSubAvailableFlag {
		set(onConnack, "wildcard_subscription_available", p.WildcardSubAvailable)
	}
	if p.SubIDAvailableFlag {
		set(onConnack, "subscription_identifier_available", p.SubIDAvailable)
	}
	if p.SharedSubAvailableFlag {
		set(onConnack, "shared_subscription_available", p.SharedSubAvailable)
	}
	return m
}

// subscriptionIDs is ids without the zeros, which mochi's encoder leaves
// out (a zero means "no identifier"); ids itself when it has none.
func subscriptionIDs(ids []int) []int {
	for i, v := range ids {
		if v <= 0 {
			out := append([]int(nil), ids[:i]...)
			for _, v := range ids[i+1:] {
				if v > 0 {
					out = append(out, v)
				}
			}
			return out
		}
	}
	return ids
}

// inboundTopic is the topic that topic alias a, sent by cl, stands for,
// as mochi's Inbound aliases hold it ("" when unknown). The lookup stores
// "" for an alias the client never defined, which mochi does itself just
// after. (Outbound, the broker uses no topic aliases: see takeSendQuota.)
func inboundTopic(cl *mqtt.Client, a uint16) string {
	if in := cl.State.TopicAliases.Inbound; in != nil {
		return in.Set(a, "")
	}
	return ""
}
