package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
)

// The record of an online session follows the session (step 7 of
// sessions.go; docs/cluster.md, "Replicated sessions").
//
// A claim writes the record online on this node with the state it
// resumed; a release writes the state the session left with. In between,
// the broker calls SessionChanged when a persistent session's
// subscriptions (or expiry) change, and this node writes the session's
// SessionSnapshot into the record, so that a node dying with its client
// connected hands over the subscriptions made during the connection too.
//
// Writes are coalesced per client id (recordSync): the first change
// schedules a write SyncDelay later; changes while it is scheduled fold
// into it (the snapshot is read when the write runs, so the latest state
// wins); a change while it runs schedules one more after it. So at most
// one write per client id is in flight, and a state is in the record at
// most SyncDelay plus one write after its change. At most maxClaims
// writes run at once on a node (syncSem, apart from the claims' slots).
//
// A write holds the client id's sessionKey.mu (so it is ordered with the
// claims and releases of this node) and updates the record only if it is
// online on this node, conditioned on the revision it read: a record
// another node claimed since, one released, deleted (invalidation) or
// absent is left alone. An unchanged state costs no write.

// syncDelay is how long after a session's first change its record is
// written (SyncDelay replaces it in tests).
const syncDelay = 200 * time.Millisecond

// syncTries bounds the revision conflicts one write retries: only another
// node's claim can make one, after which the write stops.
const syncTries = 3

// recordSync is the write of one client id's record, scheduled or
// running. Guarded by sessions.mu.
type recordSync struct {
	id      string
	timer   *time.Timer
	running bool // the write runs: a change sets again
	again   bool // changed while running: write once more after it
}

// sessionChanged is ClusterSessions.SessionChanged: it schedules the
// write of id's record, unless one is scheduled already. It does no I/O.
func (s *sessions) sessionChanged(id string) {
	key, err := clientKey(id)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	c := s.syncs[key]
	switch {
	case c == nil:
		c = &recordSync{id: id}
		s.syncs[key] = c
		c.timer = time.AfterFunc(s.o.SyncDelay, func() { s.runSync(key, c) })
	case c.running:
		c.again = true
	}
}

// runSync runs the write of c (key's), then schedules the next if the
// session changed meanwhile, or forgets c.
func (s *sessions) runSync(key string, c *recordSync) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	c.running = true
	s.mu.Unlock()
	sk := s.key(key)
	s.spawn(key, sk, func() {
		if _, err := s.syncRecord(c.id, key, sk); err != nil {
			s.o.Log.Warn("replicated session: record not updated while online; the release writes it", "client", c.id, "error", err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		c.running = false
		if c.again && !s.closed {
			c.again = false
			c.timer = time.AfterFunc(s.o.SyncDelay, func() { s.runSync(key, c) })
			return
		}
		delete(s.syncs, key)
	})
}

// syncRecord writes the broker's snapshot of id's session into its record
// (key's) if the record is online on this node and its state differs; it
// reports whether it wrote. sk is key's sessionKey, in use by the caller.
func (s *sessions) syncRecord(id, key string, sk *sessionKey) (bool, error) {
	if !s.o.On() {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessionOpTimeout)
	defer cancel()
	select {
	case s.syncSem <- struct{}{}:
		defer func() { <-s.syncSem }()
	case <-ctx.Done():
		return false, fmt.Errorf("%d record writes already running on this node: %w", maxClaims, ctx.Err())
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.releasing {
		return false, nil // the release writes the state
	}
	st, err := s.o.Broker.SessionSnapshot(id)
	if errors.Is(err, broker.ErrNoSession) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Session.SessionExpiry == 0 {
		return false, nil // ends with its connection: nothing to hand over
	}
	want, err := json.Marshal(&st)
	if err != nil {
		return false, err
	}
	for range syncTries {
		rec, rev, err := s.get(ctx, key)
		if err != nil {
			return false, err
		}
		if rec == nil || !rec.Online || rec.Node != s.o.Node {
			return false, nil // not this node's claim (any more)
		}
		if rec.State != nil && rec.Expiry == st.Session.SessionExpiry {
			if have, err := json.Marshal(rec.State); err == nil && bytes.Equal(have, want) {
				return false, nil
			}
		}
		nr := *rec
		nr.State, nr.Expiry = &st, st.Session.SessionExpiry
		_, err = s.put(ctx, key, rev, &nr)
		if !conflict(err) {
			if err != nil {
				return false, fmt.Errorf("write %s record: %w", SessionsBucket, err)
			}
			return true, nil
		}
	}
	return false, fmt.Errorf("write %s record: %d revision conflicts", SessionsBucket, syncTries)
}
