package cluster

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// queueSubs counts the queue subscriptions of shared groups the NATS
// server ns holds, as pairs: a group's pm. subject and its pz. twin, in
// the same queue group; -1 while a pm. one lacks its twin or the other way
// round (the server may be between the two SUBs), so that polls go on.
func queueSubs(t *testing.T, ns *server.Server) int {
	t.Helper()
	sz, err := ns.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string]int{} // pm. subject and queue: +1 for pm., -1 for pz.
	n := 0
	for _, s := range sz.Subs {
		if !strings.HasPrefix(s.Queue, "pms.") {
			continue
		}
		switch {
		case strings.HasPrefix(s.Subject, messagePrefix+"."):
			pairs[s.Subject+" "+s.Queue]++
			n++
		case strings.HasPrefix(s.Subject, volatilePrefix+"."):
			pairs[messagePrefix+strings.TrimPrefix(s.Subject, volatilePrefix)+" "+s.Queue]--
		default:
			t.Errorf("queue subscription on %s in %s: neither a pm. nor a pz. subject", s.Subject, s.Queue)
		}
	}
	for _, v := range pairs {
		if v != 0 {
			return -1
		}
	}
	return n
}

// counter counts the payloads one MQTT client receives.
type counter struct {
	mu  sync.Mutex
	got map[string]int
	n   int
}

func (c *counter) add(p *paho.Publish) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[string]int{}
	}
	c.got[string(p.Payload)]++
	c.n++
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// subscribe5 subscribes c to filter at QoS 1.
func subscribe5(t *testing.T, c *paho.Client, filter string) {
	t.Helper()
	if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

// TestSharedGroupAcrossNodes has one member of $share/g/s/+ on node A and
// one on node B; 200 messages published on A (through A's NATS
// connection, as A's Forward does) reach the group exactly once each, both
// members getting some; members leaving take the queue subscriptions
// away.
func TestSharedGroupAcrossNodes(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")
	var onA, onB counter
	ma := connect5(t, a, "member-a", nil, onA.add)
	mb := connect5(t, b, "member-b", nil, onB.add)
	subscribe5(t, ma, "$share/g/s/+")
	subscribe5(t, mb, "$share/g/s/+")
	poll.Until(t, "a queue subscription per node", func() bool { return queueSubs(t, ns) == 2 })

	const n = 200
	for i := range n {
		m := &broker.Message{Topic: "s/" + strconv.Itoa(i%7), Payload: []byte(strconv.Itoa(i)), QoS: 1}
		if err := (testCluster{a}).Forward(m, "publisher"); err != nil {
			t.Fatalf("forward %d: %v", i, err)
		}
	}
	poll.Settle(t, "every message delivered once", func() string {
		if got := onA.total() + onB.total(); got < n {
			return fmt.Sprintf("%d of %d", got, n)
		}
		return ""
	})
	// Every message is in; one more, and its delivery, orders any
	// duplicate of the earlier ones before it (each node delivers in order).
	if err := (testCluster{a}).Forward(&broker.Message{Topic: "s/end", Payload: []byte("end"), QoS: 1}, "publisher"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the last message", func() bool { return onA.total()+onB.total() > n })
	onA.mu.Lock()
	onB.mu.Lock()
	for i := range n {
		p := strconv.Itoa(i)
		if c := onA.got[p] + onB.got[p]; c != 1 {
			t.Errorf("message %s delivered %d times (a %d, b %d)", p, c, onA.got[p], onB.got[p])
		}
	}
	if onA.n == 0 || onB.n == 0 {
		t.Errorf("a member got nothing: a %d, b %d", onA.n, onB.n)
	}
	if total := onA.n + onB.n; total != n+1 {
		t.Errorf("%d deliveries, want %d", total, n+1)
	}
	onA.mu.Unlock()
	onB.mu.Unlock()

	if _, err := ma.Unsubscribe(brokertest.OpCtx(t), &paho.Unsubscribe{Topics: []string{"$share/g/s/+"}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "node a's queue subscription gone", func() bool { return queueSubs(t, ns) == 1 && a.shared.subscriptions() == 0 })
	if err := mb.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "node b's queue subscription gone", func() bool { return queueSubs(t, ns) == 0 && b.shared.subscriptions() == 0 })
}

// TestSharedMembersCountedPerClient: two members of one group on one node
// share one queue subscription, which stays until the last one leaves.
func TestSharedMembersCountedPerClient(t *testing.T) {
	ns := natstest.Start(t, "n")
	a := startSessionNode(t, ns, "a")
	var got counter
	m1 := connect5(t, a, "m1", nil, got.add)
	m2 := connect5(t, a, "m2", nil, got.add)
	subscribe5(t, m1, "$share/g/x/#")
	subscribe5(t, m2, "$share/g/x/#")
	subscribe5(t, m2, "$share/g/x/#") // again: still one member
	poll.Until(t, "one queue subscription", func() bool { return queueSubs(t, ns) == 1 })
	if err := m1.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "m1 gone", func() bool { _, ok := a.srv.Client("m1"); return !ok })
	if queueSubs(t, ns) != 1 {
		t.Fatal("queue subscription left while m2 is a member")
	}
	if err := (testCluster{a}).Forward(&broker.Message{Topic: "x/y/z", Payload: []byte("1"), QoS: 0}, "p"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "m2 receives the message", func() bool { return got.total() == 1 })
	if _, err := m2.Unsubscribe(brokertest.OpCtx(t), &paho.Unsubscribe{Topics: []string{"$share/g/x/#"}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "no queue subscription", func() bool { return queueSubs(t, ns) == 0 })
}

// TestOriginDoesNotDeliverSharedLocally: with a Cluster, a PUBLISH on a
// node reaches its ordinary subscribers but not, from the node's own
// fan-out, its shared subscription members: they get it as many times as
// the node forwarded it (once once the broker calls Forward; in H3's
// branch, which does not, never).
func TestOriginDoesNotDeliverSharedLocally(t *testing.T) {
	ns := natstest.Start(t, "n")
	a := startSessionNode(t, ns, "a")
	var shared, plain counter
	ms := connect5(t, a, "member", nil, shared.add)
	mp := connect5(t, a, "plain", nil, plain.add)
	subscribe5(t, ms, "$share/g/t")
	subscribe5(t, mp, "t")
	pub := connect5(t, a, "pub", nil, nil)
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the plain subscriber's copy", func() bool { return plain.total() == 1 })
	// The fan-out wrote the plain copy; a shared copy of the same fan-out
	// would have been written in the same loop. A later delivery through
	// the cluster's path orders after it.
	if err := (testCluster{a}).Forward(&broker.Message{Topic: "t", Payload: []byte("via cluster"), QoS: 1}, "pub"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the cluster's copy", func() bool {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		return shared.got["via cluster"] > 0
	})
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if want := a.forwardedCount("x"); shared.got["x"] != want || shared.got["via cluster"] != 1 {
		t.Fatalf("shared member got %v, want x %d times (as forwarded) and the cluster's copy once", shared.got, want)
	}
}
