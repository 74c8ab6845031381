package trace_test

import (
	"testing"

	"github.com/propolis-mqtt/propolis/internal/load"
	"github.com/propolis-mqtt/propolis/trace"
)

// BenchmarkPublishPath measures the broker's publish path (one QoS 0
// publisher to one subscriber over loopback, 64-byte payloads, internal/load's
// Flow) with no recording (no tap: one atomic load per packet), with
// recordings that take nothing (refused by the prefilter: a client pattern
// matching no client, or packet types the traffic has none of), and with
// one recording taking every PUBLISH in and out (each encoded and
// written). b.N is the number of messages; compare ns/op and msgs/s.
func BenchmarkPublishPath(b *testing.B) {
	limits := trace.Limits{MaxFileSize: 64 << 20, MaxTotalSize: 64 << 30}
	for _, tc := range []struct {
		name string
		spec *trace.Spec
	}{
		{"no-recording", nil},
		{"non-matching-client", &trace.Spec{ClientID: "nobody-*"}},
		{"non-matching-type", &trace.Spec{Packets: []string{"AUTH"}}},
		{"matching-publish", &trace.Spec{ClientID: "bench-*", Packets: []string{"PUBLISH"}, MaxSize: 64 << 30}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, limits)
			var id string
			if tc.spec != nil {
				id = e.start(b, *tc.spec).ID
			}
			const payload = 64
			b.SetBytes(payload)
			b.ResetTimer()
			res, err := load.Flow{Addr: e.addr, Name: "bench", Topic: "bench/t", Publishers: 1, Subscribers: 1,
				Messages: b.N, QoS: 0, PayloadSize: payload}.Run()
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.Lost != 0 {
				b.Fatalf("%d of %d messages lost", res.Lost, b.N)
			}
			b.ReportMetric(res.Rate(), "msgs/s")
			if id != "" {
				r, _ := e.rec.Get(id)
				if r.State != trace.StateRecording {
					b.Fatalf("the recording stopped during the benchmark: %+v", r)
				}
				if tc.name == "matching-publish" && r.Packets+r.Dropped < 2*int64(b.N) {
					b.Fatalf("the recording took %d packets (%d dropped) of %d messages, want 2 per message", r.Packets, r.Dropped, b.N)
				}
				b.ReportMetric(float64(r.Dropped)/float64(b.N), "dropped/msg")
				if tc.name != "matching-publish" && r.Packets != 0 {
					b.Fatalf("the recording took %d packets", r.Packets)
				}
			}
		})
	}
}
