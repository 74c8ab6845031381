package cluster

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// serveNode wires node n to a broker of its own as `propolis serve` does
// (StartRouting, broker.New, UseBroker, Join, Start), the broker's data in
// a temporary folder and its listener on a free loopback port; the broker
// closes when t ends.
func serveNode(t testing.TB, n *Node) *testNode {
	t.Helper()
	if err := n.StartRouting(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	b, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: testLogger(), Cluster: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := n.UseBroker(b); err != nil {
		t.Fatal(err)
	}
	if err := n.Join(brokertest.OpCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	return &testNode{name: n.Name(), broker: b, addr: b.Addr(cfg.Listeners[0].Name), router: n.routing(), js: n.js()}
}

// TestStopReceiving wires a node alone to a broker as serve does: a
// message another node routes reaches the broker's subscriber until
// StopReceiving, which removes the router's subscriptions (the broker
// closes next at shutdown), while the broker keeps serving its clients.
func TestStopReceiving(t *testing.T) {
	self := testport.Reserve(t, 1)[0]
	n := startClusterNode(t, Options{Config: clusterSection("solo", self, "localhost"+self[strings.LastIndex(self, ":"):])})
	tn := serveNode(t, n)
	sub, got := tn.connect(t, "sub")
	tn.subscribe(t, sub, "x/#")

	other, err := nats.Connect("", nats.InProcessServer(n.srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	send := func(payload string) {
		m := &broker.Message{Topic: "x/1", Payload: []byte(payload)}
		if err := other.PublishMsg(encode(m, "pub", "other", routingSubject(m.Topic, 1))); err != nil {
			t.Fatal(err)
		}
		if err := other.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	send("before")
	poll.Until(t, "the routed message reaches the subscriber", func() bool { return len(got.snapshot()) == 1 })
	// The router holds pm.x, pz.x and pr.>, on the node's connection.
	before := n.nc.NumSubscriptions()
	n.StopReceiving()
	if after := n.nc.NumSubscriptions(); after > before-3 {
		t.Fatalf("the node's connection has %d subscriptions after StopReceiving, %d before: the router still receives", after, before)
	}
	send("after") // nobody on this node receives it: the router's inbox is stopped too
	if info, ok := tn.broker.Client("sub"); !ok || !info.Connected {
		t.Fatal("the broker's subscriber is not connected after StopReceiving")
	}
}
