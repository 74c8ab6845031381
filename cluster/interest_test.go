package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// twoServedNodes starts two nodes routed to each other, each with a
// broker (serveNode), and waits until each sees the other alive (the
// nodes a new subscription is confirmed on).
func twoServedNodes(t testing.TB) (a, b *testNode, na, nb *Node) {
	t.Helper()
	addrs := testport.Reserve(t, 2)
	nodes := make([]*Node, 2)
	errs := make(chan error, 2)
	for i, name := range []string{"a", "b"} {
		go func() {
			n, err := Start(t.Context(), Options{DataDir: t.TempDir(), Config: clusterSection(name, addrs[i], addrs[1-i]),
				Logger: testLogger()})
			nodes[i] = n
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		t.Cleanup(n.Close)
	}
	for _, n := range nodes {
		poll.Until(t, n.Name()+" sees the other node alive", func() bool { return len(n.otherAlive()) == 1 })
	}
	return serveNode(t, nodes[0]), serveNode(t, nodes[1]), nodes[0], nodes[1]
}

// lostAfterSubAck subscribes sub on a to count new filters, one after the
// other, and after each SUBACK publishes at once one QoS 1 message on it
// from pub on b (PUBACK awaited). It returns the indexes of the messages
// that did not reach sub. A last message on a filter subscribed and
// confirmed beforehand ("marker") shows that everything b sent before it
// has arrived: b's node sends all in one order, which a's node keeps.
func lostAfterSubAck(t testing.TB, a, b *testNode, sub, pub *paho.Client, got *received, from, count int) []int {
	t.Helper()
	for i := from; i < from+count; i++ {
		f := "fresh" + strconv.Itoa(i) // a new subject at depth 1: pm.fresh<i>
		sa, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}})
		if err != nil || sa.Reasons[0] >= 0x80 {
			t.Fatalf("subscribe %s on %s: %v %v", f, a.name, err, sa)
		}
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: f, QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatalf("publish on %s: %v", f, err)
		}
	}
	end := fmt.Sprint("end ", from)
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "marker", QoS: 1, Payload: []byte(end)}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the marker reaches a", func() bool {
		return slices.ContainsFunc(got.snapshot(), func(p *paho.Publish) bool { return string(p.Payload) == end })
	})
	seen := map[string]bool{}
	for _, p := range got.snapshot() {
		seen[string(p.Payload)] = true
	}
	var lost []int
	for i := from; i < from+count; i++ {
		if !seen[strconv.Itoa(i)] {
			lost = append(lost, i)
		}
	}
	return lost
}

// subscribeMarker subscribes sub on a to "marker" and waits until a
// message pub sends there from b arrives: b's server knows the interest.
func subscribeMarker(t testing.TB, a *testNode, sub, pub *paho.Client, got *received) {
	t.Helper()
	a.subscribe(t, sub, "marker")
	poll.Until(t, "a probe on marker reaches a", func() bool {
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "marker", QoS: 0, Payload: []byte("probe")}); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(got.snapshot(), func(p *paho.Publish) bool { return string(p.Payload) == "probe" })
	})
}

// TestNewSubscriptionKnownBeforeSubAck: on two routed nodes, a QoS 1
// message published on b right after a SUBACK on a, for a subject new on
// a, reaches the subscriber, every time (the round trip of interest.go).
func TestNewSubscriptionKnownBeforeSubAck(t *testing.T) {
	a, b, _, _ := twoServedNodes(t)
	sub, got := a.connect(t, "sub")
	pub, _ := b.connect(t, "pub")
	subscribeMarker(t, a, sub, pub, got)
	const n = 200
	if lost := lostAfterSubAck(t, a, b, sub, pub, got, 0, n); len(lost) > 0 {
		t.Fatalf("%d of %d messages published right after the SUBACK of a new subject lost: %v", len(lost), n, lost)
	}
}

// BenchmarkFirstSubscribe measures a SUBSCRIBE of a subject new on node a
// (SUBSCRIBE to SUBACK, as the client sees it) on two routed nodes, with
// the round trip to node b and without it (a's Peers emptied), and
// reports how many of the QoS 1 messages b publishes right after each
// SUBACK were lost (lost/op).
func BenchmarkFirstSubscribe(b *testing.B) {
	for _, rt := range []bool{true, false} {
		name := "round_trip"
		if !rt {
			name = "no_round_trip"
		}
		b.Run(name, func(b *testing.B) {
			na, nb, nodeA, _ := twoServedNodes(b)
			if !rt {
				nodeA.interest.o.Peers = func() []string { return nil }
			}
			sub, got := na.connect(b, "sub")
			pub, _ := nb.connect(b, "pub")
			subscribeMarker(b, na, sub, pub, got)
			lost, i := 0, 0
			var took time.Duration
			for b.Loop() {
				f := "fresh" + strconv.Itoa(i)
				start := time.Now()
				sa, err := sub.Subscribe(brokertest.OpCtx(b), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}})
				took += time.Since(start)
				if err != nil || sa.Reasons[0] >= 0x80 {
					b.Fatalf("subscribe %s: %v %v", f, err, sa)
				}
				if _, err := pub.Publish(brokertest.OpCtx(b), &paho.Publish{Topic: f, QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.StopTimer()
			lost = len(lostAfterSubAck(b, na, nb, sub, pub, got, i, 0)) // only the marker: everything before it arrived
			seen := map[string]bool{}
			for _, p := range got.snapshot() {
				seen[string(p.Payload)] = true
			}
			for j := range i {
				if !seen[strconv.Itoa(j)] {
					lost++
				}
			}
			b.ReportMetric(float64(took.Microseconds())/float64(i), "µs-subscribe/op")
			b.ReportMetric(float64(lost)/float64(i), "lost/op")
		})
	}
}

// TestInterestRoundTrips: one round trip covers every subscription
// numbered before it; a covered number waits for nothing; a node that
// does not answer is waited for at most the timeout and logged the first
// time only; a node with nothing subscribed to its ping is not waited for.
func TestInterestRoundTrips(t *testing.T) {
	ns := natstest.Start(t, "n")
	nc := natstest.Connect(t, ns)
	if _, err := newControl(controlOptions{Conn: natstest.Connect(t, ns), Node: "ok", Log: testLogger()}); err != nil {
		t.Fatal(err)
	}
	var pings atomic.Int32 // pings the "ok" node got, seen by a second subscriber
	counter := natstest.Connect(t, ns)
	if _, err := counter.Subscribe(controlSubject(controlPing, "ok"), func(*nats.Msg) { pings.Add(1) }); err != nil {
		t.Fatal(err)
	}
	stuck := natstest.Connect(t, ns) // subscribed, never answers
	if _, err := stuck.Subscribe(controlSubject(controlPing, "stuck"), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*nats.Conn{counter, stuck} { // the server has both subscriptions
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var logged bytes.Buffer
	var mu sync.Mutex
	peers := []string{"ok", "gone"}
	in := newInterest(interestOptions{Conn: nc, Timeout: 200 * time.Millisecond,
		Peers: func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(peers) },
		Log:   slog.New(slog.NewTextHandler(&syncWriter{w: &logged, mu: &mu}, nil))})

	first, second := in.subscribed(), in.subscribed()
	in.wait(second) // one round trip covers both
	in.wait(first)
	roundTrips := func(want int32) func() string {
		return func() string { // the counter's callback runs on its own goroutine
			if n := pings.Load(); n != want {
				return fmt.Sprintf("%d round trips, want %d", n, want)
			}
			return ""
		}
	}
	poll.Settle(t, "one round trip for two subscriptions made before it", roundTrips(1))
	mu.Lock()
	peers = append(peers, "stuck")
	mu.Unlock()
	in.wait(in.subscribed())
	in.wait(in.subscribed())
	poll.Settle(t, "a round trip for each later subscription", roundTrips(3))
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "nodes=[stuck]") || !strings.Contains(lines[0], "round_trips_unconfirmed_total=1") {
		t.Fatalf("log %q, want one line naming the stuck node", logged.String())
	}
	in.wait(0) // nothing to wait for
	var none *interest
	none.wait(none.subscribed()) // a router without a registry
}

// syncWriter writes to w under mu.
type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
