package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// benchTap is a tap for BenchmarkTapPacket: Takes answers take at
// once (the prefilter's own cost is package trace's BenchmarkPrefilter);
// Trace counts.
type benchTap struct {
	take   bool
	traced int
}

func (t *benchTap) Takes(string, byte) bool { return t.take }

func (t *benchTap) Trace(p *TracedPacket) { t.traced += len(p.Payload) }

// BenchmarkTapPacket measures what the tap adds to each packet read or
// written (hook.tapRead, inlined as in OnPacketRead, on a 64-byte QoS 1 PUBLISH with a user
// property): with no tap, a tap whose prefilter refuses the packet, and
// one that takes it (decoded into a TracedPacket; the tap's own work,
// prefilter, encoding and writing, excluded).
func BenchmarkTapPacket(b *testing.B) {
	cl := &mqtt.Client{ID: "sensor-1"}
	cl.Properties.ProtocolVersion = 5
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", PacketID: 7,
		Payload: make([]byte, 64), Properties: packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}}}}
	for _, tc := range []struct {
		name string
		tap  *benchTap
	}{
		{"no-tap", nil},
		{"refused", &benchTap{}},
		{"taken", &benchTap{take: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := &hook{}
			if tc.tap != nil {
				h.tap.Store(&tapRef{t: tc.tap})
			}
			b.ReportAllocs()
			for b.Loop() {
				h.tapRead(cl, &pk, sentAs(&pk))
			}
			if tc.tap != nil && tc.tap.take && tc.tap.traced == 0 {
				b.Fatal("the tap saw nothing")
			}
			if tc.tap != nil && !tc.tap.take && tc.tap.traced != 0 {
				b.Fatal("the prefilter let packets through")
			}
		})
	}
}
