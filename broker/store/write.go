package store

import "fmt"

// set writes one key under the read lock, so that it cannot race Close,
// after the free-space guard admitted it (see space.go): a critical write
// (a session record, a queued copy of a message already acknowledged to its
// publisher) may use half of the reserve, new work (a pending publish, a
// subscription, a retained message, extension data) none of it. A refused
// write fails with ErrDiskFull and writes nothing.
func (s *Store) set(key, val []byte, durable, critical bool) error {
	if err := s.guard.admit(len(key)+len(val), critical); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	defer s.timeWrite(s.writeStart())
	return s.db.Set(key, val, s.writeOpts(durable))
}

// del deletes one key under the read lock.
func (s *Store) del(key []byte, durable bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	defer s.timeWrite(s.writeStart())
	return s.db.Delete(key, s.writeOpts(durable))
}

// PutSession stores sess under its client id, replacing any earlier
// record. The broker calls it on CONNECT and DISCONNECT; it costs one small
// pebble write (plus an fsync when durable in sync mode). It fails with
// ErrInvalidName when the client id contains NUL, ErrClosed after Close,
// or pebble's error.
func (s *Store) PutSession(sess *Session, durable bool) error {
	if hasNUL(sess.ClientID) {
		return fmt.Errorf("put session %q: %w", sess.ClientID, ErrInvalidName)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendKey1(sc.key, kindSession, sess.ClientID)
	sc.val = encodeSession(sc.val, sess)
	if err := s.set(sc.key, sc.val, durable, true); err != nil {
		return fmt.Errorf("put session %q: %w", sess.ClientID, err)
	}
	return nil
}

// DeleteSession removes the session of clientID together with all its
// subscriptions, in-flight messages and session attributes, in one atomic
// batch of one point delete and three range deletes, so its cost does not
// depend on how much the client had. The broker calls it when a session ends
// or expires. It holds the client's session lock (see attributes.go), so an
// attribute write of the same client either lands before it, and is
// deleted, or after it, and fails with ErrNoSession. Records of other
// clients, even one whose id extends clientID, are untouched. It fails with
// ErrInvalidName, ErrClosed or pebble's error, and then deletes nothing.
func (s *Store) DeleteSession(clientID string, durable bool) error {
	if hasNUL(clientID) {
		return fmt.Errorf("delete session %q: %w", clientID, ErrInvalidName)
	}
	defer sessionLock(clientID)()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return fmt.Errorf("delete session %q: %w", clientID, ErrClosed)
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Delete(appendKey1(nil, kindSession, clientID), nil)
	for _, kind := range []byte{kindSubscription, kindInflight, kindAttribute} {
		lo, hi := clientBounds(kind, clientID)
		_ = b.DeleteRange(lo, hi, nil)
	}
	start := s.writeStart()
	err := b.Commit(s.writeOpts(durable))
	s.timeWrite(start)
	if err != nil {
		return fmt.Errorf("delete session %q: %w", clientID, err)
	}
	return nil
}

// PutSubscription stores sub under its client id and filter, replacing an
// earlier subscription of the same client to the same filter. The broker
// calls it on SUBSCRIBE; one small write. It fails with ErrInvalidName when
// the client id or filter contains NUL, ErrClosed, or pebble's error.
func (s *Store) PutSubscription(sub *Subscription, durable bool) error {
	if hasNUL(sub.ClientID) || hasNUL(sub.Filter) {
		return fmt.Errorf("put subscription %q %q: %w", sub.ClientID, sub.Filter, ErrInvalidName)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendKey2(sc.key, kindSubscription, sub.ClientID, sub.Filter)
	sc.val = encodeSubscription(sc.val, sub)
	if err := s.set(sc.key, sc.val, durable, false); err != nil {
		return fmt.Errorf("put subscription %q %q: %w", sub.ClientID, sub.Filter, err)
	}
	return nil
}

// DeleteSubscription removes the subscription of clientID to filter; a
// missing one is not an error. The broker calls it on UNSUBSCRIBE; one
// small write. It fails with ErrInvalidName, ErrClosed or pebble's error.
func (s *Store) DeleteSubscription(clientID, filter string, durable bool) error {
	if hasNUL(clientID) || hasNUL(filter) {
		return fmt.Errorf("delete subscription %q %q: %w", clientID, filter, ErrInvalidName)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendKey2(sc.key, kindSubscription, clientID, filter)
	if err := s.del(sc.key, durable); err != nil {
		return fmt.Errorf("delete subscription %q %q: %w", clientID, filter, err)
	}
	return nil
}

// PutInflight stores an in-flight message under m.ClientID and m.PacketID,
// replacing the earlier state of that packet id. It is on the broker's hot
// path (every QoS 1/2 publish and acknowledgement): it encodes into pooled
// buffers and costs one pebble write. It fails with ErrInvalidName,
// ErrClosed, ErrDiskFull (below half of the reserve: it is a critical write)
// or pebble's error.
func (s *Store) PutInflight(m *Message, durable bool) error {
	if hasNUL(m.ClientID) {
		return fmt.Errorf("put in-flight %q %d: %w", m.ClientID, m.PacketID, ErrInvalidName)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendInflightKey(sc.key, m.ClientID, m.PacketID)
	sc.val = encodeMessage(sc.val, m)
	if err := s.set(sc.key, sc.val, durable, true); err != nil {
		return fmt.Errorf("put in-flight %q %d: %w", m.ClientID, m.PacketID, err)
	}
	return nil
}

// DeleteInflight removes the in-flight message of clientID with packetID;
// a missing one is not an error. Hot path, one pebble delete. It fails with
// ErrInvalidName, ErrClosed or pebble's error.
func (s *Store) DeleteInflight(clientID string, packetID uint16, durable bool) error {
	if hasNUL(clientID) {
		return fmt.Errorf("delete in-flight %q %d: %w", clientID, packetID, ErrInvalidName)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendInflightKey(sc.key, clientID, packetID)
	if err := s.del(sc.key, durable); err != nil {
		return fmt.Errorf("delete in-flight %q %d: %w", clientID, packetID, err)
	}
	return nil
}

// PutRetained stores the retained message of m.Topic, replacing the
// earlier one. The broker calls it for each retained publish; one write.
// It fails with ErrInvalidName, ErrClosed or pebble's error.
func (s *Store) PutRetained(m *Message, durable bool) error {
	if hasNUL(m.Topic) {
		return fmt.Errorf("put retained %q: %w", m.Topic, ErrInvalidName)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendKey1(sc.key, kindRetained, m.Topic)
	sc.val = encodeMessage(sc.val, m)
	if err := s.set(sc.key, sc.val, durable, false); err != nil {
		return fmt.Errorf("put retained %q: %w", m.Topic, err)
	}
	return nil
}

// DeleteRetained removes the retained message of topic; a missing one is
// not an error. One write. It fails with ErrInvalidName, ErrClosed or
// pebble's error.
func (s *Store) DeleteRetained(topic string, durable bool) error {
	if hasNUL(topic) {
		return fmt.Errorf("delete retained %q: %w", topic, ErrInvalidName)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendKey1(sc.key, kindRetained, topic)
	if err := s.del(sc.key, durable); err != nil {
		return fmt.Errorf("delete retained %q: %w", topic, err)
	}
	return nil
}

// PutPending stores a publish that was acknowledged to its sender but not
// yet fanned out; seq orders the pending publishes in Load. Hot path, one
// pebble write from pooled buffers. It fails with ErrClosed, ErrDiskFull
// (less free space than the reserve) or pebble's error.
func (s *Store) PutPending(seq uint64, m *Message, durable bool) error {
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendPendingKey(sc.key, seq)
	sc.val = encodeMessage(sc.val, m)
	if err := s.set(sc.key, sc.val, durable, false); err != nil {
		return fmt.Errorf("put pending %d: %w", seq, err)
	}
	return nil
}

// DeletePending removes the pending publish seq once it was fanned out; a
// missing one is not an error. Hot path, one pebble delete. It fails with
// ErrClosed or pebble's error.
func (s *Store) DeletePending(seq uint64, durable bool) error {
	sc := getScratch()
	defer putScratch(sc)
	sc.key = appendPendingKey(sc.key, seq)
	if err := s.del(sc.key, durable); err != nil {
		return fmt.Errorf("delete pending %d: %w", seq, err)
	}
	return nil
}
