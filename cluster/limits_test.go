package cluster

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
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
	c3 := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + a.addr).SetClientID("long3").SetAutoReconnect(false))
	brokertest.WaitToken(t, "connect 3.1.1", c3.Connect())
	t.Cleanup(func() { c3.Disconnect(0) })
	tok := c3.Subscribe(long, 1, nil)
	brokertest.WaitToken(t, "subscribe 3.1.1", tok)
	if code := tok.(*paho3.SubscribeToken).Result()[long]; code != 0x80 {
		t.Fatalf("3.1.1 subscribe to a %d-byte filter: %#x, want 0x80", len(long), code)
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

// TestServiceSubscriptionsReachCluster: a plain and a shared subscription
// made through the Subscriptions service (an extension) are reported to
// the cluster like a client's SUBSCRIBE: messages of another node reach
// them, and Unsubscribe withdraws the plain one's subject.
func TestServiceSubscriptionsReachCluster(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	_, got := b.connect(t, "svc")
	if err := b.broker.Subscribe("svc", broker.SubscriptionInfo{Filter: "plain/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if subs := b.router.subjects(); subs["pm.plain"] != 1 {
		t.Fatalf("subjects of b: %v, want pm.plain", subs)
	}
	b.synced(t)
	pub, _ := a.connect(t, "pub")
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "plain/1", QoS: 1, Payload: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the message from a reaches the service subscription on b", func() bool {
		return len(got.snapshot()) == 1
	})
	if err := b.broker.Unsubscribe("svc", "plain/#"); err != nil {
		t.Fatal(err)
	}
	if subs := b.router.subjects(); len(subs) != 0 {
		t.Fatalf("subjects of b after Unsubscribe: %v, want none", subs)
	}
	if err := b.broker.Subscribe("svc", broker.SubscriptionInfo{Filter: strings.Repeat("x", 4000), QoS: 1}); !errors.Is(err, broker.ErrInvalidArgument) {
		t.Fatalf("service subscription to a filter too long for the cluster: %v, want ErrInvalidArgument", err)
	}

	sa, sb := startSessionNode(t, ns, "sa"), startSessionNode(t, ns, "sb")
	var mu sync.Mutex
	var shared []string
	connect5(t, sb, "member", nil, func(p *paho.Publish) { mu.Lock(); shared = append(shared, string(p.Payload)); mu.Unlock() })
	if err := sb.srv.Subscribe("member", broker.SubscriptionInfo{Filter: "$share/g/s/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if err := sb.nc.FlushTimeout(poll.Timeout); err != nil {
		t.Fatal(err)
	}
	p := connect5(t, sa, "spub", nil, nil)
	if _, err := p.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "s/1", QoS: 1, Payload: []byte("s")}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the message from sa reaches the service's shared member on sb", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(shared) == 1
	})
	if err := sb.srv.Unsubscribe("member", "$share/g/s/#"); err != nil {
		t.Fatal(err)
	}
	if n := sb.shared.subscriptions(); n != 0 {
		t.Fatalf("queue subscriptions of sb after Unsubscribe: %d, want 0", n)
	}
}

// TestMaxPayloadAboveMaxPacket: the embedded server's max_payload leaves
// room for the broker's largest packet and its routing headers, so that
// NATS never refuses for its size a message the broker accepted; the
// configuration refuses a max_packet_size beyond what NATS can carry.
func TestMaxPayloadAboveMaxPacket(t *testing.T) {
	self := testport.Reserve(t, 1)[0]
	n := startClusterNode(t, Options{Config: clusterSection("big", self), MaxPacketSize: 4 << 20})
	if got, want := n.conn().MaxPayload(), int64(4<<20+config.ClusterHeaderRoom); got != want {
		t.Fatalf("max payload %d, want %d", got, want)
	}
	if got := natsMaxPayload(0); int64(got) <= int64(config.Default().MQTT.MaxPacketSize) {
		t.Fatalf("default max payload %d, not above the default max packet size", got)
	}
	cfg := config.Default()
	cfg.Cluster = clusterSection("big", self)
	cfg.MQTT.MaxPacketSize = 100 << 20
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "mqtt.max_packet_size") {
		t.Fatalf("validate a 100MiB max_packet_size in a cluster: %v, want an error naming mqtt.max_packet_size", err)
	}
}
