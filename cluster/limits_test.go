package cluster

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestLongFilterRefusedConnectionKept: a filter whose NATS subject is too
// long for a protocol line is refused in the SUBACK (0x8F, the reason
// naming the cluster's limit), a stored one reported at restore is not
// subscribed, and the node's NATS connection stays up: the next QoS 1
// publish is routed.
func TestLongFilterRefusedConnectionKept(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "#")
	c, _ := a.connect(t, "long")
	long := strings.Repeat("x", 4200) + "/#"
	sa, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: long, QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 0x8F {
		t.Fatalf("subscribe to a %d-byte filter: %+v %v, want 0x8F", len(long), sa, err)
	}
	if sa.Properties == nil || !strings.Contains(sa.Properties.ReasonString, "cluster") {
		t.Fatalf("reason string %+v does not name the cluster limit", sa.Properties)
	}
	a.router.subscribed(long) // as a restored session's filter is reported
	a.synced(t)
	if !a.router.o.Conn.IsConnected() {
		t.Fatal("node a's NATS connection is gone")
	}
	pub, _ := a.connect(t, "pub")
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "after", QoS: 1, Payload: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the next message reaches b", func() bool {
		ps := got.snapshot()
		return len(ps) == 1 && string(ps[0].Payload) == "p"
	})
}

// TestLongSharedFilterAndClientIDRefused: a shared subscription whose
// queue group name is too long is refused (0x8F), a client id whose
// clients-bucket key is too long is refused at CONNECT (0x85), both naming
// the cluster's limit, and the node's NATS connection stays up.
func TestLongSharedFilterAndClientIDRefused(t *testing.T) {
	ns := natstest.Start(t, "n")
	n := startSessionNode(t, ns, "a")
	c := connect5(t, n, "s", nil, nil)
	long := "$share/g/" + strings.Repeat("a/", 1200) + "b"
	sa, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: long, QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 0x8F {
		t.Fatalf("subscribe to a %d-byte shared filter: %+v %v, want 0x8F", len(long), sa, err)
	}
	id := strings.Repeat("/", 1400)
	conn, err := net.DialTimeout("tcp", n.addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	pc := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	ca, err := pc.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if ca == nil || ca.ReasonCode != 0x85 || !strings.Contains(ca.Properties.ReasonString, "cluster") {
		t.Fatalf("connect with a %d-byte client id: %+v %v, want 0x85 naming the cluster", len(id), ca, err)
	}
	if err := n.nc.FlushTimeout(poll.Timeout); err != nil || !n.nc.IsConnected() {
		t.Fatalf("node's NATS connection: %v, connected %v", err, n.nc.IsConnected())
	}
	connect5(t, n, "after", nil, nil)
	poll.Until(t, "the next client's owner entry is recorded", func() bool { return ownEntry(t, n, "after") })
}

// testKey is clientKey for an id that fits.
func testKey(id string) string {
	k, err := clientKey(id)
	if err != nil {
		panic(err)
	}
	return k
}
