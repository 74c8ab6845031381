package broker

import (
	"fmt"
	"strings"
)

// This file is the ExtensionStore service, on the store's extension
// records (broker/store/extension.go: x NUL <extension id> NUL <key>).
// The key layout keeps every extension in its own range, and the store
// refuses ids holding NUL, so no id can reach into another's. Writes are
// durable: they block for one store write and, in sync mode, its fsync.

var _ ExtensionStore = (*Server)(nil)

// checkStorageExt refuses an extension id the store cannot keep apart.
func checkStorageExt(ext string) error {
	if ext == "" || strings.IndexByte(ext, 0) >= 0 {
		return fmt.Errorf("%w: extension id %q", ErrInvalidArgument, ext)
	}
	return nil
}

// checkStorageKey refuses a key beyond the documented limits.
func checkStorageKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidArgument)
	case len(key) > MaxStorageKeyLen:
		return fmt.Errorf("%w: key of %d bytes, at most %d", ErrInvalidArgument, len(key), MaxStorageKeyLen)
	}
	return nil
}

// StorageGet implements ExtensionStore.
func (s *Server) StorageGet(ext, key string) ([]byte, bool, error) {
	if err := checkStorageExt(ext); err != nil {
		return nil, false, fmt.Errorf("get storage key %q: %w", key, err)
	}
	if err := checkStorageKey(key); err != nil {
		return nil, false, fmt.Errorf("get storage key of %q: %w", ext, err)
	}
	v, ok, err := s.persist.ExtensionGet(ext, key)
	if err != nil {
		return nil, false, err // the store's error names the extension and key
	}
	return v, ok, nil
}

// StoragePut implements ExtensionStore.
func (s *Server) StoragePut(ext, key string, value []byte) error {
	if err := checkStorageExt(ext); err != nil {
		return fmt.Errorf("put storage key %q: %w", key, err)
	}
	if err := checkStorageKey(key); err != nil {
		return fmt.Errorf("put storage key of %q: %w", ext, err)
	}
	if len(value) > MaxStorageValueLen {
		return fmt.Errorf("put storage key %q of %q: %w: value of %d bytes, at most %d",
			key, ext, ErrInvalidArgument, len(value), MaxStorageValueLen)
	}
	return s.persist.ExtensionPut(ext, key, value, true)
}

// StorageDelete implements ExtensionStore.
func (s *Server) StorageDelete(ext, key string) error {
	if err := checkStorageExt(ext); err != nil {
		return fmt.Errorf("delete storage key %q: %w", key, err)
	}
	if err := checkStorageKey(key); err != nil {
		return fmt.Errorf("delete storage key of %q: %w", ext, err)
	}
	return s.persist.ExtensionDelete(ext, key, true)
}

// StorageKeys implements ExtensionStore.
func (s *Server) StorageKeys(ext, prefix, after string, limit int) ([]string, bool, error) {
	what := fmt.Sprintf("list storage keys %q after %q of %q", prefix, after, ext)
	if err := checkStorageExt(ext); err != nil {
		return nil, false, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case limit < 1 || limit > MaxStorageList:
		return nil, false, fmt.Errorf("%s: %w: limit %d out of range 1-%d", what, ErrInvalidArgument, limit, MaxStorageList)
	case len(prefix) > MaxStorageKeyLen || len(after) > MaxStorageKeyLen:
		return nil, false, fmt.Errorf("%s: %w: prefix or after longer than %d bytes", what, ErrInvalidArgument, MaxStorageKeyLen)
	}
	return s.persist.ExtensionKeysAfter(ext, prefix, after, limit)
}
