package broker_test

import (
	"fmt"
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

// benchPublish sends b.N messages from publishers connections and waits
// until the subscriber has them all.
func benchPublish(b *testing.B, addr string, qos byte, publishers int) {
	sub, err := brokertest.Dial(addr, "bench-sub")
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Subscribe("bench/t", 0); err != nil {
		b.Fatal(err)
	}
	pubs := make([]*brokertest.Conn, publishers)
	for i := range pubs {
		if pubs[i], err = brokertest.Dial(addr, fmt.Sprintf("bench-pub-%d", i)); err != nil {
			b.Fatal(err)
		}
		defer pubs[i].Close()
	}

	received := make(chan error, 1)
	go func() {
		for n := 0; n < b.N; {
			typ, _, err := sub.ReadPacket()
			if err != nil {
				received <- fmt.Errorf("subscriber read after %d: %w", n, err)
				return
			}
			if typ>>4 == 3 {
				n++
			}
		}
		received <- nil
	}()
	payload := make([]byte, 64)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	errs := make(chan error, publishers)
	for p, pub := range pubs {
		count := b.N / publishers
		if p == 0 {
			count += b.N % publishers
		}
		go func() { errs <- publishN(pub, qos, count, payload) }()
	}
	for range pubs {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	if err := <-received; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// publishN publishes count messages on one connection, keeping up to 256
// QoS 1 messages unacknowledged.
func publishN(pub *brokertest.Conn, qos byte, count int, payload []byte) error {
	window := make(chan struct{}, 256)
	acked := make(chan error, 1)
	if qos > 0 {
		go func() {
			for n := 0; n < count; n++ {
				typ, _, err := pub.ReadPacket()
				if err != nil || typ != 0x40 {
					acked <- fmt.Errorf("publisher: packet %#x after %d acks: %v", typ, n, err)
					return
				}
				<-window
			}
			acked <- nil
		}()
	}
	for i := 0; i < count; i++ {
		if qos > 0 {
			select {
			case window <- struct{}{}:
			default:
				_ = pub.Flush()
				window <- struct{}{}
			}
		}
		pub.Publish("bench/t", qos, uint16(i%65535+1), payload)
		if i%64 == 63 {
			_ = pub.Flush()
		}
	}
	if err := pub.Flush(); err != nil {
		return err
	}
	if qos > 0 {
		return <-acked
	}
	return nil
}
