package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// The tests of attributes.go: the store alone on one JetStream server
// (two connections standing for two nodes) and on three routed nodes
// (a bucket of three replicas), then brokers using it as
// Options.Attributes.

// attrStore returns a store on its own connection to ns, gate open.
func attrStore(t *testing.T, ns *server.Server) *attributes {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	return newAttributes(js, func() int { return 1 }, nil)
}

// bucketKeys returns the keys of AttributesBucket seen through a, sorted
// (none when the bucket does not exist).
func bucketKeys(t *testing.T, a *attributes) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	kv, err := a.js.KeyValue(ctx, AttributesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// TestAttributeStore: get, put, list, delete and delete-all on one
// server, seen from a second connection (another node); client ids and
// keys with dots, wildcards and other bytes stay apart (one client id a
// prefix of another), and what does not fit NATS is refused naming the
// client and key.
func TestAttributeStore(t *testing.T) {
	ns := natstest.Start(t, "attr")
	a, b := attrStore(t, ns), attrStore(t, ns)
	ids := []string{"c", "c.x", "c*", "c>", "c x", "ç"}
	keys := []string{"k", "k.l", "*", ">", "~", "k=2E", "ключ"}
	for _, id := range ids {
		for i, k := range keys {
			at := store.Attribute{Key: k, Value: []byte(id + "/" + k), Time: int64(i + 1)}
			if err := a.AttributePut(id, at, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	sorted := slices.Sorted(slices.Values(keys))
	for _, id := range ids {
		list, err := b.AttributeList(id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, at := range list {
			got = append(got, at.Key+"="+string(at.Value))
		}
		var want []string
		for _, k := range sorted {
			want = append(want, k+"="+id+"/"+k)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list of %q from the other node = %q, want %q", id, got, want)
		}
		at, ok, err := b.AttributeGet(id, "k.l")
		if err != nil || !ok || string(at.Value) != id+"/k.l" || at.Time != 2 {
			t.Fatalf("get %q k.l = %+v, %v, %v", id, at, ok, err)
		}
	}
	if err := b.AttributeDelete("c", "k", true); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.AttributeGet("c", "k"); ok || err != nil {
		t.Fatalf("get after delete = %v, %v", ok, err)
	}
	if err := a.AttributeDelete("nobody", "k", true); err != nil {
		t.Fatalf("delete of a missing attribute: %v", err)
	}
	if err := b.AttributeDeleteAll("c"); err != nil {
		t.Fatal(err)
	}
	if list, err := a.AttributeList("c"); err != nil || list != nil {
		t.Fatalf("list of c after delete-all = %+v, %v", list, err)
	}
	if list, err := a.AttributeList("c.x"); err != nil || len(list) != len(keys) {
		t.Fatalf("list of c.x after c's delete-all = %d attributes, %v; want %d", len(list), err, len(keys))
	}
	// Written again after the purge: a fresh key.
	if _, had, replaced, err := a.AttributePutIfNewer("c", store.Attribute{Key: "k", Value: []byte("again"), Time: 1}, false, true); err != nil || had || !replaced {
		t.Fatalf("put if newer after delete-all = had %v replaced %v, %v", had, replaced, err)
	}

	long := strings.Repeat("x", 3500)
	err := a.AttributePut(long, store.Attribute{Key: "key", Value: []byte("v"), Time: 1}, true)
	if !errors.Is(err, ErrTooLong) || !strings.Contains(err.Error(), `put attribute "key" of "`+long[:10]) {
		t.Fatalf("put for a client id too long for NATS = %v, want ErrTooLong naming key and client", err)
	}
	err = a.AttributePut("c", store.Attribute{Key: "", Value: []byte("v"), Time: 1}, true)
	if want := `put attribute "" of "c": attribute of "c": empty key`; err == nil || err.Error() != want {
		t.Fatalf("put with an empty key = %v, want %q", err, want)
	}
}

// TestAttributeGateClosed: with the gate closed and the bucket never
// used, delete-all asks nothing of JetStream (no bucket is created); once
// the bucket was used, delete-all reaches it whatever the gate says.
func TestAttributeGateClosed(t *testing.T) {
	ns := natstest.Start(t, "gate")
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	open := false
	a := newAttributes(js, func() int { return 1 }, func() bool { mu.Lock(); defer mu.Unlock(); return open })
	if a.AttributesOn() {
		t.Fatal("gate open, want closed")
	}
	if err := a.AttributeDeleteAll("c"); err != nil {
		t.Fatal(err)
	}
	if _, err := js.KeyValue(context.Background(), AttributesBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("bucket after a delete-all with the gate closed: %v, want none", err)
	}
	mu.Lock()
	open = true
	mu.Unlock()
	if err := a.AttributePut("c", store.Attribute{Key: "k", Value: []byte("v"), Time: 1}, true); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	open = false
	mu.Unlock()
	if err := a.AttributeDeleteAll("c"); err != nil {
		t.Fatal(err)
	}
	if keys := bucketKeys(t, a); len(keys) != 0 {
		t.Fatalf("keys after a delete-all with the gate closed again: %q, want none", keys)
	}
}

// putResult is one AttributePutIfNewer call of the hammer.
type putResult struct {
	time              int64
	prev              store.Attribute
	had, replaced     bool
	writer, goroutine int
}

// hammerPutIfNewer runs put_if_newer on one key from every store, many
// goroutines each, every time in [1, n] written once: goroutine j of G
// writes j+1, j+1+G, j+1+2G ... in turn, so the goroutines climb together
// (most writes meet a concurrent one) and one running behind offers times
// older than the value stored. It checks the outcome: the final value is the one
// with the newest time; no call replaced a newer value or declined an
// older one; the successful writes, in time order, each replaced the one
// before (so their previous values are exactly the chain of winners).
func hammerPutIfNewer(t *testing.T, stores []*attributes, perStore int) {
	const id, key = "client/1", "temperature"
	const each = 16
	goroutines := len(stores) * perStore
	n := goroutines * each
	value := func(tm int64) []byte { return []byte("v" + strconv.FormatInt(tm, 10)) }
	results := make(chan putResult, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w, s := range stores {
		for g := range perStore {
			j := w*perStore + g
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					tm := int64(j + 1 + i*goroutines)
					prev, had, replaced, err := s.AttributePutIfNewer(id, store.Attribute{Key: key, Value: value(tm), Time: tm}, false, true)
					if err != nil {
						errs <- fmt.Errorf("writer %d goroutine %d time %d: %w", w, g, tm, err)
						return
					}
					results <- putResult{time: tm, prev: prev, had: had, replaced: replaced, writer: w, goroutine: g}
				}
			}()
		}
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var wins []putResult
	for r := range results {
		switch {
		case r.had && string(r.prev.Value) != string(value(r.prev.Time)):
			t.Fatalf("time %d: previous value %q does not go with its time %d", r.time, r.prev.Value, r.prev.Time)
		case r.replaced && r.had && r.prev.Time >= r.time:
			t.Fatalf("time %d replaced a newer or equal time %d", r.time, r.prev.Time)
		case !r.replaced && (!r.had || r.prev.Time <= r.time):
			t.Fatalf("time %d not written, though the value it saw (had %v, time %d) is older", r.time, r.had, r.prev.Time)
		}
		if r.replaced {
			wins = append(wins, r)
		}
	}
	slices.SortFunc(wins, func(a, b putResult) int { return int(a.time - b.time) })
	for i, w := range wins {
		if i == 0 {
			if w.had {
				t.Fatalf("first write (time %d) replaced time %d, want none", w.time, w.prev.Time)
			}
			continue
		}
		if !w.had || w.prev.Time != wins[i-1].time {
			t.Fatalf("write of time %d replaced time %d (had %v), want the write before it, time %d", w.time, w.prev.Time, w.had, wins[i-1].time)
		}
	}
	if last := wins[len(wins)-1]; last.time != int64(n) {
		t.Fatalf("the last write to win has time %d, want %d", last.time, n)
	}
	for i, s := range stores {
		at, ok, err := s.AttributeGet(id, key)
		if err != nil || !ok || at.Time != int64(n) || string(at.Value) != string(value(int64(n))) {
			t.Fatalf("final value seen from store %d = %+v, %v, %v; want time %d", i, at, ok, err, n)
		}
	}
	t.Logf("%d writes from %d stores, %d won", n, len(stores), len(wins))
}

// TestPutIfNewerTwoConnections: two "nodes" (connections) on one server.
func TestPutIfNewerTwoConnections(t *testing.T) {
	ns := natstest.Start(t, "hammer")
	hammerPutIfNewer(t, []*attributes{attrStore(t, ns), attrStore(t, ns)}, 8)
}

// TestPutIfNewerThreeNodes: three routed nodes, the bucket with three
// replicas (a compare-and-set conflict is reported differently there).
func TestPutIfNewerThreeNodes(t *testing.T) {
	addrs := testport.Reserve(t, 3)
	nodes := make([]*Node, 3)
	started := make(chan error, 3)
	for i := range nodes {
		cfg := clusterSection("a"+strconv.Itoa(i+1), addrs[i], addrs...)
		go func() {
			n, err := Start(context.Background(), Options{DataDir: t.TempDir(), Config: cfg, Version: "v1", Logger: logTo(t)})
			nodes[i] = n
			started <- err
		}()
	}
	for range nodes {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
	}
	stores := make([]*attributes, 3)
	for i, n := range nodes {
		t.Cleanup(n.Close)
		poll.Until(t, n.Name()+" sees three replicas in force", func() bool { return n.Replicas() == 3 })
		stores[i] = newAttributes(n.js(), n.Replicas, nil)
	}
	// The three make the bucket at the same moment.
	var wg sync.WaitGroup
	for _, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if list, err := s.AttributeList("nobody"); err != nil || list != nil {
				t.Errorf("list of nobody = %+v, %v", list, err)
			}
		}()
	}
	wg.Wait()
	hammerPutIfNewer(t, stores, 4)
	info, err := stores[0].stream.Info(context.Background())
	if err != nil || info.Config.Replicas != 3 {
		t.Fatalf("bucket stream replicas = %v, %v; want 3", info, err)
	}
}

// startAttrBroker starts a broker on a loopback port with allow-all
// security, its data in a temporary folder and attrs as
// Options.Attributes; it closes when the test ends. It returns the
// broker and its address.
func startAttrBroker(t *testing.T, name string, attrs broker.AttributeStore) (*broker.Server, string) {
	t.Helper()
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Durability.Mode = "none"
	srv, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: testLogger().With("node", name), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, srv.Addr(cfg.Listeners[0].Name)
}

// connectAttr connects an MQTT 5 client id to addr with clean start and
// the given session expiry.
func connectAttr(t *testing.T, addr, id string, clean bool, expiry uint32) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

// disconnect sends a DISCONNECT and waits until the broker no longer
// holds id connected.
func disconnect(t *testing.T, c *paho.Client, srv *broker.Server, id string) {
	t.Helper()
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, id+" disconnected", func() bool { info, ok := srv.Client(id); return !ok || !info.Connected })
}

// TestBrokerUsesAttributeStore: with Options.Attributes, the
// SessionAttributes service reads and writes the bucket (what another
// node wrote is seen, put_if_newer compares with it), and the attributes
// end with their session: a session ending with its connection, an
// invalidated one, an expired one, and a clean start on another node
// whose broker never held the session.
func TestBrokerUsesAttributeStore(t *testing.T) {
	ns := natstest.Start(t, "brokers")
	other := attrStore(t, ns) // another node's view
	srvA, addrA := startAttrBroker(t, "A", attrStore(t, ns))
	srvB, addrB := startAttrBroker(t, "B", attrStore(t, ns))

	// A session ending with its connection.
	c := connectAttr(t, addrA, "clean", true, 0)
	if err := srvA.PutAttribute("clean", "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if at, ok, err := other.AttributeGet("clean", "k"); err != nil || !ok || string(at.Value) != "v1" {
		t.Fatalf("bucket after the broker's put = %+v, %v, %v", at, ok, err)
	}
	if err := other.AttributePut("clean", store.Attribute{Key: "j", Value: []byte("from elsewhere"), Time: 100}, true); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := srvA.Attribute("clean", "j"); err != nil || !ok || string(v) != "from elsewhere" {
		t.Fatalf("broker's get of what another node wrote = %q, %v, %v", v, ok, err)
	}
	prev, replaced, err := srvA.PutAttributeIfNewer("clean", "j", []byte("older"), time.Unix(0, 99), false)
	if err != nil || replaced || string(prev) != "from elsewhere" {
		t.Fatalf("put if newer with an older time = %q, %v, %v; want the newer value kept", prev, replaced, err)
	}
	prev, replaced, err = srvA.PutAttributeIfNewer("clean", "j", []byte("newer"), time.Unix(0, 101), false)
	if err != nil || !replaced || string(prev) != "from elsewhere" {
		t.Fatalf("put if newer with a newer time = %q, %v, %v", prev, replaced, err)
	}
	list, err := srvA.Attributes("clean")
	if err != nil || len(list) != 2 || list[0].Key != "j" || string(list[0].Value) != "newer" || !list[0].Time.Equal(time.Unix(0, 101)) {
		t.Fatalf("broker's list = %+v, %v", list, err)
	}
	if err := srvA.DeleteAttribute("clean", "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := other.AttributeGet("clean", "k"); ok {
		t.Fatal("k still in the bucket after the broker's delete")
	}
	disconnect(t, c, srvA, "clean")
	poll.Settle(t, "attributes of the session that ended with its connection gone from the bucket", func() string {
		if list, err := other.AttributeList("clean"); err != nil || list != nil {
			return fmt.Sprintf("%+v, %v", list, err)
		}
		return ""
	})

	// An invalidated persistent session, offline.
	c = connectAttr(t, addrA, "kept", true, 3600)
	if err := srvA.PutAttribute("kept", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	disconnect(t, c, srvA, "kept")
	if _, ok, err := other.AttributeGet("kept", "k"); err != nil || !ok {
		t.Fatalf("attribute of the offline persistent session = %v, %v; want kept", ok, err)
	}
	if err := srvA.InvalidateSession("kept"); err != nil {
		t.Fatal(err)
	}
	if list, err := other.AttributeList("kept"); err != nil || list != nil {
		t.Fatalf("attributes after InvalidateSession = %+v, %v", list, err)
	}

	// An offline session expiring (mochi's sweep, once a second).
	c = connectAttr(t, addrA, "brief", true, 1)
	if err := srvA.PutAttribute("brief", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	disconnect(t, c, srvA, "brief")
	poll.Settle(t, "attributes of the expired session gone from the bucket", func() string {
		if _, ok := srvA.Client("brief"); ok {
			return "session still held"
		}
		if list, err := other.AttributeList("brief"); err != nil || list != nil {
			return fmt.Sprintf("%+v, %v", list, err)
		}
		return ""
	})

	// A clean start on B, which never held the session of A.
	c = connectAttr(t, addrA, "moved", true, 3600)
	if err := srvA.PutAttribute("moved", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	disconnect(t, c, srvA, "moved")
	connectAttr(t, addrB, "moved", true, 3600)
	if list, err := other.AttributeList("moved"); err != nil || list != nil {
		t.Fatalf("attributes after a clean start on the other node = %+v, %v", list, err)
	}
	if err := srvB.PutAttribute("moved", "k2", []byte("new session")); err != nil {
		t.Fatal(err)
	}
	if keys := bucketKeys(t, other); !slices.Equal(keys, []string{"moved.k2"}) {
		t.Fatalf("bucket keys = %q, want [moved.k2]", keys)
	}
}

// TestBrokerAttributeGateClosed: a store whose gate is closed is not
// used: the broker keeps attributes in its own store (no bucket is made),
// as without Options.Attributes, and a session's end asks nothing of
// JetStream.
func TestBrokerAttributeGateClosed(t *testing.T) {
	ns := natstest.Start(t, "closed")
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	srv, addr := startAttrBroker(t, "A", newAttributes(js, func() int { return 1 }, func() bool { return false }))
	c := connectAttr(t, addr, "local", true, 0)
	if err := srv.PutAttribute("local", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := srv.Attribute("local", "k"); err != nil || !ok || string(v) != "v" {
		t.Fatalf("get = %q, %v, %v", v, ok, err)
	}
	disconnect(t, c, srv, "local")
	if _, err := js.KeyValue(context.Background(), AttributesBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("bucket with the gate closed: %v, want none", err)
	}
}
