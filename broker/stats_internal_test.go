package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestLatencyHistogram: each duration lands in the first bucket whose
// bound is not below it, the last one past every bound; the snapshot is
// cumulative with count and sum.
func TestLatencyHistogram(t *testing.T) {
	var h latencyHistogram
	bounds := LatencyBounds()
	if len(bounds) != latencyBuckets || bounds[0] != 32768*time.Nanosecond || bounds[len(bounds)-1] != time.Duration(1)<<30 {
		t.Fatalf("bounds %v", bounds)
	}
	in := []time.Duration{-1, 0, bounds[0], bounds[0] + 1, bounds[3], bounds[3] + 1, bounds[15], bounds[15] + 1, time.Hour}
	for _, d := range in {
		h.observe(d)
	}
	s := h.snapshot()
	want := map[int]uint64{0: 3, 1: 4, 2: 4, 3: 5, 4: 6, 14: 6, 15: 7}
	for i, w := range want {
		if s.Counts[i] != w {
			t.Errorf("cumulative count at %v = %d, want %d (all %v)", bounds[i], s.Counts[i], w, s.Counts)
		}
	}
	if s.Count != uint64(len(in)) {
		t.Errorf("count %d, want %d", s.Count, len(in))
	}
	var sum time.Duration
	for _, d := range in[1:] {
		sum += d
	}
	if s.Sum != sum {
		t.Errorf("sum %v, want %v", s.Sum, sum)
	}
}

// TestRecentMax: StoreWriteLatency's window is the current second and the
// one before.
func TestRecentMax(t *testing.T) {
	var r recentMax
	if got := r.get(100); got != 0 {
		t.Fatalf("empty: %v", got)
	}
	r.observe(100, 5*time.Millisecond)
	r.observe(100, 2*time.Millisecond)
	if got := r.get(100); got != 5*time.Millisecond {
		t.Errorf("same second: %v, want 5ms", got)
	}
	if got := r.get(101); got != 5*time.Millisecond {
		t.Errorf("next second: %v, want 5ms", got)
	}
	if got := r.get(102); got != 0 {
		t.Errorf("two seconds on: %v, want 0", got)
	}
	r.observe(101, time.Millisecond)
	if got := r.get(101); got != 5*time.Millisecond {
		t.Errorf("second 101 with 100's 5ms: %v", got)
	}
	if got := r.get(102); got != time.Millisecond {
		t.Errorf("second 102: %v, want 101's 1ms", got)
	}
	r.observe(105, 3*time.Millisecond) // a gap: 104 saw nothing
	if got := r.get(105); got != 3*time.Millisecond {
		t.Errorf("after a gap: %v, want 3ms", got)
	}
}

// TestPacketSize: the size on the wire of a packet from its remaining
// length, at each width of the length's encoding.
func TestPacketSize(t *testing.T) {
	for rem, want := range map[int]int{0: 2, 127: 129, 128: 131, 16383: 16386, 16384: 16388, 2097152: 2097157} {
		if got := packetSize(rem); got != want {
			t.Errorf("packetSize(%d) = %d, want %d", rem, got, want)
		}
	}
}

// TestTooLarge: a PUBLISH is too large exactly when mochi's encoding of it
// exceeds the client's Maximum Packet Size (mochi leaves out user
// properties that do not fit, [MQTT-3.1.2-25], so they never make it too
// large).
func TestTooLarge(t *testing.T) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", PacketID: 7,
		Payload: []byte("hello"), ProtocolVersion: 5}
	// 1 + 1 + (2+3) + 2 + 1 (no properties) + 5 = 15 bytes
	for max, want := range map[uint32]bool{0: false, 14: true, 15: false, 100000: false} {
		pk.Mods.MaxSize = max
		if got := tooLarge(pk); got != want {
			t.Errorf("max %d: tooLarge %v, want %v", max, got, want)
		}
	}
	pk.Mods.MaxSize = 8192
	pk.Payload = []byte(strings.Repeat("p", 8200))
	if !tooLarge(pk) {
		t.Error("an 8,200-byte payload under 8 KiB: not too large")
	}
	pk.Payload = []byte("hello")
	pk.Properties.User = []packets.UserProperty{{Key: "k", Val: strings.Repeat("v", 9000)}}
	if tooLarge(pk) {
		t.Error("9 KB of user properties, which mochi leaves out, under 8 KiB: too large")
	}
}

// BenchmarkCountMessage is the per-message cost of counting: one PUBLISH
// read and one written (countReceived, countWritten on the encoded 107-byte
// packet), serial and from every CPU at once (publishers on several cores
// share the QoS's counters). Built with -tags propolis_nometrics it
// measures the empty calls.
func BenchmarkCountMessage(b *testing.B) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Remaining: 105}}
	frame := append([]byte{0x30, 105}, make([]byte, 105)...)
	b.Run("serial", func(b *testing.B) {
		var s stats
		for i := 0; i < b.N; i++ {
			s.countReceived(&pk)
			s.countWritten(frame)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var s stats
		b.RunParallel(func(pb *testing.PB) {
			p := pk
			for pb.Next() {
				s.countReceived(&p)
				s.countWritten(frame)
			}
		})
	})
}

// TestCountWritten: the PUBLISH packets among whole packets, by QoS, with
// their sizes; other packets, markers (AUTH) and a torn tail not counted.
func TestCountWritten(t *testing.T) {
	if !countMessages {
		t.Skip("built with propolis_nometrics")
	}
	var s stats
	p := []byte{0x30, 2, 0, 0}         // QoS 0, 4 bytes
	p = append(p, 0x40, 2, 0, 1)       // PUBACK
	p = append(p, 0x3b, 4, 0, 0, 0, 1) // QoS 1, DUP, retain: 6 bytes
	p = append(p, 0xf0, 1, 0xff)       // a marker
	p = append(p, 0x34, 4, 0, 0, 0, 2) // QoS 2: 6 bytes
	p = append(p, 0x30, 200, 1, 0)     // torn
	s.countWritten(p)
	for q, want := range [3][2]uint64{{1, 4}, {1, 6}, {1, 6}} {
		if got := [2]uint64{s.sent[q].n.Load(), s.sent[q].bytes.Load()}; got != want {
			t.Errorf("QoS %d: %v, want %v", q, got, want)
		}
	}
}
