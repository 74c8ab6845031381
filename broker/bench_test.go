package broker_test

import (
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
)

// BenchmarkPublishThroughput measures PUBLISH packets/s from one publisher to
// one subscriber through the broker on loopback, with the native allow-all
// security: QoS 0, and QoS 1 in each durability mode (the publisher keeps a
// window of 256 unacknowledged messages; the subscriber's subscription is
// QoS 0 so the figure is the publish path).
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

// benchPublish runs brokertest.PublishLoad for b.N messages.
func benchPublish(b *testing.B, addr string, qos byte, publishers int) {
	payload := make([]byte, 64)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	if err := brokertest.PublishLoad(addr, "bench/t", qos, publishers, b.N, payload); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
