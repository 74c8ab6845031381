package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/store"
)

// This file converts between mochi's packets and the store's records. The
// store knows nothing of mochi; only the broker does.

// sessionRecord is the stored form of cl's session.
func sessionRecord(cl *mqtt.Client, disconnectedAt int64) *store.Session {
	s := sessionRecordNoWill(cl, disconnectedAt)
	// The will, while it is pending: mochi clears it once sent or after a
	// clean DISCONNECT. A broker killed while the client was connected
	// publishes it at restart (see restore).
	if w := &cl.Properties.Will; atomic.LoadUint32(&w.Flag) == 1 && disconnectedAt == 0 {
		s.Will = &store.Will{Topic: w.TopicName, Payload: w.Payload, QoS: w.Qos, Retain: w.Retain, DelaySeconds: w.WillDelayInterval}
		for _, u := range w.User {
			s.Will.Properties.User = append(s.Will.Properties.User, store.UserProperty{Key: u.Key, Value: u.Val})
		}
	}
	return s
}

// sessionRecordNoWill is sessionRecord without the will, which it does not
// read: mochi clears the will at a clean DISCONNECT on the client's
// goroutine without a lock, so only that goroutine may read it.
func sessionRecordNoWill(cl *mqtt.Client, disconnectedAt int64) *store.Session {
	p := &cl.Properties
	s := &store.Session{
		ClientID:          cl.ID,
		Username:          p.Username,
		Listener:          cl.Net.Listener,
		Remote:            cl.Net.Remote,
		ProtocolVersion:   p.ProtocolVersion,
		Clean:             p.Clean,
		SessionExpiry:     p.Props.SessionExpiryInterval,
		SessionExpirySet:  p.Props.SessionExpiryIntervalFlag,
		ReceiveMaximum:    inflightWindow(cl),
		TopicAliasMaximum: p.Props.TopicAliasMaximum,
		MaximumPacketSize: p.Props.MaximumPacketSize,
		DisconnectedAt:    disconnectedAt,
	}
	for _, u := range p.Props.User {
		s.UserProperties = append(s.UserProperties, store.UserProperty{Key: u.Key, Value: u.Val})
	}
	return s
}

// subscriptionRecord is the stored form of one subscription of client.
func subscriptionRecord(client string, sub packets.Subscription) *store.Subscription {
	return &store.Subscription{
		ClientID:          client,
		Filter:            sub.Filter,
		QoS:               sub.Qos,
		NoLocal:           sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished,
		RetainHandling:    sub.RetainHandling,
		Identifier:        sub.Identifier,
	}
}

// subscriptionPacket is the reverse of subscriptionRecord.
func subscriptionPacket(s *store.Subscription) packets.Subscription {
	return packets.Subscription{
		Filter:            s.Filter,
		Qos:               s.QoS,
		NoLocal:           s.NoLocal,
		RetainAsPublished: s.RetainAsPublished,
		RetainHandling:    s.RetainHandling,
		Identifier:        s.Identifier,
	}
}

// messageRecord is the stored form of an in-flight, retained or pending
// message; client is its owner (empty for pending).
func messageRecord(client string, pk *packets.Packet) *store.Message {
	pp := &pk.Properties
	m := &store.Message{
		ClientID: client,
		PacketID: pk.PacketID,
		Type:     pk.FixedHeader.Type,
		QoS:      pk.FixedHeader.Qos,
		Retain:   pk.FixedHeader.Retain,
		Dup:      pk.FixedHeader.Dup,
		Topic:    pk.TopicName,
		Payload:  pk.Payload,
		Origin:   pk.Origin,
		Created:  pk.Created,
		Expiry:   pk.Expiry,
		Properties: store.MessageProperties{
			PayloadFormat:    pp.PayloadFormat,
			PayloadFormatSet: pp.PayloadFormatFlag,
			MessageExpiry:    pp.MessageExpiryInterval,
			ContentType:      pp.ContentType,
			ResponseTopic:    pp.ResponseTopic,
			CorrelationData:  pp.CorrelationData,
			SubscriptionIDs:  pp.SubscriptionIdentifier,
		},
	}
	// Only a PUBLISH expires: mochi stamps acks with Expiry too, and a
	// negative Expiry is its "send when quota frees" marker.
	if m.Expiry < 0 || m.Type != packets.Publish {
		m.Expiry = 0
	}
	for _, u := range pp.User {
		m.Properties.User = append(m.Properties.User, store.UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
}

// messagePacket is the reverse of messageRecord.
func messagePacket(m *store.Message) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: m.Type, Qos: m.QoS, Retain: m.Retain, Dup: m.Dup},
		PacketID:    m.PacketID,
		TopicName:   m.Topic,
		Payload:     m.Payload,
		Origin:      m.Origin,
		Created:     m.Created,
		Expiry:      m.Expiry,
		Properties: packets.Properties{
			PayloadFormat:          m.Properties.PayloadFormat,
			PayloadFormatFlag:      m.Properties.PayloadFormatSet,
			MessageExpiryInterval:  m.Properties.MessageExpiry,
			ContentType:            m.Properties.ContentType,
			ResponseTopic:          m.Properties.ResponseTopic,
			CorrelationData:        m.Properties.CorrelationData,
			SubscriptionIdentifier: m.Properties.SubscriptionIDs,
		},
	}
	if pk.Expiry > 0 && m.Type == packets.Publish {
		pk.ProtocolVersion = 5 // see hook.OnPublish
	}
	for _, u := range m.Properties.User {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	return pk
}
