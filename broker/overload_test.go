package broker_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/overload"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// stress is a stress level a test sets (Options.StressLevel); it counts
// the samples that read it.
type stress struct {
	level   atomic.Int64
	samples atomic.Int64
}

func (s *stress) read() float64 {
	s.samples.Add(1)
	return float64(s.level.Load())
}

// waitSamples waits until the sampling loop has read the level n more
// times.
func (s *stress) waitSamples(t *testing.T, n int64) {
	t.Helper()
	from := s.samples.Load()
	poll.Until(t, "stress samples", func() bool { return s.samples.Load() >= from+n })
}

// overloadConfig is testConfig with a fast sampling loop and a low floor,
// room for a flood's deliveries (queue, buffer), and a listener named
// "internal" whose overload protection is off.
func overloadConfig(t *testing.T) *config.Config {
	cfg := testConfig(t.TempDir())
	cfg.Overload.Interval = config.Duration(50 * time.Millisecond)
	cfg.Overload.MinClientRate = 16 << 10
	cfg.MQTT.MaxQueuedMessages = 65535
	cfg.MQTT.MaxOutboundBuffer = 256 << 20
	off := false
	cfg.Listeners = append(cfg.Listeners, config.Listener{Name: "internal", Type: "tcp", Address: "127.0.0.1:0", OverloadProtection: &off})
	return cfg
}

// startOverload runs a broker on cfg whose stress level is st's.
func startOverload(t *testing.T, cfg *config.Config, st *stress, ext broker.Extensions) *broker.Server {
	t.Helper()
	if ext.Authenticator == nil {
		ext.Authenticator = brokertest.AllowAll{}
	}
	opts := broker.Options{Config: cfg, Extensions: ext, Logger: testLogger(t)}
	if st != nil {
		opts.StressLevel = st.read
	}
	s, err := broker.New(opts)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// flood publishes QoS 1 messages of 512 bytes, each carrying its sequence
// number, as fast as the broker acknowledges them (at most window
// unacknowledged), until stop or max messages.
type flood struct {
	c      *brokertest.Conn
	acked  atomic.Int64 // PUBACKs read; the broker acknowledges in order, so seqs 0..acked-1
	pongs  atomic.Int64 // PINGRESPs read
	sent   atomic.Int64
	stop   chan struct{}
	done   chan struct{}
	failed atomic.Pointer[error]
}

const (
	floodWindow  = 64
	floodMax     = 2_000_000
	floodPayload = 512
)

// startFlood connects id to addr and starts its flood.
func startFlood(t *testing.T, addr, id, topic string) *flood {
	t.Helper()
	c, err := brokertest.Dial(addr, id)
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	f := &flood{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	credit := make(chan struct{}, floodWindow)
	for range floodWindow {
		credit <- struct{}{}
	}
	readerDone := make(chan struct{})
	go func() { // PUBACKs
		defer close(readerDone)
		for {
			typ, _, err := c.ReadPacket()
			if err != nil {
				return
			}
			switch typ {
			case 0x40:
				f.acked.Add(1)
				credit <- struct{}{}
			case 0xd0:
				f.pongs.Add(1)
			}
		}
	}()
	go func() {
		defer close(f.done)
		payload := make([]byte, floodPayload)
		deadline := time.Now().Add(2 * poll.Timeout)
		for seq := int64(0); seq < floodMax && time.Now().Before(deadline); seq++ {
			select {
			case <-f.stop:
				return
			case <-credit:
			case <-readerDone:
				return
			}
			binary.BigEndian.PutUint64(payload, uint64(seq))
			c.Publish(topic, 1, uint16(seq%65535)+1, payload)
			if len(credit) == 0 { // nothing more may go now: send what is buffered
				if err := c.Flush(); err != nil {
					f.failed.Store(&err)
					return
				}
			}
			f.sent.Add(1)
		}
	}()
	t.Cleanup(func() { f.halt(); _ = c.Drop() })
	return f
}

// halt stops publishing and flushes what was buffered.
func (f *flood) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
	_ = f.c.Flush()
}

// ping checks, once halted, that the flooder is still connected: a
// PINGREQ gets its PINGRESP (read by the flood's reader).
func (f *flood) ping(t *testing.T, who string) {
	t.Helper()
	from := f.pongs.Load()
	f.c.Pingreq()
	if err := f.c.Flush(); err != nil {
		t.Fatalf("%s: ping: %v", who, err)
	}
	poll.Until(t, who+"'s PINGRESP", func() bool { return f.pongs.Load() > from })
}

// rate waits for n more PUBACKs and returns the messages per second.
func (f *flood) rate(t *testing.T, n int64) float64 {
	t.Helper()
	from, start := f.acked.Load(), time.Now()
	poll.Until(t, "flood acknowledgements", func() bool { return f.acked.Load() >= from+n })
	return float64(f.acked.Load()-from) / time.Since(start).Seconds()
}

// sink subscribes at QoS 1 and records the sequence numbers it receives.
type sink struct {
	mu   sync.Mutex
	seen map[uint64]struct{}
}

func startSink(t *testing.T, addr, id, filter string) *sink {
	t.Helper()
	c, err := brokertest.Dial(addr, id)
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	if err := c.Subscribe(filter, 1); err != nil {
		t.Fatal(err)
	}
	s := &sink{seen: map[uint64]struct{}{}}
	go func() {
		for {
			typ, body, err := c.ReadPacket()
			if err != nil {
				return
			}
			if typ>>4 != 3 {
				continue
			}
			_, id, payload := c.ParsePublish(typ, body)
			if len(payload) >= 8 {
				s.mu.Lock()
				s.seen[binary.BigEndian.Uint64(payload)] = struct{}{}
				s.mu.Unlock()
			}
			if id != 0 {
				c.Puback(id)
				if c.Buffered() == 0 {
					if err := c.Flush(); err != nil {
						return
					}
				}
			}
		}
	}()
	t.Cleanup(func() { _ = c.Drop() })
	return s
}

// missing returns how many of the sequence numbers 0..n-1 s has not seen.
func (s *sink) missing(n int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m int64
	for i := range uint64(n) {
		if _, ok := s.seen[i]; !ok {
			m++
		}
	}
	return m
}

// latencies measures n publish-to-delivery round trips of a QoS 0 message
// from pub to sub (subscribed to topic), one at a time.
func latencies(t *testing.T, pub, sub *brokertest.Conn, topic string, n int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		pub.Publish(topic, 0, 0, []byte("ping"))
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		_ = sub.SetDeadline(time.Now().Add(poll.Timeout))
		for {
			typ, _, err := sub.ReadPacket()
			if err != nil {
				t.Fatalf("light subscriber: %v", err)
			}
			if typ>>4 == 3 {
				break
			}
		}
		out = append(out, time.Since(start))
	}
	return out
}

// median returns the middle of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// pingOK checks that c is still connected: a PINGREQ gets its PINGRESP.
func pingOK(t *testing.T, c *brokertest.Conn, who string) {
	t.Helper()
	c.Pingreq()
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: ping: %v", who, err)
	}
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	for {
		typ, _, err := c.ReadPacket()
		if err != nil {
			t.Fatalf("%s disconnected: %v", who, err)
		}
		if typ == 0xd0 {
			return
		}
	}
}

// TestOverloadThrottlesFlood: under stress, the one client flooding the
// broker is read more slowly (its rate falls, it is counted as
// throttled), another client's publish-to-delivery latency stays bounded,
// every message the flood had acknowledged reaches its subscriber, nobody
// is disconnected, and the throttling is lifted when the stress falls.
func TestOverloadThrottlesFlood(t *testing.T) {
	st := &stress{}
	cfg := overloadConfig(t)
	s := startOverload(t, cfg, st, broker.Extensions{})
	addr := s.Addr("tcp")

	lightPub, err := brokertest.Dial(addr, "light-pub")
	if err != nil {
		t.Fatal(err)
	}
	defer lightPub.Close()
	lightSub, err := brokertest.Dial(addr, "light-sub")
	if err != nil {
		t.Fatal(err)
	}
	defer lightSub.Close()
	if err := lightSub.Subscribe("light/t", 0); err != nil {
		t.Fatal(err)
	}
	baseline := latencies(t, lightPub, lightSub, "light/t", 20)

	sk := startSink(t, addr, "flood-sink", "flood/#")
	f := startFlood(t, addr, "flooder", "flood/x")
	before := f.rate(t, 2000)
	unthrottled := latencies(t, lightPub, lightSub, "light/t", 20)

	st.level.Store(10)
	poll.Until(t, "the flooder throttled", func() bool { return s.Overload().Throttling.Throttled == 1 })
	st.waitSamples(t, 16) // its bucket halves at each sample, down to the floor
	after := f.rate(t, 40)
	throttled := latencies(t, lightPub, lightSub, "light/t", 20)
	st.waitSamples(t, 3)
	if n := s.Overload().Throttling.Throttled; n != 1 {
		t.Errorf("%d clients throttled, want the flooder alone", n)
	}

	st.level.Store(0)
	poll.Until(t, "throttling lifted", func() bool { return s.Overload().Throttling.Throttled == 0 })
	recovered := f.rate(t, 2000)

	f.halt()
	poll.Until(t, "every publish acknowledged", func() bool { return f.acked.Load() == f.sent.Load() })
	if p := f.failed.Load(); p != nil {
		t.Fatalf("flood: %v", *p)
	}
	acked := f.acked.Load()
	poll.Until(t, "every acknowledged message delivered", func() bool { return sk.missing(acked) == 0 })
	f.ping(t, "flooder")
	pingOK(t, lightPub, "light publisher")
	if n := s.Counters().SlowConsumerDisconnects; n != 0 {
		t.Errorf("%d slow consumer disconnects", n)
	}

	stats := s.Overload().Throttling
	t.Logf("flood: %.0f msg/s before, %.0f msg/s throttled (%.4f of before), %.0f msg/s after release; %d acknowledged, all delivered; readers waited %v",
		before, after, after/before, recovered, acked, stats.Waited)
	t.Logf("light pub->sub latency (median/max of 20): no flood %v/%v, flood %v/%v, flood throttled %v/%v",
		median(baseline), slices.Max(baseline), median(unthrottled), slices.Max(unthrottled), median(throttled), slices.Max(throttled))

	if !(after < before/4) {
		t.Errorf("throttled flood rate %.0f msg/s, want well below the %.0f msg/s before", after, before)
	}
	if stats.Waited <= 0 {
		t.Errorf("readers waited %v, want > 0", stats.Waited)
	}
	// A generous bound: the light client is never throttled, and the flood,
	// throttled, no longer competes with it.
	if m := median(throttled); m > time.Second {
		t.Errorf("light client's median latency %v while the flood is throttled, want below 1s", m)
	}
}

// TestOverloadProtectionOff: a flood from a client of a listener with
// overload_protection: false, or whose authenticator set NoThrottling, is
// not throttled however high the stress; the same flood on a protected
// listener is.
func TestOverloadProtectionOff(t *testing.T) {
	st := &stress{}
	st.level.Store(10)
	cfg := overloadConfig(t)
	auth := &settingsAuth{settings: map[string]broker.ClientSettings{"exempt": {NoThrottling: true}}}
	s := startOverload(t, cfg, st, broker.Extensions{Authenticator: auth})

	internal := startFlood(t, s.Addr("internal"), "internal", "flood/a")
	exempt := startFlood(t, s.Addr("tcp"), "exempt", "flood/b")
	internal.rate(t, 1000)
	exempt.rate(t, 1000)
	st.waitSamples(t, 10)
	if n := s.Overload().Throttling.Throttled; n != 0 {
		t.Fatalf("%d clients throttled, want none (protection off)", n)
	}
	internal.halt()
	exempt.halt()
	internal.ping(t, "internal flooder")
	exempt.ping(t, "exempt flooder")

	protected := startFlood(t, s.Addr("tcp"), "protected", "flood/c")
	poll.Until(t, "the protected flooder throttled", func() bool { return s.Overload().Throttling.Throttled == 1 })
	protected.halt()
}

// settingsAuth allows every client, with the settings listed for its id.
type settingsAuth struct {
	brokertest.AllowAll
	settings map[string]broker.ClientSettings
}

func (a *settingsAuth) Authenticate(_ context.Context, c *broker.Connect) broker.AuthResult {
	return broker.AuthResult{Decision: broker.Allow, Client: brokertest.AllowAll{}, Settings: a.settings[c.ClientID]}
}

// publishAcked sends n QoS 1 PUBLISH packets of size bytes at once and
// waits for their n PUBACKs, returning how long that took.
func publishAcked(t *testing.T, c *brokertest.Conn, n, size int) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range n {
		c.Publish("limits/t", 1, uint16(i+1), make([]byte, size))
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	for got := 0; got < n; {
		typ, _, err := c.ReadPacket()
		if err != nil {
			t.Fatalf("after %d of %d PUBACKs: %v", got, n, err)
		}
		if typ == 0x40 {
			got++
		}
	}
	return time.Since(start)
}

// TestClientLimitsRates: client_limits.publish_rate and bytes_rate hold a
// client to them by reading it more slowly: every PUBLISH is acknowledged,
// none before the limit allows it (a lower bound the token bucket
// guarantees, whatever the machine's load), the hits are counted, and the
// client stays connected.
func TestClientLimitsRates(t *testing.T) {
	tests := []struct {
		name  string
		set   func(*config.ClientLimits)
		n     int
		size  int
		limit overload.Limit
		least time.Duration // the least time the limit allows for the n messages
	}{
		// A read is paid for after it is handed on (see outConn.Read), so
		// the burst and one read of mochi's 2 KiB buffer (about 70 of
		// these packets) go ahead: 210 at 100/s take at least 1.3 s.
		{"publish_rate", func(l *config.ClientLimits) { l.PublishRate, l.PublishBurst = 100, 10 }, 210, 16,
			overload.LimitPublishRate, 1 * time.Second},
		// 64 KiB/s with a 6.5 KiB burst; 96 packets of 1 KiB and headers,
		// less one 2 KiB read: at least 1.4 s.
		{"bytes_rate", func(l *config.ClientLimits) { l.BytesRate = 64 << 10 }, 96, 1 << 10,
			overload.LimitBytesRate, 1300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Overload.Enabled = false
			tt.set(&cfg.ClientLimits)
			s := startOverload(t, cfg, nil, broker.Extensions{})
			c, err := brokertest.Dial(s.Addr("tcp"), "limited")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			took := publishAcked(t, c, tt.n, tt.size)
			stats := s.Overload().Throttling
			t.Logf("%d messages of %d B acknowledged in %v; %d hits; waited %v", tt.n, tt.size, took, stats.Hit(tt.limit), stats.Waited)
			if took < tt.least {
				t.Errorf("%d messages acknowledged in %v, the limit allows no less than %v", tt.n, took, tt.least)
			}
			if stats.Hit(tt.limit) == 0 {
				t.Errorf("no %s hits counted", tt.limit)
			}
			pingOK(t, c, "limited client")
		})
	}
}

// TestThrottledReaderKeepsKeepalive: waiting for its bucket does not count
// against a client's keepalive. With a 1 s keepalive (a 1.5 s read
// deadline) and 1 KiB/s, packets of 3 KiB make the reader wait between the
// parts of a packet longer than the deadline; the client is not
// disconnected.
func TestThrottledReaderKeepsKeepalive(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Overload.Enabled = false
	cfg.MQTT.MaxKeepalive = config.Duration(time.Second)
	cfg.ClientLimits.BytesRate = 1 << 10
	s := startOverload(t, cfg, nil, broker.Extensions{})
	c, err := brokertest.Dial(s.Addr("tcp"), "slow-reader")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	took := publishAcked(t, c, 3, 3<<10)
	t.Logf("3 packets of 3 KiB acknowledged in %v; readers waited %v", took, s.Overload().Throttling.Waited)
	pingOK(t, c, "throttled client")
}

// TestThrottledWaitEndsAtDisconnect: a reader waiting for its bucket stops
// waiting when the broker ends its connection (a take-over here) and when
// the broker shuts down, rather than at the end of the wait (minutes at
// this rate).
func TestThrottledWaitEndsAtDisconnect(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Overload.Enabled = false
	cfg.ClientLimits.BytesRate = 1 << 10
	rules := &brokertest.Rules{}
	logs := &lockedBuffer{}
	opts := broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: rules, Events: rules},
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	s, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addr("tcp")

	stuck := func(id string) *brokertest.Conn {
		c, err := brokertest.Dial(addr, id)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 { // 256 KiB: 4 minutes at 1 KiB/s
			c.Publish("limits/t", 1, uint16(i+1), make([]byte, 64<<10))
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Drop() })
		return c
	}
	stuck("taken-over")
	stuck("at-shutdown")
	poll.Until(t, "both readers waiting", func() bool { return s.Overload().Throttling.Hit(overload.LimitBytesRate) >= 2 })

	again, err := brokertest.Dial(addr, "taken-over") // the broker closes the first connection
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	poll.Until(t, "the taken-over connection's end", func() bool {
		for _, e := range rules.Recorded() {
			if e.Kind == broker.EventDisconnect && e.ClientID == "taken-over" {
				return true
			}
		}
		return false
	})

	done := make(chan struct{})
	go func() { _ = s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(poll.Timeout):
		t.Fatal("Close did not return")
	}
	if l := logs.lines("clients still disconnecting"); len(l) != 0 {
		t.Errorf("Close waited for a throttled reader: %q", l)
	}
}

// TestMaxSubscriptions: client_limits.max_subscriptions refuses the
// filters beyond it, in packet order, with 0x97 quota exceeded for MQTT 5
// and 0x80 for MQTT 3.1.1; a filter the client has already is granted
// again; the refusals are counted.
func TestMaxSubscriptions(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.ClientLimits.MaxSubscriptions = 2
	s := startOverload(t, cfg, nil, broker.Extensions{})
	addr := s.Addr("tcp")

	c5 := v5Dial(t, addr, paho.ClientConfig{ClientID: "v5"})
	if _, err := c5.Connect(ctx5(t), &paho.Connect{ClientID: "v5", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	// paho returns the SUBACK with an error when a filter is refused.
	ack, _ := c5.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "a", QoS: 1}, {Topic: "b", QoS: 0}, {Topic: "c", QoS: 1}}})
	if ack == nil {
		t.Fatal("no SUBACK")
	}
	if want := []byte{1, 0, 0x97}; !slices.Equal(ack.Reasons, want) {
		t.Errorf("v5 SUBACK codes % x, want % x", ack.Reasons, want)
	}
	ack, _ = c5.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "a", QoS: 0}, {Topic: "d", QoS: 0}}})
	if ack == nil {
		t.Fatal("no SUBACK")
	}
	if want := []byte{0, 0x97}; !slices.Equal(ack.Reasons, want) {
		t.Errorf("v5 second SUBACK codes % x, want % x", ack.Reasons, want)
	}

	c3, err := brokertest.Dial(addr, "v3")
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	for _, f := range []string{"x", "y"} {
		if err := c3.Subscribe(f, 0); err != nil {
			t.Fatal(err)
		}
	}
	err = c3.Subscribe("z", 0)
	if err == nil || !strings.HasSuffix(err.Error(), "packet 0x90 00 01 80") {
		t.Errorf("third 3.1.1 subscription: %v, want a refusal with 0x80", err)
	}
	if n := s.Overload().Throttling.Hit(overload.LimitSubscriptions); n != 3 {
		t.Errorf("%d subscription limit hits, want 3", n)
	}
}

// TestThrottledAcksNotHeldBehindTheirRead: what a throttled read brought
// in goes to mochi at once; the reader pays for it before its next read.
// A client at 1 PUBLISH/s that sends 60 QoS 0 messages and then, in the
// same write, the PUBACKs of its two deliveries has them off its queue at
// once, not after the minute its 60 messages cost (meanwhile its queue
// would be full for that minute, and deliveries to it dropped).
func TestThrottledAcksNotHeldBehindTheirRead(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Overload.Enabled = false
	cfg.ClientLimits.PublishRate, cfg.ClientLimits.PublishBurst = 1, 1
	s := startOverload(t, cfg, nil, broker.Extensions{})
	addr := s.Addr("tcp")
	x, err := rawmqtt.DialV5(addr, "x", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if err := x.Subscribe("in/t", 1); err != nil {
		t.Fatal(err)
	}
	p, err := brokertest.Dial(addr, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 3 { // two fill x's window, the third waits behind it
		p.Publish("in/t", 1, uint16(i+1), []byte{byte(i)})
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = x.SetDeadline(time.Now().Add(2 * poll.Timeout))
	var ids []uint16
	for len(ids) < 2 {
		typ, body, err := x.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if typ&0xf0 == 0x30 {
			_, id, _ := x.ParsePublish(typ, body)
			ids = append(ids, id)
		}
	}
	for range 60 { // about a KiB, one read of mochi's 2 KiB buffer
		x.Publish("elsewhere", 0, 0, []byte("m"))
	}
	for _, id := range ids {
		x.Puback(id)
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	// mochi forgets the acknowledged deliveries (its queue, which
	// max_queued_messages bounds, shrinks) once it has the PUBACKs.
	poll.Until(t, "x's acknowledgements processed", func() bool {
		i, _ := s.Client("x")
		return i.Queued == 1
	})
	t.Logf("throttling %+v", s.Overload().Throttling)
	if h := s.Overload().Throttling.Hit(overload.LimitPublishRate); h == 0 {
		t.Error("the publish rate never applied")
	}
}

// TestThrottledReaderReadsAcksWhileOwing: a reader that owes its buckets
// a minute still reads the client's acknowledgements once deliveries wait
// behind the client's full window: x, at 1 PUBLISH/s, sends 60 QoS 0
// messages, then acknowledges the two deliveries that fill its window in
// a write of their own; mochi has them at once. The messages x sends
// after that still wait for the minute (the PINGREQ's answer behind them
// does not come back before it).
func TestThrottledReaderReadsAcksWhileOwing(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Overload.Enabled = false
	cfg.ClientLimits.PublishRate, cfg.ClientLimits.PublishBurst = 1, 1
	s := startOverload(t, cfg, nil, broker.Extensions{})
	addr := s.Addr("tcp")
	x, err := rawmqtt.DialV5(addr, "x", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if err := x.Subscribe("in/t", 1); err != nil {
		t.Fatal(err)
	}
	for range 60 {
		x.Publish("elsewhere", 0, 0, []byte("m"))
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "x's publishes charged", func() bool { return s.Overload().Throttling.Hit(overload.LimitPublishRate) >= 1 })
	p, err := brokertest.Dial(addr, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 3 {
		p.Publish("in/t", 1, uint16(i+1), []byte{byte(i)})
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = x.SetDeadline(time.Now().Add(2 * poll.Timeout))
	var ids []uint16
	for len(ids) < 2 {
		typ, body, err := x.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if typ&0xf0 == 0x30 {
			_, id, _ := x.ParsePublish(typ, body)
			ids = append(ids, id)
		}
	}
	poll.Until(t, "the third delivery held", func() bool { i, _ := s.Client("x"); return i.Queued == 3 })
	for _, id := range ids {
		x.Puback(id)
	}
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "x's acknowledgements processed", func() bool { i, _ := s.Client("x"); return i.Queued == 1 })

	// Not a way around the rate: a PUBLISH now waits for what x owes.
	x.Publish("elsewhere", 0, 0, []byte("m"))
	x.Pingreq()
	if err := x.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = x.SetDeadline(time.Now().Add(2 * time.Second))
	for {
		typ, _, err := x.ReadPacket()
		if err != nil {
			break // the deadline: no PINGRESP while x owes its minute
		}
		if typ == 0xd0 {
			t.Fatal("PINGRESP behind a PUBLISH came back while x owed its bucket most of a minute")
		}
	}
}

// TestMemorySignalOffLogged: with overload on and neither
// overload.memory_limit nor GOMEMLIMIT, the start says once that the
// memory signal is off; with a limit it says nothing.
func TestMemorySignalOffLogged(t *testing.T) {
	if overload.GoMemLimit() > 0 {
		t.Skip("GOMEMLIMIT is set")
	}
	const line = "the memory signal is off"
	_, _, out := startLogged(t, broker.Extensions{}, func(c *config.Config) { c.Overload.Enabled = true })
	if n := len(out.lines(line)); n != 1 {
		t.Errorf("%d lines %q at start without a memory limit, want 1", n, line)
	}
	_, _, out = startLogged(t, broker.Extensions{}, func(c *config.Config) {
		c.Overload.Enabled, c.Overload.MemoryLimit = true, 1<<30
	})
	if n := len(out.lines(line)); n != 0 {
		t.Errorf("%d lines %q with overload.memory_limit set, want 0", n, line)
	}
}

// TestMaxSubscriptionsCountsValidOnly: a filter mochi refuses in the same
// SUBSCRIBE takes no room; and the Subscriptions service (extensions'
// subscription_add) is held to the same limit, with ErrTooLarge.
func TestMaxSubscriptionsCountsValidOnly(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.ClientLimits.MaxSubscriptions = 2
	s := startOverload(t, cfg, nil, broker.Extensions{})
	c, err := brokertest.Dial(s.Addr("tcp"), "v3")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := []byte{0, 7}
	for _, f := range []string{"a/#/b", "a", "b"} { // the first is not a filter
		body = append(body, 0, byte(len(f)))
		body = append(body, f...)
		body = append(body, 0)
	}
	if err := c.Send(0x82, body); err != nil {
		t.Fatal(err)
	}
	_ = c.Flush()
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	for {
		typ, ack, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if typ == 0x90 {
			if want := []byte{0, 7, 0x80, 0, 0}; !slices.Equal(ack, want) {
				t.Errorf("SUBACK % x, want % x (the invalid filter refused, both others granted)", ack, want)
			}
			break
		}
	}
	if err := s.Subscribe("v3", broker.SubscriptionInfo{Filter: "c"}); !errors.Is(err, broker.ErrTooLarge) {
		t.Errorf("service Subscribe past the limit: %v, want ErrTooLarge", err)
	}
	if err := s.Subscribe("v3", broker.SubscriptionInfo{Filter: "a", QoS: 1}); err != nil {
		t.Errorf("service Subscribe replacing a held filter: %v", err)
	}
	if subs, _ := s.Subscriptions("v3"); len(subs) != 2 {
		t.Errorf("%d subscriptions, want 2: %v", len(subs), subs)
	}
}
