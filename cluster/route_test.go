package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// routerCluster is the broker.Cluster of one test node: the router alone
// (the Node type glues the router, ownership and shared subscriptions).
type routerCluster struct{ r *router }

func (c routerCluster) Forward(m *broker.Message, publisher string) error {
	return c.r.forward(m, publisher)
}

func (c routerCluster) Subscribed(filter, group string) {
	if group == "" {
		c.r.subscribed(filter)
	}
}

func (c routerCluster) Unsubscribed(filter, group string) {
	if group == "" {
		c.r.unsubscribed(filter)
	}
}

func (c routerCluster) CheckFilter(filter, group string) error {
	return filterFits(filter, group, c.r.o.Levels, c.r.queue)
}

func (routerCluster) CheckClientID(id string) error {
	_, err := clientKey(id)
	return err
}

func (routerCluster) Connected(string)    {}
func (routerCluster) Disconnected(string) {}

// testNode is one node of a test cluster: a real broker with its router,
// on the shared NATS server.
type testNode struct {
	name   string
	broker *broker.Server
	addr   string
	router *router
	js     jetstream.JetStream
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts node name on ns: its router (streams created), its
// broker with its data in a temporary folder, the retained replay, then
// the broker's listeners; everything ends with the test.
func startNode(t *testing.T, ns *server.Server, name string) *testNode {
	t.Helper()
	return startNodeIn(t, ns, name, t.TempDir())
}

// startNodeIn is startNode with the broker's data in dir.
func startNodeIn(t *testing.T, ns *server.Server, name, dir string) *testNode {
	t.Helper()
	return startNodeWith(t, ns, name, dir, 0)
}

// startNodeWith is startNodeIn with the router's inbox of inbox messages
// (0: the default).
func startNodeWith(t *testing.T, ns *server.Server, name, dir string, inbox int) *testNode {
	t.Helper()
	nc := natstest.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRouter(routerOptions{Conn: nc, JS: js, Node: name, Replicas: 1, Levels: 1,
		MaxAge: time.Hour, MaxBytes: 1 << 30, Log: testLogger(), PublishTimeout: 2 * time.Second, InboxSize: inbox})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	t.Cleanup(r.close)
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = dir
	b, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: testLogger(), Cluster: routerCluster{r}})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := r.useBroker(b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.replayRetained(brokertest.OpCtx(t)); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	return &testNode{name: name, broker: b, addr: b.Addr(cfg.Listeners[0].Name), router: r, js: js}
}

// synced waits until the NATS server has every subscription n's router
// asked for (a flush orders after them).
func (n *testNode) synced(t testing.TB) {
	t.Helper()
	if err := n.router.o.Conn.FlushTimeout(poll.Timeout); err != nil {
		t.Fatal(err)
	}
}

// received collects the PUBLISHes a paho client gets.
type received struct {
	mu   sync.Mutex
	pubs []*paho.Publish
}

func (r *received) add(p paho.PublishReceived) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs = append(r.pubs, p.Packet)
	return true, nil
}

func (r *received) snapshot() []*paho.Publish {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pubs)
}

// connect connects an MQTT 5 client id to n (clean start) and returns it
// with what it receives.
func (n *testNode) connect(t testing.TB, id string) (*paho.Client, *received) {
	t.Helper()
	got := &received{}
	c := brokertest.DialV5(t, n.addr, paho.ClientConfig{ClientID: id,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){got.add}})
	ca, err := c.Connect(brokertest.OpCtx(t), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s to %s: %v", id, n.name, err)
	}
	return c, got
}

// subscribe subscribes c to filter at QoS 2 and waits for the subscription
// to reach NATS.
func (n *testNode) subscribe(t testing.TB, c *paho.Client, filter string) {
	t.Helper()
	sa, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 2}}})
	if err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s on %s: %v %v", filter, n.name, err, sa)
	}
	n.synced(t)
}

func ptr[T any](v T) *T { return &v }

// TestRoutesQoS012InOrderWithProperties: a subscriber on B gets, in
// order and once each, what a client on A publishes at QoS 0, 1 and 2,
// with every MQTT 5 property.
func TestRoutesQoS012InOrderWithProperties(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "t/#")
	pub, _ := a.connect(t, "pub")
	const n = 30
	for i := range n {
		p := &paho.Publish{Topic: fmt.Sprintf("t/%d", i%3), QoS: byte(i % 3), Payload: []byte(fmt.Sprint(i)),
			Properties: &paho.PublishProperties{
				ContentType:     "text/plain",
				ResponseTopic:   "reply/" + fmt.Sprint(i),
				CorrelationData: []byte{0, byte(i), '\r', '\n'},
				MessageExpiry:   ptr(uint32(3600)),
				PayloadFormat:   ptr(byte(1)),
				User:            paho.UserProperties{{Key: "k", Value: "v\r\n" + fmt.Sprint(i)}, {Key: "k", Value: "second"}},
			}}
		if _, err := pub.Publish(brokertest.OpCtx(t), p); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	poll.Settle(t, "subscriber on b got all 30 messages once", func() string {
		if l := len(got.snapshot()); l != n {
			return fmt.Sprintf("%d messages", l)
		}
		return ""
	})
	for i, p := range got.snapshot() {
		want := fmt.Sprint(i)
		if string(p.Payload) != want || p.Topic != fmt.Sprintf("t/%d", i%3) || p.QoS != byte(i%3) {
			t.Fatalf("message %d: topic %q qos %d payload %q, want t/%d qos %d %q", i, p.Topic, p.QoS, p.Payload, i%3, i%3, want)
		}
		pp := p.Properties
		if pp == nil || pp.ContentType != "text/plain" || pp.ResponseTopic != "reply/"+want ||
			!bytes.Equal(pp.CorrelationData, []byte{0, byte(i), '\r', '\n'}) ||
			pp.MessageExpiry == nil || *pp.MessageExpiry == 0 || *pp.MessageExpiry > 3600 ||
			pp.PayloadFormat == nil || *pp.PayloadFormat != 1 ||
			!slices.Equal(pp.User, paho.UserProperties{{Key: "k", Value: "v\r\n" + want}, {Key: "k", Value: "second"}}) {
			t.Fatalf("message %d: properties %+v", i, pp)
		}
	}
}

// TestQoS1RefusedWithoutJetStream: with the messages stream gone, a QoS 1
// PUBLISH is refused with 0x80 naming the cluster once the wait for the
// stream's acknowledgement ends, and not delivered on its node; QoS 0
// still flows. (The other node may see the refused message: NATS delivers
// a JetStream publish to core subscribers even when no stream stores it;
// the publisher, told it failed, sends it again: at least once.)
func TestQoS1RefusedWithoutJetStream(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "t")
	local, gotLocal := a.connect(t, "local")
	a.subscribe(t, local, "t")
	if err := a.js.DeleteStream(brokertest.OpCtx(t), MessagesStream); err != nil {
		t.Fatal(err)
	}
	pub, _ := a.connect(t, "pub")
	pr, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("lost")})
	if err == nil || pr == nil || pr.ReasonCode != 0x80 || pr.Properties == nil || pr.Properties.ReasonString != "cluster unavailable: message not stored" {
		t.Fatalf("QoS 1 publish without the stream: %+v, %v; want reason 0x80 naming the cluster", pr, err)
	}
	// An MQTT 3.1.1 publisher cannot be told: it is disconnected.
	lost := make(chan error, 1)
	c3 := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + a.addr).SetClientID("pub3").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(poll.Timeout).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err }))
	brokertest.WaitToken(t, "connect pub3", c3.Connect())
	t.Cleanup(func() { c3.Disconnect(0) })
	c3.Publish("t", 1, false, "lost too")
	select {
	case <-lost:
	case <-time.After(poll.Timeout):
		t.Fatal("3.1.1 QoS 1 publisher not disconnected when the cluster did not store its message")
	}
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "t", QoS: 0, Payload: []byte("qos0")}); err != nil {
		t.Fatal(err)
	}
	poll.Settle(t, "only the QoS 0 message arrives on a", func() string {
		ps := gotLocal.snapshot()
		if len(ps) != 1 || string(ps[0].Payload) != "qos0" {
			return fmt.Sprintf("%d messages", len(ps))
		}
		return ""
	})
	poll.Until(t, "the QoS 0 message reaches b", func() bool {
		ps := got.snapshot()
		return len(ps) > 0 && string(ps[len(ps)-1].Payload) == "qos0"
	})
}

// TestNoLoopOverlappingFilters: each message reaches each subscriber of
// every node once, also when one node's filters overlap.
func TestNoLoopOverlappingFilters(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	var all []*received
	for i, f := range []string{"x/#", "x/y", "+/y", "#"} {
		c, got := b.connect(t, fmt.Sprint("b", i))
		b.subscribe(t, c, f)
		all = append(all, got)
	}
	twice, gotTwice := b.connect(t, "twice") // one client, two overlapping filters
	b.subscribe(t, twice, "x/y")
	b.subscribe(t, twice, "x/#")
	all = append(all, gotTwice)
	onA, gotA := a.connect(t, "a0")
	a.subscribe(t, onA, "x/#")
	all = append(all, gotA)
	pub, _ := a.connect(t, "pub")
	const n = 20
	for i := range n {
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "x/y", QoS: byte(i % 3), Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Settle(t, "every subscriber got every message once", func() string {
		for i, r := range all {
			if l := len(r.snapshot()); l != n {
				return fmt.Sprintf("subscriber %d: %d messages", i, l)
			}
		}
		return ""
	})
}

// TestRetainedAcrossNodesAndReplay: a retained message published on A is
// retained on B, and on C, which starts afterwards (replay); a deletion
// reaches a node started after it too.
func TestRetainedAcrossNodesAndReplay(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	bw, _ := b.connect(t, "b-watch") // B subscribes before: it retains what it receives
	b.subscribe(t, bw, "r/#")
	pub, _ := a.connect(t, "pub")
	for _, topic := range []string{"r/1", "r/2"} {
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte("kept " + topic),
			Properties: &paho.PublishProperties{ContentType: "c"}}); err != nil {
			t.Fatal(err)
		}
	}
	retained := func(n *testNode, topic, want string) func() string {
		return func() string {
			m, ok := n.broker.Retained(topic)
			if !ok && want == "" {
				return ""
			}
			if !ok || string(m.Payload) != want || m.ContentType != "c" {
				return fmt.Sprintf("%s on %s: %q, %v", topic, n.name, m.Payload, ok)
			}
			return ""
		}
	}
	poll.Settle(t, "b retains r/1", retained(b, "r/1", "kept r/1"))
	late, got := b.connect(t, "late") // subscribes after the publish: gets the retained copy
	b.subscribe(t, late, "r/1")
	poll.Until(t, "late subscriber on b gets the retained message", func() bool {
		ps := got.snapshot()
		return len(ps) == 1 && string(ps[0].Payload) == "kept r/1" && ps[0].Retain
	})
	c := startNode(t, ns, "c")
	poll.Settle(t, "c replayed r/1", retained(c, "r/1", "kept r/1"))
	poll.Settle(t, "c replayed r/2", retained(c, "r/2", "kept r/2"))

	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "r/1", QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b drops r/1", func() bool { _, ok := b.broker.Retained("r/1"); return !ok })
	d := startNode(t, ns, "d")
	poll.Settle(t, "d has no r/1", retained(d, "r/1", ""))
	poll.Settle(t, "d replayed r/2", retained(d, "r/2", "kept r/2"))
}

// TestWillAndServicePublishReachOtherNode: the will of a client whose
// connection dies on A, and a broker Publish (an extension service's) on
// A, reach a subscriber on B.
func TestWillAndServicePublishReachOtherNode(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "w/#")
	dying, err := brokertest.DialWill(a.addr, "dying", "w/will", "gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := dying.Drop(); err != nil { // no DISCONNECT: the will is due
		t.Fatal(err)
	}
	poll.Until(t, "the will reaches b", func() bool {
		ps := got.snapshot()
		return len(ps) == 1 && ps[0].Topic == "w/will" && string(ps[0].Payload) == "gone"
	})
	if err := a.broker.Publish(broker.Message{Topic: "w/svc", QoS: 1, Payload: []byte("from an extension"),
		UserProperties: []broker.UserProperty{{Key: "x", Value: "y"}}}); err != nil {
		t.Fatal(err)
	}
	poll.Settle(t, "the service publish reaches b once", func() string {
		ps := got.snapshot()
		if len(ps) != 2 || ps[1].Topic != "w/svc" || string(ps[1].Payload) != "from an extension" ||
			ps[1].Properties == nil || len(ps[1].Properties.User) != 1 {
			return fmt.Sprintf("%d messages", len(ps))
		}
		return ""
	})
}

// TestUnsubscribeStopsRouting: the router's subjects follow the filters of
// a node's clients, counted per client, and go when the session ends.
func TestUnsubscribeStopsRouting(t *testing.T) {
	ns := natstest.Start(t, "n")
	b := startNode(t, ns, "b")
	c1, _ := b.connect(t, "c1")
	c2, _ := b.connect(t, "c2")
	b.subscribe(t, c1, "s/1")
	b.subscribe(t, c1, "s/1") // the same filter again counts once
	b.subscribe(t, c2, "s/2")
	want := map[string]int{"pm.s": 2}
	if got := b.router.subjects(); !maps.Equal(got, want) {
		t.Fatalf("subjects %v, want %v", got, want)
	}
	if _, err := c1.Unsubscribe(brokertest.OpCtx(t), &paho.Unsubscribe{Topics: []string{"s/1"}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "one filter left on pm.s", func() bool { return maps.Equal(b.router.subjects(), map[string]int{"pm.s": 1}) })
	if err := c2.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "no subject once c2's session ended", func() bool { return len(b.router.subjects()) == 0 })
}

// TestDecodeRefusesBadBodies: a body that is cut or malformed is an error
// naming the field, never a panic.
func TestDecodeRefusesBadBodies(t *testing.T) {
	r := &router{o: routerOptions{Node: "a"}}
	full := encode(&broker.Message{Topic: "a/b", QoS: 1, ContentType: "ct", UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}}, Payload: []byte("p")}, "c%l\ni", r.o.Node, "pm.a")
	m, pub, err := decode(full)
	if err != nil || m.Topic != "a/b" || pub != "c%l\ni" || string(m.Payload) != "p" || m.ContentType != "ct" {
		t.Fatalf("round trip: %+v %q %v", m, pub, err)
	}
	for i := range len(full.Data) - 1 { // every cut before the payload's last byte but one
		cut := &nats.Msg{Header: full.Header, Data: full.Data[:i]}
		if _, _, err := decode(cut); err == nil && i < len(full.Data)-1 {
			if i >= len(full.Data)-1-len("p") { // a shorter payload is still a body
				continue
			}
			t.Fatalf("body cut at %d decoded", i)
		}
	}
	bad := &nats.Msg{Header: nats.Header{headerTopic: {"a"}}, Data: []byte{9}}
	if _, _, err := decode(bad); err == nil {
		t.Fatal("body version 9 decoded")
	}
}

// TestLongTopicRefusedConnectionKept: a topic whose subject NATS would not
// take is refused by name (QoS 1: 0x80), and the node's connection keeps
// routing the next message.
func TestLongTopicRefusedConnectionKept(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "#")
	pub, _ := a.connect(t, "pub")
	long := strings.Repeat("x.", 1200) // '.' forces the longer encoded form
	pr, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: long + "/y", QoS: 1, Retain: true, Payload: []byte("p")})
	if err == nil || pr == nil || pr.ReasonCode != 0x90 || !strings.Contains(pr.Properties.ReasonString, "too long for the cluster") {
		t.Fatalf("publish on a %d-byte first level: %+v %v, want 0x90 naming the cluster's limit", len(long), pr, err)
	}
	// QoS 0 cannot be refused: it is counted as not forwarded (the
	// metric propolis_messages_dropped_total{reason="cluster_not_forwarded"}).
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: long + "/z", QoS: 0, Payload: []byte("q0")}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "a counts the QoS 0 message it could not forward", func() bool {
		return a.broker.Counters().Dropped.ClusterNotForwarded == 1
	})
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "short", QoS: 1, Payload: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the next message reaches b", func() bool {
		ps := got.snapshot()
		return len(ps) == 1 && string(ps[0].Payload) == "after"
	})
	if !a.router.o.Conn.IsConnected() {
		t.Fatal("node a's NATS connection is gone")
	}
}

// TestRestoredSessionsSubscribe: the subscriptions of a persistent session
// restored at start-up have their subjects before the broker accepts
// clients, and receive other nodes' messages for the offline session.
func TestRestoredSessionsSubscribe(t *testing.T) {
	ns := natstest.Start(t, "n")
	dir := t.TempDir()
	first := startNodeIn(t, ns, "b", dir)
	got := &received{}
	c := brokertest.DialV5(t, first.addr, paho.ClientConfig{ClientID: "keep",
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){got.add}})
	if _, err := c.Connect(brokertest.OpCtx(t), &paho.Connect{ClientID: "keep", CleanStart: true, KeepAlive: 60,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: ptr(uint32(3600))}}); err != nil {
		t.Fatal(err)
	}
	first.subscribe(t, c, "kept/#")
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	if err := first.broker.Close(); err != nil {
		t.Fatal(err)
	}
	first.router.close()

	again := startNodeIn(t, ns, "b", dir)
	if got := again.router.subjects(); !maps.Equal(got, map[string]int{"pm.kept": 1}) {
		t.Fatalf("subjects after restart: %v, want pm.kept once", got)
	}
	again.synced(t)
	a := startNode(t, ns, "a")
	pub, _ := a.connect(t, "pub")
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "kept/1", QoS: 1, Payload: []byte("queued")}); err != nil {
		t.Fatal(err)
	}
	back := &received{}
	c2 := brokertest.DialV5(t, again.addr, paho.ClientConfig{ClientID: "keep",
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){back.add}})
	poll.Until(t, "the offline session queued the message from a", func() bool {
		cl, ok := again.broker.Client("keep")
		return ok && cl.Queued > 0
	})
	if _, err := c2.Connect(brokertest.OpCtx(t), &paho.Connect{ClientID: "keep", KeepAlive: 60,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: ptr(uint32(3600))}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the resumed session gets the message", func() bool {
		ps := back.snapshot()
		return len(ps) == 1 && string(ps[0].Payload) == "queued"
	})
}

// TestSlowNodeDropsAndCounts: a node whose broker cannot keep up (an inbox
// of one message, each message a durable retained write) drops what does
// not fit, counts it, and keeps its connection and its routing.
func TestSlowNodeDropsAndCounts(t *testing.T) {
	ns := natstest.Start(t, "n")
	b := startNodeWith(t, ns, "b", t.TempDir(), 1)
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "flood/#")
	other := natstest.Connect(t, ns)
	sender := &router{o: routerOptions{Node: "a"}}
	const n = 5000
	for i := range n {
		m := encode(&broker.Message{Topic: fmt.Sprint("flood/", i), Retain: true, Payload: []byte("x")}, "pub", sender.o.Node, "pm.flood")
		if err := other.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.FlushTimeout(poll.Timeout); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b counts dropped messages", func() bool { return b.router.Dropped() > 0 })
	if !b.router.o.Conn.IsConnected() {
		t.Fatal("b's NATS connection is gone")
	}
	m := encode(&broker.Message{Topic: "flood/last", Payload: []byte("last")}, "pub", sender.o.Node, "pm.flood")
	poll.Until(t, "a message after the flood reaches b's subscriber", func() bool {
		if err := other.PublishMsg(m); err != nil { // again until it fits in the inbox
			t.Fatal(err)
		}
		ps := got.snapshot()
		return len(ps) > 0 && string(ps[len(ps)-1].Payload) == "last"
	})
}

// TestQoS0NotStored: QoS 0 messages published on A reach a subscriber on
// B, in order with the QoS 1 ones between them, and PROPOLIS_MESSAGES
// holds the QoS 1 messages only.
func TestQoS0NotStored(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "z/#")
	pub, _ := a.connect(t, "pub")
	const n = 40 // every fourth QoS 1, the rest QoS 0
	for i := range n {
		qos := byte(0)
		if i%4 == 0 {
			qos = 1
		}
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "z/" + fmt.Sprint(i%2), QoS: qos,
			Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Settle(t, "b's subscriber got the 40 messages in order", func() string {
		ps := got.snapshot()
		for i, p := range ps {
			if string(p.Payload) != fmt.Sprint(i) {
				return fmt.Sprintf("message %d is %q", i, p.Payload)
			}
		}
		if len(ps) != n {
			return fmt.Sprintf("%d messages", len(ps))
		}
		return ""
	})
	st, err := a.js.Stream(brokertest.OpCtx(t), MessagesStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(brokertest.OpCtx(t), jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n/4 || !maps.Equal(info.State.Subjects, map[string]uint64{"pm.z": n / 4}) {
		t.Fatalf("%s holds %d messages on %v, want the %d QoS 1 ones on pm.z", MessagesStream, info.State.Msgs, info.State.Subjects, n/4)
	}
}
