package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/cockroachdb/pebble"
)

// Session attributes are key/value pairs an extension keeps per client
// session (the broker's SessionAttributes service). They live under
//
//	a NUL <client id> NUL <key>
//
// so that DeleteSession removes them with one range delete, and they exist
// only beside a session record: a write finds the record "s NUL <client
// id>" or fails with ErrNoSession, and DeleteSession and every attribute
// write of one client take the same lock (sessionLock), so no attribute
// outlives the session it was written for, whatever the interleaving.

// ErrNoSession means an attribute write found no session record for its
// client id: the session ended (or was never stored).
var ErrNoSession = errors.New("no session record")

// Attribute is one session attribute as stored: its key, its value and the
// time it was written with (Unix nanoseconds), which AttributePutIfNewer
// compares.
type Attribute struct {
	// Key names the attribute (1 to 256 bytes of UTF-8 at the broker's
	// service; the store refuses NUL).
	Key string
	// Value is the attribute's bytes.
	Value []byte
	// Time is when the value was written, Unix nanoseconds: what
	// AttributePutIfNewer compares.
	Time int64
}

// sessionLocks serialise, per client id, DeleteSession with the attribute
// writes of that client, and the read-compare-write of AttributePutIfNewer
// with other writes of the same client. Client ids are spread over the
// stripes by hash; two clients sharing a stripe only wait for each other.
// The stripes are shared by every Store of the process, which costs at
// most some waiting between stores that happen to be open at once (tests).
var sessionLocks [256]sync.Mutex

// sessionLock locks the stripe of clientID and returns its unlock. It is
// always taken before Store.mu, never after.
func sessionLock(clientID string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(clientID))
	mu := &sessionLocks[h.Sum32()%uint32(len(sessionLocks))]
	mu.Lock()
	return mu.Unlock
}

// attrKey appends a NUL client NUL key.
func attrKey(b []byte, clientID, key string) []byte {
	return appendKey2(b, kindAttribute, clientID, key)
}

// encodeAttribute appends the value of an attribute record: the record
// version, a flags byte (no flag yet), the time as a zig-zag varint, the
// client id and key (so that a value decodes alone), and the value.
func encodeAttribute(b []byte, clientID string, a *Attribute) []byte {
	b = append(b, recordVersion, 0)
	b = binary.AppendVarint(b, a.Time)
	b = appendStr(b, clientID)
	b = appendStr(b, a.Key)
	return appendBytes(b, a.Value)
}

// decodeAttribute decodes an attribute record value into a.
func decodeAttribute(b []byte, a *Attribute) error {
	d := decoder{b: b}
	d.version()
	_ = d.u8() // flags
	a.Time = d.varint()
	_ = d.str() // client id, also in the key
	a.Key = d.str()
	a.Value = d.bytes()
	if a.Value == nil && d.err == nil {
		a.Value = []byte{}
	}
	return d.err
}

// getLocked reads one key; found is false when it is missing. fn sees the
// value before pebble's buffer is released. The caller holds s.mu for
// reading and has checked s.db.
func (s *Store) getLocked(key []byte, fn func(v []byte) error) (found bool, err error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = fn(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	return true, err
}

// AttributeGet returns the attribute key of clientID's session and whether
// there is one. The value is the caller's own copy. It costs one pebble
// point read and takes no lock but the store's read lock. It fails with
// ErrInvalidName when clientID contains NUL, ErrClosed, an error wrapping
// ErrCorrupt when the record does not decode, or pebble's error.
func (s *Store) AttributeGet(clientID, key string) (Attribute, bool, error) {
	if hasNUL(clientID) {
		return Attribute{}, false, fmt.Errorf("get attribute %q of %q: %w", key, clientID, ErrInvalidName)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return Attribute{}, false, fmt.Errorf("get attribute %q of %q: %w", key, clientID, ErrClosed)
	}
	a, found, err := s.attributeLocked(clientID, key)
	if err != nil {
		return Attribute{}, false, fmt.Errorf("get attribute %q of %q: %w", key, clientID, err)
	}
	return a, found, nil
}

// attributeLocked reads one attribute; the caller holds s.mu for reading.
func (s *Store) attributeLocked(clientID, key string) (a Attribute, found bool, err error) {
	found, err = s.getLocked(attrKey(nil, clientID, key), func(v []byte) error {
		if derr := decodeAttribute(v, &a); derr != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, derr)
		}
		return nil
	})
	return a, found, err
}

// hasSessionLocked reports whether clientID has a session record; the
// caller holds s.mu for reading.
func (s *Store) hasSessionLocked(clientID string) (bool, error) {
	return s.getLocked(appendKey1(nil, kindSession, clientID), func([]byte) error { return nil })
}

// AttributePut stores a under clientID's session, replacing the earlier
// value of a.Key. The broker calls it for its SessionAttributes service,
// from any goroutine. It takes the client's session lock, checks that the
// session record exists and writes (one point read, one write; an fsync
// when durable in sync mode). It fails with ErrNoSession when there is no
// session record, ErrInvalidName when clientID contains NUL, ErrClosed, or
// pebble's error, and then writes nothing.
func (s *Store) AttributePut(clientID string, a Attribute, durable bool) error {
	if hasNUL(clientID) {
		return fmt.Errorf("put attribute %q of %q: %w", a.Key, clientID, ErrInvalidName)
	}
	defer sessionLock(clientID)()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.putAttributeLocked(clientID, &a, durable); err != nil {
		return fmt.Errorf("put attribute %q of %q: %w", a.Key, clientID, err)
	}
	return nil
}

// putAttributeLocked checks the session record and writes a; the caller
// holds the client's session lock and s.mu for reading.
func (s *Store) putAttributeLocked(clientID string, a *Attribute, durable bool) error {
	if s.db == nil {
		return ErrClosed
	}
	ok, err := s.hasSessionLocked(clientID)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNoSession
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = attrKey(sc.key, clientID, a.Key)
	sc.val = encodeAttribute(sc.val, clientID, a)
	if err := s.guard.admit(len(sc.key)+len(sc.val), false); err != nil {
		return err
	}
	defer s.timeWrite(s.writeStart())
	return s.db.Set(sc.key, sc.val, s.writeOpts(durable))
}

// AttributePutIfNewer stores a only when a.Time is later than the time of
// the stored value of a.Key (or equal, with orEqual), or when there is none.
// It returns the attribute stored before the call (had says whether there
// was one) and whether a replaced it. The read, comparison and write happen
// under the client's session lock, so concurrent callers are serialised:
// the value with the latest time wins whatever the order of the calls. Cost
// and errors are those of AttributePut; an error writes nothing.
func (s *Store) AttributePutIfNewer(clientID string, a Attribute, orEqual, durable bool) (prev Attribute, had, replaced bool, err error) {
	if hasNUL(clientID) {
		return Attribute{}, false, false, fmt.Errorf("put attribute %q of %q if newer: %w", a.Key, clientID, ErrInvalidName)
	}
	defer sessionLock(clientID)()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return Attribute{}, false, false, fmt.Errorf("put attribute %q of %q if newer: %w", a.Key, clientID, ErrClosed)
	}
	prev, had, err = s.attributeLocked(clientID, a.Key)
	if err != nil {
		return Attribute{}, false, false, fmt.Errorf("put attribute %q of %q if newer: %w", a.Key, clientID, err)
	}
	if had && (a.Time < prev.Time || (a.Time == prev.Time && !orEqual)) {
		return prev, true, false, nil
	}
	if err := s.putAttributeLocked(clientID, &a, durable); err != nil {
		return Attribute{}, false, false, fmt.Errorf("put attribute %q of %q if newer: %w", a.Key, clientID, err)
	}
	return prev, had, true, nil
}

// AttributeDelete removes the attribute key of clientID's session; a
// missing one (or a missing session) is not an error. One pebble delete
// under the client's session lock. It fails with ErrInvalidName, ErrClosed
// or pebble's error.
func (s *Store) AttributeDelete(clientID, key string, durable bool) error {
	if hasNUL(clientID) {
		return fmt.Errorf("delete attribute %q of %q: %w", key, clientID, ErrInvalidName)
	}
	defer sessionLock(clientID)()
	sc := getScratch()
	defer putScratch(sc)
	sc.key = attrKey(sc.key, clientID, key)
	if err := s.del(sc.key, durable); err != nil {
		return fmt.Errorf("delete attribute %q of %q: %w", key, clientID, err)
	}
	return nil
}

// AttributeList returns every attribute of clientID's session, sorted by
// key (nil when there is none). It scans the client's attribute range once,
// from one consistent view, taking no lock but the store's read lock. It
// fails with ErrInvalidName, ErrClosed, an error wrapping ErrCorrupt naming
// the key of a record that does not decode, or pebble's error.
func (s *Store) AttributeList(clientID string) (attrs []Attribute, err error) {
	if hasNUL(clientID) {
		return nil, fmt.Errorf("list attributes of %q: %w", clientID, ErrInvalidName)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, fmt.Errorf("list attributes of %q: %w", clientID, ErrClosed)
	}
	lo, hi := clientBounds(kindAttribute, clientID)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("list attributes of %q: %w", clientID, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			attrs, err = nil, fmt.Errorf("list attributes of %q: %w", clientID, cerr)
		}
	}()
	for it.First(); it.Valid(); it.Next() {
		v, verr := it.ValueAndErr()
		if verr != nil {
			return nil, fmt.Errorf("list attributes of %q: read %q: %w", clientID, it.Key(), verr)
		}
		var a Attribute
		if derr := decodeAttribute(v, &a); derr != nil {
			return nil, fmt.Errorf("list attributes of %q: decode %q: %w: %w", clientID, it.Key(), ErrCorrupt, derr)
		}
		attrs = append(attrs, a)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("list attributes of %q: %w", clientID, err)
	}
	return attrs, nil
}
