package broker

import (
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file is the RetainedMessages service. It changes mochi's retained
// index directly (mochi's retainMessage is reached only through a publish)
// and writes the store itself, store first: an error leaves both as they
// were.

// retainLocks serialise PutRetained and DeleteRetained per topic (striped
// by hash), so that two calls on one topic leave the store and memory
// agreeing. A client's retained PUBLISH racing them does not take it:
// mochi and the hook order those themselves.
var retainLocks [64]sync.Mutex

func retainLock(topic string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	mu := &retainLocks[h.Sum32()%uint32(len(retainLocks))]
	mu.Lock()
	return mu.Unlock
}

// Retained implements RetainedMessages.
func (s *Server) Retained(topic string) (Message, bool) {
	pk, ok := s.mochi.Topics.Retained.Get(topic)
	now := time.Now().Unix()
	// mochi sweeps expired messages once a second; hide them meanwhile.
	if !ok || len(pk.Payload) == 0 || (pk.Expiry > 0 && pk.Expiry <= now) {
		return Message{}, false
	}
	m := messageOf(&pk, now)
	m.Retain = true
	return m, true
}

// PutRetained implements RetainedMessages. The message is stamped like a
// broker publish (an ordering key, its expiry) and kept as published by
// the inline client.
func (s *Server) PutRetained(m Message) error {
	if err := checkMessage(&m); err != nil {
		return fmt.Errorf("put retained %q: %w", m.Topic, err)
	}
	if len(m.Payload) == 0 {
		return fmt.Errorf("put retained %q: %w: empty payload (an empty retained message is a deletion: use DeleteRetained)", m.Topic, ErrInvalidArgument)
	}
	pk := s.messagePacket(&m)
	pk.FixedHeader.Retain = true
	pk.Origin = mqtt.InlineClientId
	pk.Created = s.hook.nextSeq()
	if exp := pk.Properties.MessageExpiryInterval; exp > 0 {
		pk.Expiry = time.Now().Unix() + int64(exp)
		pk.ProtocolVersion = 5 // mochi's sweeps honour Expiry on version 5 packets only
	}
	defer retainLock(m.Topic)()
	if err := s.persist.PutRetained(messageRecord(mqtt.InlineClientId, &pk), true); err != nil {
		return fmt.Errorf("put retained %q: %w", m.Topic, err)
	}
	s.mochi.Topics.RetainMessage(pk)
	s.hook.retained.sync(s.mochi.Topics, m.Topic)
	atomic.StoreInt64(&s.mochi.Info.Retained, int64(s.mochi.Topics.Retained.Len()))
	return nil
}

// CheckTopicName returns why t is not a topic name a client could publish
// to (empty, a wildcard, not UTF-8, a NUL, longer than 65,535 bytes),
// wrapping ErrInvalidArgument; nil for a topic name. Retained answers
// false for what is not one; callers that must tell the two apart check
// first.
func CheckTopicName(t string) error { return checkTopicName(t) }

// DeleteRetained implements RetainedMessages.
func (s *Server) DeleteRetained(topic string) error {
	if err := checkTopicName(topic); err != nil {
		return fmt.Errorf("delete retained %q: %w", topic, err)
	}
	defer retainLock(topic)()
	if err := s.persist.DeleteRetained(topic, true); err != nil {
		return fmt.Errorf("delete retained %q: %w", topic, err)
	}
	// An empty payload removes the topic's retained message.
	s.mochi.Topics.RetainMessage(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: topic})
	s.hook.retained.sync(s.mochi.Topics, topic)
	atomic.StoreInt64(&s.mochi.Info.Retained, int64(s.mochi.Topics.Retained.Len()))
	return nil
}
