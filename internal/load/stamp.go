package load

import (
	"encoding/binary"
	"time"
)

// StampSize is the smallest payload Stamp can write into: the first 8
// bytes carry the send time.
const StampSize = 8

// Stamp writes into payload's first StampSize bytes the time since base
// (little-endian nanoseconds): the timestamped payload of every latency
// load, which Latency reads back at the subscriber.
func Stamp(payload []byte, base time.Time) {
	binary.LittleEndian.PutUint64(payload, uint64(time.Since(base)))
}

// Latency returns how long ago, at now, a payload Stamp wrote with the same
// base was sent; false for a payload shorter than StampSize.
func Latency(payload []byte, base, now time.Time) (time.Duration, bool) {
	if len(payload) < StampSize {
		return 0, false
	}
	return now.Sub(base) - time.Duration(binary.LittleEndian.Uint64(payload)), true
}
