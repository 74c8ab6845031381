package load

import (
	"testing"
	"time"
)

// TestStampLatency: Latency reads back what Stamp wrote, as the time
// between the stamp and now, and refuses a payload too short to carry it.
func TestStampLatency(t *testing.T) {
	base := time.Now().Add(-time.Hour)
	p := make([]byte, 16)
	Stamp(p, base)
	sent := time.Now()
	lat, ok := Latency(p, base, sent.Add(250*time.Millisecond))
	if !ok || lat < 250*time.Millisecond || lat > 250*time.Millisecond+time.Minute {
		t.Errorf("Latency: %v %v, want a little over 250ms", lat, ok)
	}
	if _, ok := Latency(p[:StampSize-1], base, sent); ok {
		t.Error("Latency took a payload shorter than StampSize")
	}
}
