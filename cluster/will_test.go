package cluster

import (
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// dialDelayedWill connects MQTT 5 client id to addr with a will on topic
// delayed by delay seconds and Session Expiry 0 (the session ends with the
// connection), and returns its connection, to be dropped.
func dialDelayedWill(t *testing.T, addr, id, topic string, delay uint32) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ca, err := c.Connect(brokertest.OpCtx(t), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60,
		WillMessage:    &paho.WillMessage{Topic: topic, Payload: []byte("gone"), QoS: 1},
		WillProperties: &paho.WillProperties{WillDelayInterval: ptr(delay)}})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	return conn
}

// TestDelayedWillOfEndedSessionReachesOtherNode: the delayed will of an
// MQTT 5 client whose session ends with its connection (Session Expiry 0),
// dropped on node A, reaches a subscriber on node B once the delay is
// over (mochi reports such a will to nobody: the broker forwards it).
func TestDelayedWillOfEndedSessionReachesOtherNode(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "w/#")
	conn := dialDelayedWill(t, a.addr, "dying", "w/delayed", 1)
	_ = conn.Close() // no DISCONNECT: the will is due after its delay
	poll.Until(t, "the delayed will reaches b", func() bool {
		ps := got.snapshot()
		return len(ps) == 1 && ps[0].Topic == "w/delayed" && string(ps[0].Payload) == "gone"
	})
}

// TestDelayedWillCancelledByReconnect: the same client reconnecting to A
// within the delay (MQTT-3.1.3-9) sends no will to B, while a will of
// another client dropped after it, with the same delay, does reach B.
func TestDelayedWillCancelledByReconnect(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "w/#")
	conn := dialDelayedWill(t, a.addr, "back", "w/back", 5)
	_ = conn.Close()
	poll.Until(t, "back's session gone from a", func() bool { _, ok := a.broker.Client("back"); return !ok })
	a.connect(t, "back") // within the 5 s: no will
	marker := dialDelayedWill(t, a.addr, "marker", "w/marker", 5)
	_ = marker.Close()
	poll.Until(t, "the marker's will reaches b", func() bool {
		for _, p := range got.snapshot() {
			if p.Topic == "w/marker" {
				return true
			}
		}
		return false
	})
	for _, p := range got.snapshot() {
		if p.Topic == "w/back" {
			t.Fatal("b got the will of a client that came back within its delay")
		}
	}
}

// TestDelayedWillCancelledByTakeOver: a client dropped on node A with a
// delayed will connects on node B within the delay: A publishes no will
// (MQTT-3.1.3-9), while the will of another client dropped on A after it,
// with the same delay, is published.
func TestDelayedWillCancelledByTakeOver(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")
	var mu sync.Mutex
	var topics []string
	sub := connect5(t, a, "sub", nil, func(p *paho.Publish) { mu.Lock(); topics = append(topics, p.Topic); mu.Unlock() })
	if _, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "w/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	conn := dialDelayedWill(t, a.addr, "mover", "w/mover", 6)
	_ = conn.Close()
	poll.Until(t, "mover gone from a", func() bool { return !a.connected("mover") })
	connect5(t, b, "mover", nil, nil) // within the delay, on another node
	poll.Until(t, "the bucket names b for mover", func() bool { return ownerOf(t, a, "mover") == "b" })
	marker := dialDelayedWill(t, a.addr, "marker", "w/marker", 6)
	_ = marker.Close()
	poll.Until(t, "the marker's will on a", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(topics, "w/marker")
	})
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(topics, "w/mover") {
		t.Fatalf("a published the will of a client that connected on b within its delay: %v", topics)
	}
}
