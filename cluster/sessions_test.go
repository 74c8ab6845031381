package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The tests of sessions.go run two or three "nodes" in one process, as
// sessions_helpers_test.go does: real brokers, each with its router,
// owners and sessions under its own node name, on one JetStream server.
// Which nodes are alive is the test's to say (sessAlive).

// sessAlive is the test's registry: the nodes it calls alive.
type sessAlive struct {
	mu    sync.Mutex
	alive map[string]bool
}

func (a *sessAlive) set(node string, alive bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.alive == nil {
		a.alive = map[string]bool{}
	}
	a.alive[node] = alive
}

// lowest reports whether node is the alive node with the lowest name
// (the sweeper).
func (a *sessAlive) lowest(node string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	low := ""
	for n, ok := range a.alive {
		if ok && (low == "" || n < low) {
			low = n
		}
	}
	return low == node
}

func (a *sessAlive) is(node string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.alive[node]
}

// sessNode is one test node with replicated sessions.
type sessNode struct {
	name     string
	srv      *broker.Server
	addr     string
	router   *router
	owners   *owners
	sessions *sessions
	shared   *shared
	kv       jetstream.KeyValue
	on       atomic.Bool // replicated sessions on
}

// sessCluster is the broker.Cluster (and ClusterSessions) of a test node,
// glued as Node glues its parts.
type sessCluster struct{ n *sessNode }

var (
	_ broker.Cluster         = sessCluster{}
	_ broker.ClusterSessions = sessCluster{}
)

func (c sessCluster) Forward(m *broker.Message, publisher string) error {
	return c.n.router.forward(m, publisher)
}

func (c sessCluster) Subscribed(filter, group string) {
	if group == "" {
		c.n.router.subscribed(filter)
		return
	}
	c.n.shared.subscribed(filter, group)
}

func (c sessCluster) Unsubscribed(filter, group string) {
	if group == "" {
		c.n.router.unsubscribed(filter)
		return
	}
	c.n.shared.unsubscribed(filter, group)
}

func (c sessCluster) CheckFilter(filter, group string) error {
	return filterFits(filter, group, testLevels, c.n.router.queue)
}

func (sessCluster) CheckClientID(id string) error {
	_, err := clientKey(id)
	return err
}

func (c sessCluster) Connected(id string) {
	c.n.owners.connected(id)
	if c.n.on.Load() {
		c.n.sessions.connected(id)
	}
}

func (c sessCluster) Disconnected(id string) {
	c.n.owners.disconnected(id)
	if c.n.on.Load() {
		c.n.sessions.disconnected(id)
	}
}

func (c sessCluster) ClaimSession(id string, cleanStart, persistent bool) (*broker.SessionState, []broker.Message, error) {
	if !c.n.on.Load() {
		return nil, nil, nil
	}
	return c.n.sessions.claim(id, cleanStart, persistent)
}

func (c sessCluster) SessionChanged(id string) {
	if c.n.on.Load() {
		c.n.sessions.sessionChanged(id)
	}
}

// startSessNode starts node name on ns with replicated sessions on
// (off when on is false), its broker's data in dir ("" for a fresh one).
func startSessNode(t *testing.T, ns *server.Server, name string, alive *sessAlive, on bool, dir string) *sessNode {
	t.Helper()
	return startSessNodeWith(t, ns, name, alive, on, dir, nil)
}

// startSessNodeWith is startSessNode whose sessions reach the broker
// through wrap(broker) when wrap is not nil.
func startSessNodeWith(t *testing.T, ns *server.Server, name string, alive *sessAlive, on bool, dir string,
	wrap func(*broker.Server) sessionBroker) *sessNode {
	t.Helper()
	return startSessNodeConn(t, ns, name, alive, on, dir, wrap, 0)
}

// startSessNodeConn is startSessNodeWith with a router inbox of inbox
// messages (0: the default) and the node's NATS connection made with
// opts.
func startSessNodeConn(t *testing.T, ns *server.Server, name string, alive *sessAlive, on bool, dir string,
	wrap func(*broker.Server) sessionBroker, inbox int, opts ...nats.Option) *sessNode {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	nc := natstest.Connect(t, ns, opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRouter(routerOptions{Conn: nc, JS: js, Node: name, Replicas: 1, Levels: testLevels,
		MaxAge: time.Hour, MaxBytes: 1 << 30, Log: testLogger().With("node", name), PublishTimeout: 4 * time.Second,
		InboxSize: inbox})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	n := &sessNode{name: name, router: r}
	n.on.Store(on)
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = dir
	srv, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: testLogger().With("node", name), Cluster: sessCluster{n}})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	n.srv = srv
	if err := r.useBroker(srv); err != nil {
		t.Fatal(err)
	}
	if n.owners, err = newOwners(ownerOptions{JS: js, Node: name, Replicas: 1, Broker: srv, Log: testLogger().With("node", name)}); err != nil {
		t.Fatal(err)
	}
	if n.shared, err = newShared(sharedOptions{Conn: nc, Levels: testLevels, Broker: srv, Log: testLogger().With("node", name)}); err != nil {
		t.Fatal(err)
	}
	var sb sessionBroker = srv
	if wrap != nil {
		sb = wrap(srv)
	}
	n.sessions, err = newSessions(sessionOptions{Conn: nc, JS: js, Node: name, Replicas: 1, Levels: testLevels,
		Broker: sb, Router: r, On: n.on.Load, Alive: alive.is, Log: testLogger().With("node", name),
		Sweeper: func() bool { return alive.lowest(name) },
		// The tests sweep themselves (sweepTick): no sweep of its own
		// comes between a test's steps or into its counts.
		SweepEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n.kv = n.sessions.kv
	alive.set(name, true)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.sessions.close()
		n.owners.stopWatch()
		r.close()
		_ = srv.Close()
		n.owners.Close()
		n.shared.Close()
	})
	n.addr = srv.Addr(cfg.Listeners[0].Name)
	return n
}

// connect connects a non-persistent MQTT 5 client id to n.
func (n *sessNode) connect(t *testing.T, id string) (*paho.Client, *received) {
	t.Helper()
	return (&testNode{name: n.name, addr: n.addr}).connect(t, id)
}

// record reads the record of id, nil when there is none.
func (n *sessNode) record(t *testing.T, id string) *sessionRecord {
	t.Helper()
	key, _ := clientKey(id)
	r, _, err := n.sessions.get(brokertest.OpCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// persistent connects an MQTT 5 client id to n with a session expiry of
// 300 s; it returns the client, whether the server had a session, and
// what it receives.
func persistent(t *testing.T, n *sessNode, id string, clean bool, gone chan<- byte) (*paho.Client, bool, *received) {
	t.Helper()
	got := &received{}
	cfg := paho.ClientConfig{ClientID: id, OnPublishReceived: []func(paho.PublishReceived) (bool, error){got.add}}
	if gone != nil {
		cfg.OnServerDisconnect = func(d *paho.Disconnect) { gone <- d.ReasonCode }
	}
	c := brokertest.DialV5(t, n.addr, cfg)
	exp := uint32(300)
	ca, err := c.Connect(brokertest.OpCtx(t), &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s to %s: %v %+v", id, n.name, err, ca)
	}
	return c, ca.SessionPresent, got
}

// payloads returns the payloads received on topic, in order.
func (r *received) payloads(topic string) []string {
	var out []string
	for _, p := range r.snapshot() {
		if p.Topic == topic {
			out = append(out, string(p.Payload))
		}
	}
	return out
}

// sendQoS1 publishes payloads on topic at QoS 1 through c.
func sendQoS1(t *testing.T, c *paho.Client, topic string, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		res, err := c.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(p)})
		if err != nil || res.ReasonCode >= 0x80 {
			t.Fatalf("publish %s on %s: %v %+v", p, topic, err, res)
		}
	}
}

// leave disconnects c normally and waits until n released the session
// (its record offline).
func leave(t *testing.T, n *sessNode, c *paho.Client, id string) {
	t.Helper()
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "node "+n.name+" releases the session of "+id, func() bool {
		r := n.record(t, id)
		return r != nil && !r.Online && r.State != nil
	})
}

// TestSessionMovesBetweenNodes: a persistent subscriber leaves node a;
// messages published meanwhile (on b) wait in the cluster; it connects
// to b: session present, the messages in order, its subscription live on
// b, and a holds the session no more.
func TestSessionMovesBetweenNodes(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")

	sub, present, _ := persistent(t, a, "mover", true, nil)
	if present {
		t.Fatal("session present on a first connection")
	}
	if _, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "mv/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if r := a.record(t, "mover"); r == nil || !r.Online || r.Node != "a" {
		t.Fatalf("record while connected to a: %+v, want online on a", r)
	}
	leave(t, a, sub, "mover")
	if _, ok := a.srv.Client("mover"); ok {
		t.Fatal("a still holds the session it released")
	}

	pub, _ := b.connect(t, "pub")
	want := []string{"1", "2", "3", "4", "5"}
	sendQoS1(t, pub, "mv/x", want...)

	_, present, got := persistent(t, b, "mover", false, nil)
	if !present {
		t.Fatal("no session present on b")
	}
	poll.Settle(t, "the messages published while offline arrive on b, in order", func() string {
		if p := got.payloads("mv/x"); !slices.Equal(p, want) {
			return fmt.Sprintf("got %v", p)
		}
		return ""
	})
	if r := b.record(t, "mover"); r == nil || !r.Online || r.Node != "b" {
		t.Fatalf("record after the move: %+v, want online on b", r)
	}
	sendQoS1(t, pub, "mv/x", "6")
	poll.Until(t, "a new publish reaches the moved subscriber", func() bool {
		return slices.Equal(got.payloads("mv/x"), append(want, "6"))
	})
	if _, ok := a.srv.Client("mover"); ok {
		t.Fatal("a holds the session again")
	}
}

// TestSessionClaimTakesOver: a persistent client connected to a connects
// to b: a disconnects it (0x8E) and releases the session, b gets it with
// its subscription.
func TestSessionClaimTakesOver(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")

	gone := make(chan byte, 1)
	first, _, _ := persistent(t, a, "roamer", true, gone)
	if _, err := first.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ro/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_, present, got := persistent(t, b, "roamer", false, nil)
	select {
	case code := <-gone:
		if code != 0x8E {
			t.Fatalf("a disconnected roamer with %#x, want 0x8E", code)
		}
	case <-brokertest.OpCtx(t).Done():
		t.Fatal("a did not disconnect roamer")
	}
	if !present {
		t.Fatal("no session present on b after the take-over")
	}
	pub, _ := a.connect(t, "pub")
	poll.Until(t, "the subscription taken over from a works on b", func() bool {
		if len(got.payloads("ro/x")) > 0 {
			return true
		}
		sendQoS1(t, pub, "ro/x", "probe")
		return false
	})
}

// TestSessionOfDeadNode: the record of a session online on a node that is
// not alive is used as it is: the session comes back with the messages
// stored since its connection.
func TestSessionOfDeadNode(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")

	sub, _, _ := persistent(t, a, "orphan", true, nil)
	if _, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "or/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	leave(t, a, sub, "orphan")
	// Online on a again (a claim), then a "dies": it is not alive any
	// more and keeps no session.
	again, _, _ := persistent(t, a, "orphan", false, nil)
	pub, _ := b.connect(t, "pub")
	sendQoS1(t, pub, "or/x", "while-online-on-a")
	alive.set("a", false)
	a.on.Store(false) // a dead node releases nothing
	_ = again.Disconnect(&paho.Disconnect{})

	_, present, got := persistent(t, b, "orphan", false, nil)
	if !present {
		t.Fatal("no session present from the record of a dead node")
	}
	poll.Until(t, "the message stored while the client was online on the dead node arrives", func() bool {
		return slices.Contains(got.payloads("or/x"), "while-online-on-a")
	})
}

// TestSessionInvalidateClusterWide: invalidating on b leaves a tombstone
// for the record and disconnects the client connected to a (0x98).
func TestSessionInvalidateClusterWide(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")

	gone := make(chan byte, 1)
	persistent(t, a, "victim", true, gone)
	found, err := b.sessions.invalidate("victim")
	if !found || !errors.Is(err, broker.ErrNoSession) {
		t.Fatalf("invalidate on b: found %v, error %v; want true and no local session", found, err)
	}
	select {
	case code := <-gone:
		if code != 0x98 {
			t.Fatalf("a disconnected victim with %#x, want 0x98", code)
		}
	case <-brokertest.OpCtx(t).Done():
		t.Fatal("a did not disconnect victim")
	}
	poll.Until(t, "a holds no session of victim", func() bool { _, ok := a.srv.Client("victim"); return !ok })
	if r := b.record(t, "victim"); r == nil || !r.Tombstone || r.Online || r.State != nil {
		t.Fatalf("record after invalidation: %+v, want a tombstone", r)
	}
}

// TestSessionExpirySweep: an offline record past its expiry is deleted
// by the sweep, its held messages purged; one not yet expired stays.
func TestSessionExpirySweep(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	ctx := brokertest.OpCtx(t)
	now := time.Now()
	for id, disconnected := range map[string]time.Time{"old": now.Add(-time.Hour), "young": now} {
		key, _ := clientKey(id)
		st := &broker.SessionState{}
		st.Session.ClientID, st.Session.SessionExpiry = id, 60
		if _, err := a.sessions.put(ctx, key, 0, &sessionRecord{Node: "a", Expiry: 60, DisconnectedAt: disconnected.Unix(), State: st}); err != nil {
			t.Fatal(err)
		}
		if err := a.sessions.publishHeld(ctx, key, "g", []broker.Message{{Topic: "t", QoS: 1, Payload: []byte(id)}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.sessions.sweep(now)
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d deleted, %v; want 1", n, err)
	}
	if r := a.record(t, "old"); r == nil || !r.Tombstone {
		t.Fatalf("expired record after the sweep: %+v, want a tombstone", r)
	}
	if r := a.record(t, "young"); r == nil || r.Tombstone {
		t.Fatalf("record not expired after the sweep: %+v", r)
	}
	for id, want := range map[string]int{"old": 0, "young": 1} {
		key, _ := clientKey(id)
		held, err := a.sessions.readQueue(ctx, key, "g")
		if err != nil || len(held) != want {
			t.Fatalf("held messages of %s: %d (%v), want %d", id, len(held), err, want)
		}
	}
}

// TestSessionRestartDropsMoved: a node whose store restores a session
// whose record names another node drops it (the record is the truth).
func TestSessionRestartDropsMoved(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	dir := t.TempDir()
	a := startSessNode(t, ns, "a", alive, false, dir) // sessions off: the session stays in a's store
	c, _, _ := persistent(t, a, "stale", true, nil)
	if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "st/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	poll.Until(t, "a holds the offline session", func() bool { info, ok := a.srv.Client("stale"); return ok && !info.Connected })
	key, _ := clientKey("stale")
	if _, err := a.sessions.put(brokertest.OpCtx(t), key, 0, &sessionRecord{Node: "b", Online: true}); err != nil {
		t.Fatal(err)
	}
	dropped, released, err := a.sessions.reconcile(brokertest.OpCtx(t))
	if err != nil || dropped != 1 || released != 0 {
		t.Fatalf("reconcile: dropped %d, released %d, %v; want 1, 0", dropped, released, err)
	}
	if _, ok := a.srv.Client("stale"); ok {
		t.Fatal("a keeps a session the record gives to b")
	}
}

// TestSessionClaimsSpread: a node runs at most maxClaims claims and
// releases at once; one more waits and fails when its time is up.
func TestSessionClaimsSpread(t *testing.T) {
	s := &sessions{sem: make(chan struct{}, maxClaims)}
	for range maxClaims {
		if err := s.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim %d: %v, want a deadline error", maxClaims+1, err)
	}
	s.release1()
	if err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestCoverSubjects: the replay's filter subjects never overlap.
func TestCoverSubjects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		filters []string
		want    []string
	}{
		{"one", []string{"a/b"}, []string{"pm.a"}},
		{"same subject twice", []string{"a/b", "a/c"}, []string{"pm.a"}},
		{"hash covers all", []string{"#", "a/b", "+/c"}, []string{"pm.>"}},
		{"plus covers a level", []string{"+/x", "a/y"}, []string{"pm.*"}},
		{"disjoint", []string{"a", "b"}, []string{"pm.a", "pm.b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := coverSubjects(tc.filters, 1); !slices.Equal(got, tc.want) {
				t.Fatalf("coverSubjects(%q) = %q, want %q", tc.filters, got, tc.want)
			}
		})
	}
}

// offlineLocal makes a persistent session of id with a subscription on n
// while n's replicated sessions are off (so it has no record), leaves it
// offline on n, and turns replicated sessions on.
func offlineLocal(t *testing.T, n *sessNode, id string) {
	t.Helper()
	n.on.Store(false)
	c, _, _ := persistent(t, n, id, true, nil)
	subscribe(t, c, "gh/#")
	_ = c.Disconnect(&paho.Disconnect{})
	poll.Until(t, "node "+n.name+" holds the offline session of "+id, func() bool {
		info, ok := n.srv.Client(id)
		return ok && !info.Connected
	})
	n.on.Store(true)
}

// TestSessionTombstoneStopsResurrection: node a keeps a local copy of a
// session and misses the invalidation b makes (its psi subscription is
// gone); a CONNECT of the client id on a finds the tombstone: no session
// present, and a holds none of the old subscriptions. Before tombstones,
// the invalidation deleted the record and a's copy came back.
func TestSessionTombstoneStopsResurrection(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")
	offlineLocal(t, a, "ghost")
	for _, sub := range a.sessions.subs {
		if sub.Subject == invalidatePrefix+".>" {
			if err := sub.Unsubscribe(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if found, err := b.sessions.invalidate("ghost"); found || !errors.Is(err, broker.ErrNoSession) {
		t.Fatalf("invalidate on b: found %v, %v; want no record and no session on b", found, err)
	}
	if _, ok := a.srv.Client("ghost"); !ok {
		t.Fatal("a dropped its copy although it missed the invalidation: the test proves nothing")
	}
	_, present, _ := persistent(t, a, "ghost", false, nil)
	if present {
		t.Fatal("session present on a after the session was invalidated on b")
	}
	if r := a.record(t, "ghost"); r == nil || !r.Online || r.Node != "a" || r.State != nil {
		t.Fatalf("record after the new connection: %+v, want online on a without state", r)
	}
}

// TestSessionTombstoneDropsRestored: a node restarting with a session in
// its store whose record is a tombstone (the session ended while it was
// down) drops it at reconcile.
func TestSessionTombstoneDropsRestored(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	offlineLocal(t, a, "ghost2")
	key := mustKey(t, "ghost2")
	if err := a.sessions.putAny(brokertest.OpCtx(t), key, a.sessions.tombstone(time.Now())); err != nil {
		t.Fatal(err)
	}
	dropped, released, err := a.sessions.reconcile(brokertest.OpCtx(t))
	if err != nil || dropped != 1 || released != 0 {
		t.Fatalf("reconcile: dropped %d, released %d, %v; want 1, 0", dropped, released, err)
	}
	if _, ok := a.srv.Client("ghost2"); ok {
		t.Fatal("a keeps a session whose record is a tombstone")
	}
}

// TestSessionSweepTombstones: a tombstone stays until its time is up,
// then the sweep deletes it.
func TestSessionSweepTombstones(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	ctx := brokertest.OpCtx(t)
	now := time.Now()
	if err := a.sessions.putAny(ctx, mustKey(t, "dead"), a.sessions.tombstone(now)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.sessions.sweep(now.Add(a.sessions.o.TombstoneFor - time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := a.record(t, "dead"); r == nil || !r.Tombstone {
		t.Fatalf("tombstone before its time: %+v", r)
	}
	if _, err := a.sessions.sweep(now.Add(a.sessions.o.TombstoneFor + time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := a.record(t, "dead"); r != nil {
		t.Fatalf("tombstone after its time: %+v, want none", r)
	}
}

// TestSessionSweepOrphans: a record online on a node that is not alive
// is marked offline by the second sweep that finds it so (disconnected_at
// the sweep's time), then expires from there; one on an alive node is
// left alone.
func TestSessionSweepOrphans(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	ctx := brokertest.OpCtx(t)
	for id, node := range map[string]string{"orphan": "z", "live": "a"} {
		st := &broker.SessionState{}
		st.Session.ClientID, st.Session.SessionExpiry = id, 60
		if _, err := a.sessions.put(ctx, mustKey(t, id), 0, &sessionRecord{Node: node, Online: true, Expiry: 60, State: st}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for i := range 2 {
		if _, err := a.sessions.sweep(now); err != nil {
			t.Fatal(err)
		}
		if r := a.record(t, "orphan"); r == nil || r.Online != (i == 0) {
			t.Fatalf("sweep %d: orphan record %+v, want online %v", i+1, r, i == 0)
		}
	}
	if r := a.record(t, "orphan"); r.DisconnectedAt != now.Unix() || r.State == nil {
		t.Fatalf("orphan marked offline: %+v, want disconnected_at %d and its state", r, now.Unix())
	}
	if r := a.record(t, "live"); r == nil || !r.Online {
		t.Fatalf("record online on an alive node: %+v", r)
	}
	if n, err := a.sessions.sweep(now.Add(61 * time.Second)); err != nil || n != 1 {
		t.Fatalf("sweep after the expiry: %d expired, %v; want 1", n, err)
	}
	if r := a.record(t, "orphan"); r == nil || !r.Tombstone {
		t.Fatalf("orphan after its expiry: %+v, want a tombstone", r)
	}
}

// TestSessionReplayBounded: a replay longer than MaxReplay keeps the
// newest messages, in order, and logs how many it dropped, naming the
// client.
func TestSessionReplayBounded(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	var logged lockedBuffer
	a.sessions.o.MaxReplay = 3
	a.sessions.o.Log = slog.New(slog.NewTextHandler(&logged, nil))
	pub, _ := a.connect(t, "pub")
	sendQoS1(t, pub, "rp/x", "1", "2", "3", "4", "5", "6", "7")
	ctx := brokertest.OpCtx(t)
	last, err := a.sessions.last.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := a.sessions.replay(ctx, "busy", []string{"rp/#"}, 0, last)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Payload))
	}
	if want := []string{"5", "6", "7"}; !slices.Equal(got, want) {
		t.Fatalf("replay kept %q, want %q", got, want)
	}
	if l := logged.String(); !strings.Contains(l, "client=busy dropped=4 kept=3") {
		t.Fatalf("log %q does not name the client and the count dropped", l)
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSessionReconcileWhenFeatureOn: a session kept locally while
// replicated sessions were off, whose record now names another node, is
// dropped once the feature switches on (logFeatures), without a restart.
func TestSessionReconcileWhenFeatureOn(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	offlineLocal(t, a, "kept")
	if _, err := a.sessions.put(brokertest.OpCtx(t), mustKey(t, "kept"), 0, &sessionRecord{Node: "b", Online: true}); err != nil {
		t.Fatal(err)
	}
	n, _ := gateNode("a", true, map[string]entry{"a": {ProtocolVersion, 0}, "b": {1, 0}})
	n.sessions = a.sessions
	n.logFeatures() // off: b speaks protocol 1
	if _, ok := a.srv.Client("kept"); !ok {
		t.Fatal("the session was dropped while the feature was off")
	}
	n.mu.Lock()
	n.seen["b"] = seen{entry: registryEntry{Name: "b", Protocol: ProtocolVersion}, at: time.Now()}
	n.mu.Unlock()
	n.logFeatures() // on
	poll.Until(t, "a drops the session whose record names b once the feature is on", func() bool {
		_, ok := a.srv.Client("kept")
		return !ok
	})
}

// TestClaimWaitsForRegistry: a CONNECT's claim while the node has not
// read the registry waits for it (bounded), then fails naming the cause,
// rather than skipping the claim; once the registry is read it claims.
func TestClaimWaitsForRegistry(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	n, _ := gateNode("a", false, map[string]entry{"a": {ProtocolVersion, 0}})
	n.sessions, n.registryWait = a.sessions, 100*time.Millisecond
	_, _, err := n.ClaimSession("early", false, true)
	if want := `cluster node a: claim the session of "early": the cluster registry was not read yet: context deadline exceeded`; err == nil || err.Error() != want {
		t.Fatalf("claim before the registry was read: %v, want %s", err, want)
	}
	if r := a.record(t, "early"); r != nil {
		t.Fatalf("record written by a failed claim: %+v", r)
	}
	n.mu.Lock()
	n.registryRead = true
	n.mu.Unlock()
	if _, _, err := n.ClaimSession("early", false, true); err != nil {
		t.Fatal(err)
	}
	if r := a.record(t, "early"); r == nil || !r.Online || r.Node != "a" {
		t.Fatalf("record after the claim: %+v, want online on a", r)
	}
}
