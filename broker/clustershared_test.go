package broker_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// groupCounts is a broker.Cluster that counts the shared subscriptions
// reported to it, per "group filter", as cluster/shared.go does; its other
// methods do nothing a test reads.
type groupCounts struct {
	mu sync.Mutex
	n  map[string]int
}

var _ broker.Cluster = (*groupCounts)(nil)

func (g *groupCounts) Forward(*broker.Message, string) error { return nil }
func (g *groupCounts) Connected(string)                      {}
func (g *groupCounts) Disconnected(string)                   {}
func (g *groupCounts) CheckFilter(string, string) error      { return nil }
func (g *groupCounts) CheckClientID(string) error            { return nil }

func (g *groupCounts) Subscribed(filter, group string) { g.add(group+" "+filter, 1) }

func (g *groupCounts) Unsubscribed(filter, group string) { g.add(group+" "+filter, -1) }

func (g *groupCounts) add(k string, d int) {
	if k[0] == ' ' {
		return // not shared
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == nil {
		g.n = map[string]int{}
	}
	g.n[k] += d
	if g.n[k] == 0 {
		delete(g.n, k)
	}
}

// is reports "" when the counts are want ("group filter=n" sorted), else
// what they are.
func (g *groupCounts) is(want ...string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var got []string
	for k, n := range g.n {
		got = append(got, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(got)
	if slices.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("counts %v, want %v", got, want)
}

// startClustered starts a broker on dir with c as its Cluster.
func startClustered(t *testing.T, dir string, c broker.Cluster) (*broker.Server, string) {
	t.Helper()
	cfg := testConfig(dir)
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}}, Logger: testLogger(t), Cluster: c})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Addr(cfg.Listeners[0].Name)
}

// TestClusterSharedCountedPerClient follows the shared subscriptions
// reported to the Cluster through each way one comes or goes: SUBSCRIBE
// (twice the same: once), a restart (restored sessions count), a clean
// start taking the session over, UNSUBSCRIBE, InvalidateSession.
func TestClusterSharedCountedPerClient(t *testing.T) {
	dir := t.TempDir()
	var g1 groupCounts
	s1, addr := startClustered(t, dir, &g1)
	for _, id := range []string{"p1", "p2"} {
		c := v5Dial(t, addr, paho.ClientConfig{ClientID: id})
		expiry := uint32(3600)
		if _, err := c.Connect(ctx5(t), &paho.Connect{ClientID: id, CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/a/+", QoS: 1}, {Topic: "plain/#"}}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Disconnect(&paho.Disconnect{}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Settle(t, "two members before the restart", func() string { return g1.is("g a/+=2") })
	poll.Until(t, "both sessions offline", func() bool {
		a, _ := s1.Client("p1")
		b, _ := s1.Client("p2")
		return !a.Connected && !b.Connected
	})
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	var g2 groupCounts
	s2, addr := startClustered(t, dir, &g2)
	if w := g2.is("g a/+=2"); w != "" {
		t.Fatalf("restored sessions: %s", w)
	}
	c := v5Dial(t, addr, paho.ClientConfig{ClientID: "p1"})
	if _, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "p1", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	poll.Settle(t, "p1's clean start", func() string { return g2.is("g a/+=1") })
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/h/b", QoS: 0}}}); err != nil {
		t.Fatal(err)
	}
	poll.Settle(t, "p1 in group h", func() string { return g2.is("g a/+=1", "h b=1") })
	if _, err := c.Unsubscribe(ctx5(t), &paho.Unsubscribe{Topics: []string{"$share/h/b"}}); err != nil {
		t.Fatal(err)
	}
	poll.Settle(t, "p1 out of group h", func() string { return g2.is("g a/+=1") })
	if err := s2.InvalidateSession("p2"); err != nil {
		t.Fatal(err)
	}
	poll.Settle(t, "p2's session invalidated", func() string { return g2.is() })
}
