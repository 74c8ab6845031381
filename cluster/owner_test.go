package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// ownerOf returns the node ClientsBucket names for id, "" when it has no
// entry.
func ownerOf(t *testing.T, n *sessionNode, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	e, err := n.owners.kv.Get(ctx, testKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	var v ownerEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		t.Fatalf("entry of %s: %v", id, err)
	}
	return v.Node
}

// watched waits until n's watch has handled every entry the bucket holds
// now.
func watched(t *testing.T, n *sessionNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	st, err := n.owners.kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	poll.Until(t, fmt.Sprintf("node %s's watch at revision %d", n.name, last), func() bool { return n.owners.seenRev.Load() >= last })
}

// ownEntry reports whether n's own put for one connection of id is done
// and is the latest entry of id.
func ownEntry(t *testing.T, n *sessionNode, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	e, err := n.owners.kv.Get(ctx, testKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	n.owners.mu.Lock()
	defer n.owners.mu.Unlock()
	lo := n.owners.local[testKey(id)]
	return lo != nil && lo.conns == 1 && lo.puts == 0 && lo.rev == e.Revision()
}

// TestTakeOverAcrossNodes connects a client id on node A, then on node B:
// A disconnects its client with 0x8E, B keeps its own, and the bucket
// names B.
func TestTakeOverAcrossNodes(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")
	goneA := make(chan byte, 1)
	connect5(t, a, "dev/1 é", goneA, nil)
	poll.Until(t, "the bucket names a", func() bool { return ownerOf(t, a, "dev/1 é") == "a" })
	goneB := make(chan byte, 1)
	connect5(t, b, "dev/1 é", goneB, nil)
	select {
	case code := <-goneA:
		if code != 0x8E {
			t.Fatalf("node a's client disconnected with %#x, want 0x8E", code)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("node a's client not disconnected")
	}
	poll.Settle(t, "the client on b only", func() string {
		if a.connected("dev/1 é") || !b.connected("dev/1 é") {
			return fmt.Sprintf("connected on a %v, on b %v", a.connected("dev/1 é"), b.connected("dev/1 é"))
		}
		if o := ownerOf(t, a, "dev/1 é"); o != "b" {
			return "the bucket names " + o
		}
		return ""
	})
	watched(t, a)
	watched(t, b)
	if !b.connected("dev/1 é") {
		t.Fatal("node b's client disconnected once both watches handled every entry")
	}
	select {
	case code := <-goneB:
		t.Fatalf("node b's client disconnected with %#x", code)
	default:
	}
}

// TestTakeOverClosesV3 takes an MQTT 3.1.1 client id over: node A closes
// its connection (3.1.1 has no DISCONNECT from the server).
func TestTakeOverClosesV3(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")
	lost := make(chan struct{})
	o := paho3.NewClientOptions().AddBroker("tcp://" + a.addr).SetClientID("old-v3").SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho3.Client, error) { close(lost) })
	c := paho3.NewClient(o)
	brokertest.WaitToken(t, "connect old-v3 to a", c.Connect())
	t.Cleanup(func() { c.Disconnect(0) })
	poll.Until(t, "the bucket names a", func() bool { return ownerOf(t, a, "old-v3") == "a" })
	connect5(t, b, "old-v3", nil, nil)
	select {
	case <-lost:
	case <-time.After(poll.Timeout):
		t.Fatal("node a's 3.1.1 client not disconnected")
	}
	if !b.connected("old-v3") {
		t.Fatal("node b's client not connected")
	}
}

// TestTakeOverRapidAlternation connects one client id on A and B in turn,
// without waiting for anything between connections: once the take-overs
// settle, exactly one node holds a connection, the one the bucket names.
func TestTakeOverRapidAlternation(t *testing.T) {
	ns := natstest.Start(t, "n")
	nodes := []*sessionNode{startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")}
	for i := range 10 {
		connect5(t, nodes[i%2], "flip", nil, nil)
	}
	poll.Settle(t, "one connection, on the node the bucket names", func() string {
		ca, cb := nodes[0].connected("flip"), nodes[1].connected("flip")
		owner := ownerOf(t, nodes[0], "flip")
		if ca == cb || (ca && owner != "a") || (cb && owner != "b") {
			return fmt.Sprintf("connected on a %v, on b %v, bucket names %q", ca, cb, owner)
		}
		return ""
	})
	watched(t, nodes[0])
	watched(t, nodes[1])
	if ca, cb := nodes[0].connected("flip"), nodes[1].connected("flip"); ca == cb {
		t.Fatalf("once both watches handled every entry: connected on a %v, on b %v", ca, cb)
	}
}

// TestTakeOverConcurrentConnects connects each of several client ids on A
// and B at the same time: each ends connected on exactly one node, the
// one of the later KV revision, which the bucket names.
func TestTakeOverConcurrentConnects(t *testing.T) {
	ns := natstest.Start(t, "n")
	nodes := []*sessionNode{startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")}
	const ids = 20
	errs := make(chan error, 2*ids)
	var wg sync.WaitGroup
	for i := range ids {
		for _, n := range nodes {
			wg.Go(func() {
				_, err := dial5(t, n, fmt.Sprintf("race-%d", i), nil, nil)
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		// A connection taken over before its CONNACK was read fails its
		// CONNECT: that is one of the two outcomes, not an error.
		if err != nil {
			t.Log(err)
		}
	}
	for i := range ids {
		id := fmt.Sprintf("race-%d", i)
		poll.Settle(t, id+" on one node, the one the bucket names", func() string {
			ca, cb := nodes[0].connected(id), nodes[1].connected(id)
			owner := ownerOf(t, nodes[0], id)
			if ca == cb || (ca && owner != "a") || (cb && owner != "b") {
				return fmt.Sprintf("connected on a %v, on b %v, bucket names %q", ca, cb, owner)
			}
			return ""
		})
	}
	watched(t, nodes[0])
	watched(t, nodes[1])
	for i := range ids {
		id := fmt.Sprintf("race-%d", i)
		if ca, cb := nodes[0].connected(id), nodes[1].connected(id); ca == cb {
			t.Errorf("%s once both watches handled every entry: connected on a %v, on b %v", id, ca, cb)
		}
	}
}

// TestReconnectSameNodeKeepsClient connects a client id to A twice (mochi's
// own take-over on one node): the second connection is not disconnected
// by A's older entry, and the bucket still names A.
func TestReconnectSameNodeKeepsClient(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, _ := startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")
	first := make(chan byte, 1)
	connect5(t, a, "again", first, nil)
	poll.Until(t, "the bucket names a", func() bool { return ownerOf(t, a, "again") == "a" })
	second := make(chan byte, 1)
	c := connect5(t, a, "again", second, nil)
	select {
	case code := <-first:
		if code != 0x8E {
			t.Fatalf("first connection disconnected with %#x, want 0x8E (mochi's take-over)", code)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("first connection not taken over")
	}
	// The second connection's entry comes after its CONNACK (from
	// OnSessionEstablished); once A's watch has handled the latest entry
	// of the bucket, it has handled every entry for "again".
	poll.Until(t, "the second connection's entry", func() bool { return ownEntry(t, a, "again") })
	watched(t, a)
	if !a.connected("again") || ownerOf(t, a, "again") != "a" {
		t.Fatalf("after a reconnect to a: connected %v, bucket names %q", a.connected("again"), ownerOf(t, a, "again"))
	}
	select {
	case code := <-second:
		t.Fatalf("second connection disconnected with %#x", code)
	default:
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

// TestCleanDisconnectRemovesEntry: a client's DISCONNECT removes its
// entry; an entry another node took is left to that node.
func TestCleanDisconnectRemovesEntry(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")
	c := connect5(t, a, "bye", nil, nil)
	poll.Until(t, "the bucket names a", func() bool { return ownerOf(t, a, "bye") == "a" })
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "no entry for bye", func() bool { return ownerOf(t, a, "bye") == "" })

	connect5(t, a, "moved", nil, nil)
	poll.Until(t, "the bucket names a", func() bool { return ownerOf(t, a, "moved") == "a" })
	connect5(t, b, "moved", nil, nil)
	poll.Until(t, "a's client gone", func() bool { return !a.connected("moved") })
	poll.Settle(t, "b's entry kept", func() string {
		if o := ownerOf(t, a, "moved"); o != "b" {
			return "the bucket names " + o
		}
		return ""
	})
}

// TestOwnersWatchResumesAfterReconnect drops node A's NATS connection
// from the server side; once it has reconnected, a take-over on B still
// disconnects A's client.
func TestOwnersWatchResumesAfterReconnect(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startSessionNode(t, ns, "a"), startSessionNode(t, ns, "b")
	goneA := make(chan byte, 1)
	connect5(t, a, "sticky", goneA, nil)
	poll.Until(t, "the bucket names a", func() bool { return ownerOf(t, b, "sticky") == "a" })
	id, err := a.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.DisconnectClientByID(id); err != nil {
		t.Fatalf("drop node a's connection: %v", err)
	}
	poll.Until(t, "node a reconnected", func() bool { return a.nc.Stats().Reconnects > 0 && a.nc.IsConnected() })
	connect5(t, b, "sticky", nil, nil)
	select {
	case code := <-goneA:
		if code != 0x8E {
			t.Fatalf("node a's client disconnected with %#x, want 0x8E", code)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("node a's client not disconnected after the reconnect")
	}
}

// TestClientKey checks the key encoding: legal, injective on the cases
// that could collide.
func TestClientKey(t *testing.T) {
	cases := []struct{ name, id, want string }{
		{"plain", "sensor_1-a", "sensor_1-a"},
		{"dot", "a.b", "a=2Eb"},
		{"escape char", "a=2Eb", "a=3D2Eb"},
		{"slash and space", "x/ y", "x=2F=20y"},
		{"utf-8", "é", "=C3=A9"},
		{"wildcards", "*>", "=2A=3E"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := testKey(c.id); got != c.want {
				t.Fatalf("clientKey(%q) = %q, want %q", c.id, got, c.want)
			}
		})
	}
}
