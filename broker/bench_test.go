package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/load"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
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

// BenchmarkPublishers measures the publisher side of ten publishers sending
// 100-byte PUBLISH packets to one topic that nobody subscribes to, with
// durability none: QoS 0 as fast as the socket takes them (the broker has
// read them all when each publisher's PINGREQ is answered), and QoS 1 one at
// a time, each waiting for its PUBACK. b.N is the number of messages in
// all. These are the shapes of the publish loads the benchmark harness
// compares with Mosquitto and plain mochi.
func BenchmarkPublishers(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			cfg := testConfig(b.TempDir())
			cfg.Durability.Mode = "none"
			_, addr := startServer(b, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
			benchPublishers(b, addr, qos)
		})
	}
}

// benchPublishers is BenchmarkPublishers on the broker at addr.
func benchPublishers(b *testing.B, addr string, qos byte) {
	const publishers, size = 10, 100
	conns := make([]*rawmqtt.Conn, publishers)
	for i := range conns {
		c, err := rawmqtt.Dial(addr, fmt.Sprintf("pub-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(poll.Timeout))
		b.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	payload := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	errs := make(chan error, publishers)
	for i, c := range conns {
		n := b.N / publishers
		if i == 0 {
			n += b.N % publishers
		}
		go func() { errs <- publishAll(c, qos, n, payload) }()
	}
	for range conns {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPublishIntercepted compares publishing with no Interceptors and
// with a Go implementation that intercepts and changes nothing: fan-in
// (BenchmarkPublishers' ten QoS 0 publishers, nobody subscribed) with the
// inbound interceptor, and one publisher to one subscriber (QoS 0,
// BenchmarkPublishThroughput's flow) with the outbound one. The Go
// implementation costs next to nothing itself, so the difference is what
// the broker does per intercepted packet (a Message built, changes
// compared); the Wasm host adds its call on top.
func BenchmarkPublishIntercepted(b *testing.B) {
	in := noopInterceptors(1 << broker.InterceptPublishInbound)
	out := noopInterceptors(1 << broker.InterceptPublishOutbound)
	for _, tc := range []struct {
		name  string
		ic    broker.Interceptors
		fanIn bool
	}{
		{"fan-in/qos0/none", nil, true},
		{"fan-in/qos0/noop-inbound", in, true},
		{"flow/qos0/none", nil, false},
		{"flow/qos0/noop-outbound", out, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig(b.TempDir())
			cfg.Durability.Mode = "none"
			_, addr := startServer(b, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}, Interceptors: tc.ic})
			if tc.fanIn {
				benchPublishers(b, addr, 0)
			} else {
				benchPublish(b, addr, 0, 1)
			}
		})
	}
}

// noopInterceptors intercepts at the points in its set and changes nothing.
type noopInterceptors broker.InterceptPoints

func (n noopInterceptors) Active() broker.InterceptPoints                  { return broker.InterceptPoints(n) }
func (noopInterceptors) InterceptConnect(context.Context, *broker.Connect) {}
func (noopInterceptors) InterceptConnack(broker.Peer, *broker.Connack)     {}
func (noopInterceptors) InterceptPublish(broker.Peer, *broker.Message) broker.Prevented {
	return broker.Prevented{}
}
func (noopInterceptors) InterceptDelivery(broker.Peer, string, *broker.Message) broker.Prevented {
	return broker.Prevented{}
}
func (noopInterceptors) WantsDelivery(string, string) bool { return true }
func (noopInterceptors) InterceptSubscribe(broker.Peer, *broker.Subscription) broker.Prevented {
	return broker.Prevented{}
}
func (noopInterceptors) InterceptDisconnect(broker.Peer, *broker.DisconnectPacket) {}

// publishAll sends n PUBLISH packets on c: QoS 0 in batches, then a
// PINGREQ whose answer says the broker read them all; QoS 1 one at a time,
// each acknowledged before the next.
func publishAll(c *rawmqtt.Conn, qos byte, n int, payload []byte) error {
	for i := range n {
		c.Publish("bench/publishers", qos, uint16(i%65535+1), payload)
		if qos == 0 && i%64 != 63 {
			continue
		}
		if err := c.Flush(); err != nil {
			return err
		}
		if qos == 1 {
			if typ, body, err := c.ReadPacket(); err != nil || typ != 0x40 || len(body) != 2 || int(body[0])<<8|int(body[1]) != i%65535+1 {
				return fmt.Errorf("PUBACK of message %d: packet %#x % x, %v", i, typ, body, err)
			}
		}
	}
	if qos == 1 {
		return nil
	}
	c.Pingreq()
	if err := c.Flush(); err != nil {
		return err
	}
	if typ, _, err := c.ReadPacket(); err != nil || typ != 0xd0 {
		return fmt.Errorf("PINGRESP: packet %#x, %v", typ, err)
	}
	return nil
}

// BenchmarkPubSubLatency measures the mean time from a QoS 1 PUBLISH to its
// delivery (QoS 1 subscription) with ten publisher/subscriber pairs, each
// on its own topic and one message at a time; durability none. b.N is the
// number of messages in all.
func BenchmarkPubSubLatency(b *testing.B) {
	cfg := testConfig(b.TempDir())
	cfg.Durability.Mode = "none"
	_, addr := startServer(b, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	const pairs = 10
	type pair struct{ pub, sub *rawmqtt.Conn }
	ps := make([]pair, pairs)
	for i := range ps {
		for _, c := range []**rawmqtt.Conn{&ps[i].pub, &ps[i].sub} {
			conn, err := rawmqtt.Dial(addr, fmt.Sprintf("lat-%d-%p", i, c))
			if err != nil {
				b.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(poll.Timeout))
			b.Cleanup(func() { _ = conn.Close() })
			*c = conn
		}
		if err := ps[i].sub.Subscribe(fmt.Sprintf("bench/lat/%d", i), 1); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, 100)
	b.ResetTimer()
	type result struct {
		total time.Duration
		n     int
		err   error
	}
	results := make(chan result, pairs)
	for i, p := range ps {
		n := b.N / pairs
		if i == 0 {
			n += b.N % pairs
		}
		go func() {
			var r result
			r.total, r.err = pingPong(p.pub, p.sub, fmt.Sprintf("bench/lat/%d", i), n, payload)
			r.n = n
			results <- r
		}()
	}
	var total time.Duration
	for range ps {
		r := <-results
		if r.err != nil {
			b.Fatal(r.err)
		}
		total += r.total
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/delivery")
}

// pingPong publishes n QoS 1 messages on topic from pub, each after the
// previous one reached sub, and returns the sum of the publish-to-delivery
// times. The publisher's PUBACKs are read after each delivery.
func pingPong(pub, sub *rawmqtt.Conn, topic string, n int, payload []byte) (time.Duration, error) {
	var total time.Duration
	for i := range n {
		id := uint16(i%65535 + 1)
		start := time.Now()
		pub.Publish(topic, 1, id, payload)
		if err := pub.Flush(); err != nil {
			return 0, err
		}
		typ, body, err := sub.ReadPacket()
		if err != nil || typ>>4 != 3 {
			return 0, fmt.Errorf("delivery %d: packet %#x, %v", i, typ, err)
		}
		total += time.Since(start)
		_, subID, got := rawmqtt.ParsePublish(typ, body)
		if len(got) != len(payload) {
			return 0, fmt.Errorf("delivery %d: %d bytes, want %d", i, len(got), len(payload))
		}
		sub.Puback(subID)
		if err := sub.Flush(); err != nil {
			return 0, err
		}
		if typ, _, err := pub.ReadPacket(); err != nil || typ != 0x40 {
			return 0, fmt.Errorf("PUBACK %d: packet %#x, %v", i, typ, err)
		}
	}
	return total, nil
}
