package propolis

import "time"

// Session attributes (ABI.md section 5, service "session_attributes"):
// small values kept per session in the broker's store. They survive
// restarts with their session (in sync durability also a kill) and are
// removed with it. Keys are 1 to 256 bytes of UTF-8, values at most 10,240
// bytes. Every extension sees every attribute of a session: prefix keys
// with the extension's id to keep them apart.

// Attribute is one session attribute.
type Attribute struct {
	Key   string
	Value []byte
	// Time is when it was written: the broker's clock for
	// PutSessionAttribute, the caller's for PutSessionAttributeIfNewer.
	Time time.Time
}

// SessionAttribute returns the value of key in the session of clientID.
// ErrNotFound: no such session or key.
func SessionAttribute(clientID, key string) ([]byte, error) {
	return withResult(func(out []byte) int32 { return svcSessionAttributeGet(clientID, key, out) })
}

// SessionAttributes returns every attribute of the session of clientID,
// sorted by key. ErrNotFound: no such session.
func SessionAttributes(clientID string) ([]Attribute, error) {
	res, err := withResult(func(out []byte) int32 { return svcSessionAttributeGetAll(clientID, out) })
	if err != nil {
		return nil, err
	}
	return decodeAttributes(res)
}

// PutSessionAttribute sets key to value in the session of clientID,
// stamped with the broker's clock, and returns once it is stored.
func PutSessionAttribute(clientID, key string, value []byte) error {
	return statusErr(svcSessionAttributePut(clientID, key, value))
}

// PutSessionAttributeIfNewer sets key to value only when t is later than
// the stored attribute's time (or equal, with orEqual), or when there is
// none. Concurrent calls from any instance or extension are serialised:
// the latest t wins whatever their order. It returns the value stored
// before the call (nil when there was none) and whether value replaced it.
func PutSessionAttributeIfNewer(clientID, key string, value []byte, t time.Time, orEqual bool) (previous []byte, replaced bool, err error) {
	var flags uint32
	if orEqual {
		flags = 1
	}
	res, err := withResult(func(out []byte) int32 {
		return svcSessionAttributePutIfNewer(clientID, key, value, t.UnixNano(), flags, out)
	})
	if err != nil {
		return nil, false, err
	}
	r := resultReader(res)
	replaced = r.u8() == 1
	had := r.u8() == 1
	prev := r.bytes()
	if r.err != nil {
		return nil, replaced, ErrInternal
	}
	if had && prev == nil {
		prev = []byte{}
	}
	return prev, replaced, nil
}

// RemoveSessionAttribute removes key from the session of clientID; a
// missing key is not an error.
func RemoveSessionAttribute(clientID, key string) error {
	return statusErr(svcSessionAttributeRemove(clientID, key))
}

// decodeAttributes reads the result of session_attribute_get_all and
// connection_attribute_get_all.
func decodeAttributes(res []byte) ([]Attribute, error) {
	r := resultReader(res)
	n := r.count(16)
	out := make([]Attribute, 0, n)
	for i := 0; i < n; i++ {
		a := Attribute{Key: r.str(), Value: r.bytes()}
		a.Time = time.Unix(0, int64(r.u64()))
		out = append(out, a)
	}
	if r.err != nil {
		return nil, ErrInternal
	}
	return out, nil
}
