package propolis

// Storage (ABI.md section 5, service "storage"): a key-value store private
// to the extension, kept by the broker under the extension's id. Every
// instance shares it; it survives hot reloads of the same id and broker
// restarts (in sync durability also a kill). Keys are 1 to 1,024 bytes,
// values at most 1 MiB. The manifest must list "storage" under services.

// MaxStorageList is the most keys one StoredKeys call returns.
const MaxStorageList = 1000

// StoredValue returns the value of key in the extension's storage.
// ErrNotFound: no such key.
func StoredValue(key string) ([]byte, error) {
	return withResult(func(out []byte) int32 { return svcStorageGet(key, out) })
}

// PutStoredValue sets key to value, replacing any value, and returns once it
// is stored (in sync durability, on disk).
func PutStoredValue(key string, value []byte) error {
	return statusErr(svcStoragePut(key, value))
}

// RemoveStoredValue removes key; a missing key is not an error.
func RemoveStoredValue(key string) error {
	return statusErr(svcStorageRemove(key))
}

// StoredKeys returns, sorted, at most limit (1 to MaxStorageList) keys
// that start with prefix and sort after after ("" starts at the first),
// and whether more keys match. Page through many keys by passing the last
// key returned as the next after:
//
//	for after := ""; ; {
//		keys, more, err := propolis.StoredKeys("dev/", after, 100)
//		if err != nil { return err }
//		// use keys
//		if !more { break }
//		after = keys[len(keys)-1]
//	}
func StoredKeys(prefix, after string, limit int) (keys []string, more bool, err error) {
	if limit < 1 || limit > MaxStorageList {
		return nil, false, ErrInvalidArgument
	}
	res, err := withResult(func(out []byte) int32 { return svcStorageList(prefix, after, uint32(limit), out) })
	if err != nil {
		return nil, false, err
	}
	r := resultReader(res)
	n := r.count(4)
	keys = make([]string, 0, n)
	for i := 0; i < n; i++ {
		keys = append(keys, r.str())
	}
	more = r.u8() == 1
	if r.err != nil {
		return nil, false, ErrInternal
	}
	return keys, more, nil
}
