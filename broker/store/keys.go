package store

import (
	"encoding/binary"
	"strings"
)

// Key prefixes, one per record kind. Every key is the kind byte, a NUL, and
// the kind's fields separated by NUL; see the package documentation.
const (
	kindSession      = 's'
	kindSubscription = 'u'
	kindInflight     = 'i'
	kindRetained     = 'r'
	kindPending      = 'p'
	kindExtension    = 'x'
	kindAttribute    = 'a'
)

// hasNUL reports whether s contains U+0000, which MQTT forbids in client
// ids, topics and filters and which the key layout uses as its separator.
func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// appendKey1 appends kind, NUL, a.
func appendKey1(b []byte, kind byte, a string) []byte {
	b = append(b, kind, 0)
	return append(b, a...)
}

// appendKey2 appends kind, NUL, a, NUL, c.
func appendKey2(b []byte, kind byte, a, c string) []byte {
	b = append(b, kind, 0)
	b = append(b, a...)
	b = append(b, 0)
	return append(b, c...)
}

// appendInflightKey appends i NUL client NUL pid (2 bytes big-endian).
func appendInflightKey(b []byte, clientID string, pid uint16) []byte {
	b = append(b, kindInflight, 0)
	b = append(b, clientID...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint16(b, pid)
}

// appendPendingKey appends p NUL seq (8 bytes big-endian), so that keys
// sort by sequence number.
func appendPendingKey(b []byte, seq uint64) []byte {
	b = append(b, kindPending, 0)
	return binary.BigEndian.AppendUint64(b, seq)
}

// kindBounds returns the key range [lower, upper) that holds every record
// of one kind.
func kindBounds(kind byte) (lower, upper []byte) {
	return []byte{kind, 0}, []byte{kind, 1}
}

// clientBounds returns the key range [lower, upper) of all records of kind
// that belong to clientID: kind NUL client NUL ... . Because client ids hold
// no NUL, a client whose id extends another's ("a" and "ab") is outside the
// range.
func clientBounds(kind byte, clientID string) (lower, upper []byte) {
	lower = appendKey2(nil, kind, clientID, "")
	upper = append(append([]byte(nil), lower[:len(lower)-1]...), 1)
	return lower, upper
}

// prefixUpperBound returns the smallest key greater than every key that
// starts with p, or nil when there is none (p is all 0xff).
func prefixUpperBound(p []byte) []byte {
	u := append([]byte(nil), p...)
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] != 0xff {
			u[i]++
			return u[:i+1]
		}
	}
	return nil
}
