package store

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"
)

// Load reads every session, subscription, in-flight, retained and pending
// record from one consistent pebble snapshot. The broker calls it once at
// start-up; it costs a scan of the whole store and holds all records in
// memory. A record that does not decode fails the whole Load with an error
// wrapping ErrCorrupt and naming the key; every iterator is closed on every
// path.
func (s *Store) Load() (*Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, fmt.Errorf("load store %s: %w", s.dir, ErrClosed)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()

	out := &Snapshot{}
	err := scan(snap, kindSession, "session", func(k, v []byte) error {
		var r Session
		err := decodeSession(v, &r)
		out.Sessions = append(out.Sessions, r)
		return err
	})
	if err == nil {
		err = scan(snap, kindSubscription, "subscription", func(k, v []byte) error {
			var r Subscription
			err := decodeSubscription(v, &r)
			out.Subscriptions = append(out.Subscriptions, r)
			return err
		})
	}
	if err == nil {
		err = scan(snap, kindInflight, "in-flight", func(k, v []byte) error {
			var r Message
			err := decodeMessage(v, &r)
			out.Inflight = append(out.Inflight, r)
			return err
		})
	}
	if err == nil {
		err = scan(snap, kindRetained, "retained", func(k, v []byte) error {
			var r Message
			err := decodeMessage(v, &r)
			out.Retained = append(out.Retained, r)
			return err
		})
	}
	if err == nil {
		err = scan(snap, kindPending, "pending", func(k, v []byte) error {
			if len(k) != 10 {
				return fmt.Errorf("key length %d, want 10: %w", len(k), errTruncated)
			}
			r := PendingMessage{Seq: binary.BigEndian.Uint64(k[2:])}
			err := decodeMessage(v, &r.Message)
			out.Pending = append(out.Pending, r)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("load store %s: %w", s.dir, err)
	}
	// Keys already order everything but in-flight messages, which the
	// broker replays by Created within each client.
	slices.SortStableFunc(out.Inflight, func(a, b Message) int {
		if c := cmp.Compare(a.ClientID, b.ClientID); c != 0 {
			return c
		}
		return cmp.Compare(a.Created, b.Created)
	})
	return out, nil
}

// scan calls fn for every record of one kind, in key order. An error from
// fn is a decode error: scan wraps it with ErrCorrupt and the key.
func scan(r pebble.Reader, kind byte, what string, fn func(k, v []byte) error) (err error) {
	lo, hi := kindBounds(kind)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("scan %s records: %w", what, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("scan %s records: %w", what, cerr)
		}
	}()
	for it.First(); it.Valid(); it.Next() {
		v, verr := it.ValueAndErr()
		if verr != nil {
			return fmt.Errorf("read %s record %q: %w", what, it.Key(), verr)
		}
		if derr := fn(it.Key(), v); derr != nil {
			return fmt.Errorf("decode %s record %q: %w: %w", what, it.Key(), ErrCorrupt, derr)
		}
	}
	if ierr := it.Error(); ierr != nil {
		return fmt.Errorf("scan %s records: %w", what, ierr)
	}
	return nil
}
