package cluster

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestReplaySkipsUndecodableAndKeepsExpiry: a node starting after another
// wrote a retained message it cannot decode (a newer body version, as a
// rolling upgrade writes) skips and counts it and replays the others; a
// replayed message keeps the expiry it had left, and one expired since is
// not replayed.
func TestReplaySkipsUndecodableAndKeepsExpiry(t *testing.T) {
	ns := natstest.Start(t, "n")
	a := startNode(t, ns, "a")
	future := encode(&broker.Message{Topic: "r/future", Payload: []byte("v2"), Retain: true}, "", "z", retainedSubject("r/future"))
	future.Data[0] = bodyVersion + 1
	if _, err := a.js.PublishMsg(brokertest.OpCtx(t), future); err != nil {
		t.Fatal(err)
	}
	pub, _ := a.connect(t, "pub")
	sent := time.Now()
	for topic, exp := range map[string]uint32{"r/long": 100, "r/short": 1} {
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(topic),
			Properties: &paho.PublishProperties{MessageExpiry: &exp}}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, "two seconds pass", func() bool { return time.Since(sent) > 2*time.Second })
	b := startNode(t, ns, "b") // fails the test if the replay fails
	if b.router.rejected.Load() != 1 {
		t.Fatalf("b rejected %d messages in the replay, want 1", b.router.rejected.Load())
	}
	m, ok := b.broker.Retained("r/long")
	if !ok || m.MessageExpiry > 98 {
		t.Fatalf("r/long on b: %v, expiry %d, want at most 98 s left", ok, m.MessageExpiry)
	}
	if _, ok := b.broker.Retained("r/short"); ok {
		t.Fatal("r/short, expired before b started, was replayed")
	}
}

// gatedBroker is a node's broker whose first PutRetained (the replay's)
// first runs during, a newer retained message published meanwhile.
type gatedBroker struct {
	*broker.Server
	during func()
	first  atomic.Bool
}

func (g *gatedBroker) PutRetained(m broker.Message) error {
	if g.first.CompareAndSwap(false, true) {
		g.during()
	}
	return g.Server.PutRetained(m)
}

// TestReplayDoesNotOverwriteNewer: a retained message published while the
// replay applies an older one of the same topic ends in the store: the
// live messages follow the replay from its last stream sequence, in
// stream order.
func TestReplayDoesNotOverwriteNewer(t *testing.T) {
	ns := natstest.Start(t, "n")
	a := startNode(t, ns, "a")
	pub, _ := a.connect(t, "pub")
	publish := func(p string) {
		t.Helper()
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "r/x", QoS: 1, Retain: true, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	publish("old")

	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRouter(routerOptions{Conn: nc, JS: js, Node: "b", Replicas: 1, Levels: 1, Log: testLogger(), PublishTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	b, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: testLogger(), Cluster: routerCluster{r}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	g := &gatedBroker{Server: b}
	g.during = func() {
		publish("new")
		// A live path running beside the replay would store "new" now,
		// before the replay's "old": give it the chance (the bound only
		// ends the wait, it decides nothing).
		end := time.Now().Add(2 * time.Second)
		tick := time.NewTicker(poll.Interval)
		defer tick.Stop()
		for time.Now().Before(end) {
			if m, ok := b.Retained("r/x"); ok && string(m.Payload) == "new" {
				return
			}
			<-tick.C
		}
	}
	if err := r.useBroker(g); err != nil {
		t.Fatal(err)
	}
	if _, err := r.replayRetained(brokertest.OpCtx(t)); err != nil {
		t.Fatal(err)
	}
	poll.Settle(t, "b retains the newer message", func() string {
		if m, ok := b.Retained("r/x"); !ok || string(m.Payload) != "new" {
			return fmt.Sprintf("r/x on b: %q %v, want new", m.Payload, ok)
		}
		return ""
	})
}
