package broker_test

import (
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/load"
)

// BenchmarkPublishThroughput measures PUBLISH packets/s from one publisher
// (or eight) to one subscriber through the broker on loopback, with the
// native allow-all security: QoS 0, and QoS 1 in each durability mode (a
// publisher keeps up to 256 messages unacknowledged; the subscriber's
// subscription is QoS 0 so the figure is the publish path). The load is
// internal/load's Flow, the one the benchmark harness runs.
func BenchmarkPublishThroughput(b *testing.B) {
	for _, tc := range []struct {
		name       string
		qos        byte
		mode       string
		publishers int
	}{
		{"qos0", 0, "sync", 1},
		{"qos1/sync", 1, "sync", 1},
		{"qos1/sync/8-publishers", 1, "sync", 8},
		{"qos1/periodic", 1, "periodic", 1},
		{"qos1/none", 1, "none", 1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig(b.TempDir())
			cfg.Durability.Mode = tc.mode
			_, addr := startServer(b, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
			benchPublish(b, addr, tc.qos, tc.publishers)
		})
	}
}

// benchPublish runs a load.Flow of b.N messages and fails if any is lost.
func benchPublish(b *testing.B, addr string, qos byte, publishers int) {
	const payload = 64
	b.SetBytes(payload)
	b.ResetTimer()
	res, err := load.Flow{Addr: addr, Name: "bench", Topic: "bench/t", Publishers: publishers, Subscribers: 1,
		Messages: b.N, QoS: qos, PayloadSize: payload, InFlight: 256}.Run()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Lost != 0 {
		b.Fatalf("%d of %d messages lost", res.Lost, b.N)
	}
	b.ReportMetric(res.Rate(), "msgs/s")
}
