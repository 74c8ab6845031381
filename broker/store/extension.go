package store

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// extKey appends x NUL ext NUL key. Extension ids hold no NUL, so one
// extension's keys never fall inside another's range; keys themselves are
// arbitrary bytes.
func extKey(b []byte, ext, key string) []byte {
	return appendKey2(b, kindExtension, ext, key)
}

func checkExt(ext string) error {
	if ext == "" || hasNUL(ext) {
		return ErrInvalidName
	}
	return nil
}

// ExtensionGet returns a copy of the value stored by extension ext under
// key, and whether there was one. Extensions call it on demand; one pebble
// point read. It fails with ErrInvalidName when ext is empty or contains
// NUL, ErrClosed, or pebble's error.
func (s *Store) ExtensionGet(ext, key string) ([]byte, bool, error) {
	if err := checkExt(ext); err != nil {
		return nil, false, fmt.Errorf("get extension %q key %q: %w", ext, key, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, false, fmt.Errorf("get extension %q key %q: %w", ext, key, ErrClosed)
	}
	v, closer, err := s.db.Get(extKey(nil, ext, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get extension %q key %q: %w", ext, key, err)
	}
	out := append(make([]byte, 0, len(v)), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("get extension %q key %q: %w", ext, key, err)
	}
	return out, true, nil
}

// ExtensionPut stores value under key in extension ext's namespace,
// replacing any earlier value. One pebble write. It fails with
// ErrInvalidName, ErrClosed, ErrDiskFull or pebble's error.
func (s *Store) ExtensionPut(ext, key string, value []byte, durable bool) error {
	if err := checkExt(ext); err != nil {
		return fmt.Errorf("put extension %q key %q: %w", ext, key, err)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = extKey(sc.key, ext, key)
	if err := s.set(sc.key, value, durable, false); err != nil {
		return fmt.Errorf("put extension %q key %q: %w", ext, key, err)
	}
	return nil
}

// ExtensionDelete removes key from extension ext's namespace; a missing key
// is not an error. One pebble delete. It fails with ErrInvalidName,
// ErrClosed or pebble's error.
func (s *Store) ExtensionDelete(ext, key string, durable bool) error {
	if err := checkExt(ext); err != nil {
		return fmt.Errorf("delete extension %q key %q: %w", ext, key, err)
	}
	sc := getScratch()
	defer putScratch(sc)
	sc.key = extKey(sc.key, ext, key)
	if err := s.del(sc.key, durable); err != nil {
		return fmt.Errorf("delete extension %q key %q: %w", ext, key, err)
	}
	return nil
}

// ExtensionKeys returns, sorted, every key of extension ext that starts
// with prefix ("" for all). It scans that key range once. It fails with
// ErrInvalidName, ErrClosed or pebble's error.
func (s *Store) ExtensionKeys(ext, prefix string) (keys []string, err error) {
	if err := checkExt(ext); err != nil {
		return nil, fmt.Errorf("list extension %q keys %q: %w", ext, prefix, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, fmt.Errorf("list extension %q keys %q: %w", ext, prefix, ErrClosed)
	}
	lo := extKey(nil, ext, prefix)
	hi := prefixUpperBound(lo)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("list extension %q keys %q: %w", ext, prefix, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			keys, err = nil, fmt.Errorf("list extension %q keys %q: %w", ext, prefix, cerr)
		}
	}()
	skip := len(extKey(nil, ext, ""))
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Key()[skip:]))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("list extension %q keys %q: %w", ext, prefix, err)
	}
	return keys, nil
}

// ExtensionKeysAfter returns, sorted, at most limit keys of extension ext
// that start with prefix and sort after after ("" starts at the first),
// and more, true when further keys match. A caller pages through a large
// range by passing the last key it got as the next after. It reads one
// consistent view, limit+1 keys at most. limit must be at least 1. It
// fails with ErrInvalidName, ErrClosed or pebble's error.
func (s *Store) ExtensionKeysAfter(ext, prefix, after string, limit int) (keys []string, more bool, err error) {
	if err := checkExt(ext); err != nil {
		return nil, false, fmt.Errorf("list extension %q keys %q after %q: %w", ext, prefix, after, err)
	}
	if limit < 1 {
		return nil, false, fmt.Errorf("list extension %q keys %q after %q: limit %d below 1", ext, prefix, after, limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, false, fmt.Errorf("list extension %q keys %q after %q: %w", ext, prefix, after, ErrClosed)
	}
	lo := extKey(nil, ext, prefix)
	hi := prefixUpperBound(lo)
	if after >= prefix {
		// The smallest key greater than after: after followed by a NUL.
		if start := append(extKey(nil, ext, after), 0); string(start) > string(lo) {
			lo = start
		}
	}
	if hi != nil && string(lo) >= string(hi) {
		return nil, false, nil // after is beyond every key with prefix
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, false, fmt.Errorf("list extension %q keys %q after %q: %w", ext, prefix, after, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			keys, more, err = nil, false, fmt.Errorf("list extension %q keys %q after %q: %w", ext, prefix, after, cerr)
		}
	}()
	skip := len(extKey(nil, ext, ""))
	for it.First(); it.Valid(); it.Next() {
		if len(keys) == limit {
			more = true
			break
		}
		keys = append(keys, string(it.Key()[skip:]))
	}
	if err := it.Error(); err != nil {
		return nil, false, fmt.Errorf("list extension %q keys %q after %q: %w", ext, prefix, after, err)
	}
	return keys, more, nil
}
