package broker

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// This file is the Publisher service, and the checks and conversions of a
// Message that RetainedMessages shares.

// Publish implements Publisher. The message goes through mochi's inline
// client (InjectPacket), the way restore re-publishes: the hook stamps its
// ordering key, mochi fans it out, and the hook stores the retained copy
// and the copies queued for persistent sessions, exactly as for a client's
// PUBLISH. mochi treats an inline publish as delivered once fanned out, so
// no pending record is written: Publish returns after the fan-out. With a
// cluster (Options.Cluster) the message is first forwarded to the other
// nodes; a QoS 1/2 message the cluster did not store is an error and is
// not published here either.
func (s *Server) Publish(m Message) error {
	if err := checkMessage(&m); err != nil {
		return fmt.Errorf("publish to %q: %w", m.Topic, err)
	}
	pk := s.messagePacket(&m)
	pk.FixedHeader.Retain = m.Retain
	if m.QoS > 0 {
		pk.PacketID = 1 // mochi's validation wants one; the inline client sends no ack
	}
	// mochi sets Expiry from the interval (its own cap is off, see
	// mochiOptions); the hook's stampInline marks it for mochi's sweeps.
	inline, ok := s.mochi.Clients.Get(mqtt.InlineClientId)
	if !ok {
		return fmt.Errorf("publish to %q: mochi has no inline client", m.Topic)
	}
	if err := s.hook.forward(&pk, ""); err != nil && m.QoS > 0 {
		return fmt.Errorf("publish to %q: %w", m.Topic, err)
	}
	if err := s.mochi.InjectPacket(inline, pk); err != nil {
		return fmt.Errorf("publish to %q: %w", m.Topic, err)
	}
	return nil
}

// PublishTo implements Publisher. mochi delivers only to every matching
// subscription (publishToSubscribers); its per-client step is unexported,
// so this does that step itself with mochi's exported parts (hook.sendCopy,
// retainparent.go). The copy carries no topic alias: a server may always
// send the topic name.
func (s *Server) PublishTo(clientID string, m Message) error {
	if err := checkMessage(&m); err != nil {
		return fmt.Errorf("publish to client %q, topic %q: %w", clientID, m.Topic, err)
	}
	if m.Retain {
		return fmt.Errorf("publish to client %q, topic %q: %w: a message to one client cannot be retained", clientID, m.Topic, ErrInvalidArgument)
	}
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return fmt.Errorf("publish to client %q: %w", clientID, ErrNoSession)
	}
	sub, ok := s.clientSubscription(clientID, m.Topic)
	if !ok {
		return fmt.Errorf("publish to client %q, topic %q: %w", clientID, m.Topic, ErrNotSubscribed)
	}
	if err := s.deliverTo(cl, sub, m, ""); err != nil {
		return fmt.Errorf("publish to client %q: %w", clientID, err)
	}
	return nil
}

// deliverTo sends m to cl alone under its subscription sub (PublishTo,
// DeliverShared, QueueSessionMessages): stamped as a new message, at the
// lower of m's and sub's QoS and the broker's maximum, with sub's
// subscription identifiers, publisher as its origin, and m's Retain flag
// only for a subscription with Retain As Published (PublishTo and
// DeliverShared pass none); dropped, as any delivery, when cl's read
// checks refuse it (its queue limit, a revoked filter). It returns the
// error of the write to cl's connection.
func (s *Server) deliverTo(cl *mqtt.Client, sub packets.Subscription, m Message, publisher string) error {
	pk := s.messagePacket(&m)
	pk.Origin = publisher
	pk.FixedHeader.Retain = m.Retain && sub.RetainAsPublished
	s.hook.stampPublish(&pk)
	pk.FixedHeader.Qos = min(m.QoS, sub.Qos, s.mochi.Options.Capabilities.MaximumQos)
	if len(sub.Identifiers) > 0 {
		for _, id := range sub.Identifiers {
			if id > 0 {
				pk.Properties.SubscriptionIdentifier = append(pk.Properties.SubscriptionIdentifier, id)
			}
		}
		sort.Ints(pk.Properties.SubscriptionIdentifier)
	} else if sub.Identifier > 0 {
		pk.Properties.SubscriptionIdentifier = []int{sub.Identifier}
	}
	// As for any delivery: the client's read checks (its own queue limit,
	// revoked filters) and the broker's queue limit drop the copy.
	if !s.hook.mayRead(cl, m.Topic) {
		return nil
	}
	return s.hook.sendCopy(cl, pk)
}

// clientSubscription returns the subscription of clientID that receives a
// message on topic: its own matching subscriptions merged (the highest
// QoS, every identifier), shared ones included, as mochi merges them for a
// delivery.
func (s *Server) clientSubscription(clientID, name string) (packets.Subscription, bool) {
	subs := s.mochi.Topics.Subscribers(name)
	sub, ok := subs.Subscriptions[clientID]
	for filter, group := range subs.Shared {
		if _, inner, _ := topic.SplitShared(filter); !topic.Match(inner, name) {
			continue // mochi's shared match lets '$' topics through (dollar.go)
		}
		if gs, in := group[clientID]; in {
			if !ok {
				sub, ok = gs, true
				continue
			}
			sub = sub.Merge(gs)
		}
	}
	return sub, ok
}

// messagePacket builds the PUBLISH of m, with its expiry interval capped by
// mqtt.max_message_expiry like a client's (see hook.stampPublish).
func (s *Server) messagePacket(m *Message) packets.Packet {
	exp := int64(m.MessageExpiry)
	if limit := s.hook.maxMsgExpiry(); limit > 0 && (exp == 0 || exp > limit) {
		exp = limit
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		Properties: packets.Properties{
			PayloadFormat:         m.PayloadFormat,
			PayloadFormatFlag:     m.PayloadFormat != 0,
			MessageExpiryInterval: uint32(exp),
			ContentType:           m.ContentType,
			ResponseTopic:         m.ResponseTopic,
			CorrelationData:       m.CorrelationData,
		},
	}
	for _, u := range m.UserProperties {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	return pk
}

// messageOf is the Message of a retained or queued packet at Unix time
// now: a copy, with the expiry interval that remains.
func messageOf(pk *packets.Packet, now int64) Message {
	p := &pk.Properties
	m := Message{
		Topic:           pk.TopicName,
		Payload:         append([]byte(nil), pk.Payload...),
		QoS:             pk.FixedHeader.Qos,
		Retain:          pk.FixedHeader.Retain,
		PayloadFormat:   p.PayloadFormat,
		ContentType:     p.ContentType,
		ResponseTopic:   p.ResponseTopic,
		CorrelationData: append([]byte(nil), p.CorrelationData...),
	}
	if pk.Expiry > 0 {
		m.MessageExpiry = uint32(max(pk.Expiry-now, 1))
	}
	for _, u := range p.User {
		m.UserProperties = append(m.UserProperties, UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
}

// checkMessage refuses a message MQTT could not carry; the error wraps
// ErrInvalidArgument.
func checkMessage(m *Message) error {
	if err := checkTopicName(m.Topic); err != nil {
		return err
	}
	if m.QoS > 2 {
		return fmt.Errorf("%w: QoS %d, want 0, 1 or 2", ErrInvalidArgument, m.QoS)
	}
	if m.PayloadFormat > 1 {
		return fmt.Errorf("%w: payload format %d, want 0 or 1", ErrInvalidArgument, m.PayloadFormat)
	}
	if m.ResponseTopic != "" {
		if err := checkTopicName(m.ResponseTopic); err != nil {
			return fmt.Errorf("response topic: %w", err)
		}
	}
	if err := checkString("content type", m.ContentType); err != nil {
		return err
	}
	if len(m.CorrelationData) > maxMQTTString {
		return fmt.Errorf("%w: correlation data of %d bytes, at most %d", ErrInvalidArgument, len(m.CorrelationData), maxMQTTString)
	}
	for _, u := range m.UserProperties {
		if err := checkString("user property key", u.Key); err != nil {
			return err
		}
		if err := checkString("user property value", u.Value); err != nil {
			return err
		}
	}
	return nil
}

// maxMQTTString is the longest string (or binary data) MQTT can carry.
const maxMQTTString = 65535

// checkString refuses what an MQTT UTF-8 string cannot hold: invalid UTF-8,
// U+0000, more than 65,535 bytes.
func checkString(what, v string) error {
	switch {
	case len(v) > maxMQTTString:
		return fmt.Errorf("%w: %s of %d bytes, at most %d", ErrInvalidArgument, what, len(v), maxMQTTString)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidArgument, what)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%w: %s contains U+0000", ErrInvalidArgument, what)
	}
	return nil
}

// checkTopicName refuses what is not a topic name: empty, a wildcard, or
// not an MQTT string.
func checkTopicName(t string) error {
	if t == "" {
		return fmt.Errorf("%w: empty topic", ErrInvalidArgument)
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("%w: topic %q has a wildcard", ErrInvalidArgument, t)
	}
	return checkString("topic", t)
}
