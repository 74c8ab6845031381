package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// startCatchUp starts n's catch-up sampling every 50 ms (the lag as in
// production: a shorter one broke under -race on a busy machine), healthy
// while n's NATS connection is up, its epoch the connection's reconnects
// (a test node has no routes of its own).
func startCatchUp(t *testing.T, n *sessNode) *catchUpper {
	t.Helper()
	nc := n.router.o.Conn
	healthy := func() (bool, map[string]string) {
		return nc.IsConnected(), map[string]string{"nats": fmt.Sprint(nc.Stats().Reconnects)}
	}
	c := newCatchUp(catchUpOptions{Router: n.router, Sessions: n.sessions, Shared: n.shared, Healthy: healthy,
		Every: 50 * time.Millisecond, Log: testLogger().With("node", n.name)})
	t.Cleanup(c.close)
	poll.Until(t, n.name+"'s catch-up has its first checkpoint", c.ready)
	return c
}

// startCuttable starts nodes a and b on one NATS server. cut closes a's
// NATS connection (the server drops it) and waits until a sees it gone; a
// connects again only at heal, which waits for it.
func startCuttable(t *testing.T) (a, b *sessNode, cut, heal func()) {
	t.Helper()
	ns := natstest.Start(t, "n")
	alive := &sessAlive{}
	release := make(chan struct{})
	a = startSessNodeConn(t, ns, "a", alive, false, "", nil, 0, nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(int) time.Duration { <-release; return 0 }))
	b = startSessNode(t, ns, "b", alive, false, "")
	cut = func() {
		t.Helper()
		cid, err := a.router.o.Conn.GetClientID()
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.DisconnectClientByID(cid); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "a is cut off", func() bool { return !a.router.o.Conn.IsConnected() })
	}
	heal = func() {
		t.Helper()
		close(release)
		poll.Until(t, "a is connected again", a.router.o.Conn.IsConnected)
	}
	return a, b, cut, heal
}

// distinct counts the distinct payloads in ps.
func distinct(ps []*paho.Publish) map[string]int {
	out := map[string]int{}
	for _, p := range ps {
		out[string(p.Payload)]++
	}
	return out
}

// TestCatchUpAfterCut: a subscriber on A; A's NATS connection is cut (the
// server closes it; it reconnects only when the test lets it), QoS 1
// messages are published on B and acknowledged meanwhile; once A is back,
// the subscriber receives every one of them.
func TestCatchUpAfterCut(t *testing.T) {
	a, b, cut, heal := startCuttable(t)
	c := startCatchUp(t, a)
	sub, got := a.connect(t, "sub")
	(&testNode{router: a.router}).subscribe(t, sub, "cut/#")
	pub, _ := b.connect(t, "pub")

	cut()
	const n = 50
	for i := range n {
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "cut/x", QoS: 1, Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatalf("publish %d on b: %v", i, err)
		}
	}
	if len(got.snapshot()) != 0 {
		t.Fatal("a's subscriber got messages while a was cut off")
	}
	heal()
	poll.Until(t, "a's subscriber receives every message acknowledged while a was cut off", func() bool {
		return len(distinct(got.snapshot())) == n
	})
	for i := range n {
		if distinct(got.snapshot())[fmt.Sprintf("m%d", i)] == 0 {
			t.Fatalf("m%d missing", i)
		}
	}
	if c.done() == 0 {
		t.Fatal("no catch-up counted")
	}
}

// TestCatchUpAfterDrops: A's inbox holds one message; a flood of QoS 1
// messages stored by B overflows it (the router counts drops); the
// catch-up brings every dropped message to A's subscriber.
func TestCatchUpAfterDrops(t *testing.T) {
	ns := natstest.Start(t, "n")
	alive := &sessAlive{}
	a := startSessNodeConn(t, ns, "a", alive, false, "", nil, 1)
	startCatchUp(t, a)
	sub, got := a.connect(t, "sub")
	(&testNode{router: a.router}).subscribe(t, sub, "flood/#")
	const n = 400
	flood(t, ns, "b", n)
	poll.Until(t, "a counts dropped messages", func() bool { return a.router.Dropped() > 0 })
	poll.Until(t, "a's subscriber receives every message, the dropped ones after the catch-up", func() bool {
		return len(distinct(got.snapshot())) == n
	})
}

// TestCatchUpSharedAfterCut: the only member of a shared subscription
// group is on A; A's NATS connection is cut while B's publisher sends
// QoS 1 messages the stream acknowledges (NATS has no member of the
// group to give them to); once A is back, the member receives every one.
func TestCatchUpSharedAfterCut(t *testing.T) {
	a, b, cut, heal := startCuttable(t)
	c := startCatchUp(t, a)
	member, got := a.connect(t, "member")
	(&testNode{router: a.router}).subscribe(t, member, "$share/g/cut/#")
	pub, _ := b.connect(t, "pub")
	sendQoS1(t, pub, "cut/x", "before")
	poll.Until(t, "the member receives a message while a is connected", func() bool {
		return distinct(got.snapshot())["before"] == 1
	})

	cut()
	const n = 50
	for i := range n {
		sendQoS1(t, pub, "cut/x", fmt.Sprintf("m%d", i))
	}
	heal()
	poll.Until(t, "the group's member receives every message acknowledged while a was cut off", func() bool {
		return len(distinct(got.snapshot())) == n+1
	})
	if c.done() == 0 {
		t.Fatal("no catch-up counted")
	}
	for p, k := range distinct(got.snapshot()) {
		if k > 1 && p != "before" {
			t.Errorf("%s delivered %d times to the group's only member", p, k)
		}
	}
}

// TestCatchUpSharedOwnDrops: A's queue subscription for a shared group
// holds one pending message; a flood of QoS 1 messages stored with A as
// their node (its own clients' publishes) overflows it; the catch-up
// brings every dropped one to the group's member on A, own messages
// included.
func TestCatchUpSharedOwnDrops(t *testing.T) {
	ns := natstest.Start(t, "n")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, false, "")
	startCatchUp(t, a)
	member, got := a.connect(t, "member")
	(&testNode{router: a.router}).subscribe(t, member, "$share/g/flood/#")
	a.shared.mu.Lock()
	for _, sub := range a.shared.groups[sharedKey{"g", "flood/#"}].subs {
		if err := sub.SetPendingLimits(1, 1<<20); err != nil {
			a.shared.mu.Unlock()
			t.Fatal(err)
		}
	}
	a.shared.mu.Unlock()
	const n = 400
	flood(t, ns, "a", n)
	poll.Until(t, "a counts messages its shared queue subscription dropped", func() bool { return a.shared.Dropped() > 0 })
	poll.Until(t, "the group's member receives every message, the dropped ones after the catch-up", func() bool {
		return len(distinct(got.snapshot())) == n
	})
}

// flood stores n QoS 1 messages on flood/x ("m0", "m1", ...) in
// PROPOLIS_MESSAGES as node's router stores them (acknowledged by the
// stream), published without waiting, so that a subscription of a node
// with a small pending limit overflows.
func flood(t *testing.T, ns *server.Server, node string, n int) {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := encode(&broker.Message{Topic: "flood/x", QoS: 1, Payload: fmt.Appendf(nil, "m%d", i)}, "pub", node, "pm.flood")
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(poll.Timeout):
		t.Fatal("the stream did not acknowledge the flood")
	}
}
