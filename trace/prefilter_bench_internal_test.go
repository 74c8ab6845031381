package trace

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
)

// BenchmarkPrefilter measures the running recordings' tap on one PUBLISH
// of client "sensor-1": Takes refusing it (a client pattern with another
// prefix, one with the same prefix that path.Match refuses, packet types
// without PUBLISH), and Takes plus Trace taking it (encoded as JSON and
// handed over to the recording's writer, which appends it to a real file
// in a temporary folder; what the writer cannot keep up with is dropped,
// reported as dropped/op).
func BenchmarkPrefilter(b *testing.B) {
	p := &broker.TracedPacket{Time: time.Now(), ClientID: "sensor-1", Inbound: true, Type: "PUBLISH", TypeCode: 3,
		ProtocolVersion: 5, PacketID: 7, Topic: "plant/a/temp", QoS: 1, Payload: []byte(`{"temp":21.5,"unit":"C","seq":123456}`),
		UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}}}
	for _, tc := range []struct {
		name string
		spec Spec
		take bool
	}{
		{"other-prefix", Spec{ClientID: "robot-*"}, false},
		{"same-prefix", Spec{ClientID: "sensor-[2-9]"}, false},
		{"other-types", Spec{Packets: []string{"SUBSCRIBE", "CONNECT"}}, false},
		{"taken", Spec{ClientID: "sensor-*", MaxSize: 1 << 40}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r, err := Open(b.TempDir(), Limits{MaxFileSize: 64 << 20, MaxTotalSize: 1 << 40}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			var installed broker.PacketTap
			r.Attach(tapperFunc(func(t broker.PacketTap) { installed = t }))
			rec, err := r.Start(tc.spec)
			if err != nil {
				b.Fatal(err)
			}
			tap := installed
			for b.Loop() {
				if tap.Takes(p.ClientID, p.TypeCode) {
					tap.Trace(p)
				}
			}
			got, _ := r.Get(rec.ID)
			b.ReportMetric(float64(got.Dropped)/float64(b.N), "dropped/op")
			if tc.take && (got.Packets == 0 || got.State != StateRecording) || !tc.take && got.Packets != 0 {
				b.Fatalf("recording %+v", got)
			}
		})
	}
}

// tapperFunc is a Tapper calling a function.
type tapperFunc func(broker.PacketTap)

func (f tapperFunc) SetPacketTap(t broker.PacketTap) { f(t) }
