package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// Replicated sessions on a real three-node cluster (three child
// processes): a persistent session moves between nodes, and survives the
// SIGKILL of a node while publishers keep sending.

// sessionExpiry is the session expiry of the tests' persistent clients.
const sessionExpiry = 600

// persistentClient connects an MQTT 5 client id to addr with a session
// expiry of sessionExpiry, clean start as clean; received PUBLISHes go to
// onPub. It returns the client, whether the server had a session, and
// the error (a dial or CONNECT failure, or a refused CONNECT).
func persistentClient(addr, id string, clean bool, onPub func(paho.PublishReceived)) (*paho.Client, bool, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: conn}
	if onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			onPub(p)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	exp := uint32(sessionExpiry)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}})
	if err != nil {
		_ = conn.Close()
		return nil, false, fmt.Errorf("connect %s to %s: %w", id, addr, err)
	}
	if ca.ReasonCode != 0 {
		_ = conn.Close()
		return nil, false, fmt.Errorf("connect %s to %s: refused %#x %s", id, addr, ca.ReasonCode, ca.Properties.ReasonString)
	}
	return c, ca.SessionPresent, nil
}

// mustPersistent is persistentClient failing the test on an error; the
// client is closed when the test ends.
func mustPersistent(t *testing.T, addr, id string, clean bool, onPub func(paho.PublishReceived)) (*paho.Client, bool) {
	t.Helper()
	c, present, err := persistentClient(addr, id, clean, onPub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, present
}

// subscribeAndLeave subscribes c to filter at QoS 1 and disconnects it
// normally (a persistent session stays in the cluster).
func subscribeAndLeave(t *testing.T, c *paho.Client, filter string) {
	t.Helper()
	if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
}

// TestClusterSessionMove: a persistent subscriber subscribes on n1 and
// leaves; messages published on n3 while it is offline wait in the
// cluster; it connects to n2: session present, the messages in order,
// and a new publish arrives.
func TestClusterSessionMove(t *testing.T) {
	if testing.Short() {
		t.Skip("three broker processes")
	}
	nodes := startThreeNodes(t)
	logsOnFailure(t, nodes)
	// One recorder for both connections: a message may reach the first
	// one before n1 has handled its DISCONNECT.
	rec := &recorder{}
	c, _ := mustPersistent(t, nodes[0].addr, "mover", true, rec.add)
	subscribeAndLeave(t, c, "move/#")
	pub, _ := v5Client(t, nodes[2].addr, "move-pub", nil, nil, nil)
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprint(i))
	}
	// The first message may reach n1's offline session before n1
	// released it, or come after the release: both end in the cluster.
	for _, p := range want {
		publish(t, pub, "move/x", 1, false, p)
	}
	_, present := mustPersistent(t, nodes[1].addr, "mover", false, rec.add)
	if !present {
		t.Fatal("no session present on n2")
	}
	poll.Settle(t, "the messages published while offline, on n2, in order", func() string {
		// A message n1 held and the stream replays comes twice: the
		// first of each, in order, is what counts.
		if got := firsts(rec.of("move/x")); !slices.Equal(got, want) {
			return fmt.Sprintf("got %v", rec.of("move/x"))
		}
		return ""
	})
	publish(t, pub, "move/x", 1, false, "new")
	poll.Until(t, "a new publish reaches the moved session", func() bool { return slices.Contains(rec.of("move/x"), "new") })

	// The operator's invalidate, asked of n3, ends the session on n2.
	if code, out, errOut := runAdminCLI(t, nil, "clients", "invalidate", "mover", "--url", nodes[2].base); code != 0 {
		t.Fatalf("clients invalidate on n3: exit %d: %s%s", code, out, errOut)
	}
	released(t, nodes[1], "mover")
	_, present = mustPersistent(t, nodes[0].addr, "mover", false, nil)
	if present {
		t.Fatal("session present on n1 after the invalidation")
	}
}

// logsOnFailure logs the nodes' logs when t fails.
func logsOnFailure(t *testing.T, nodes []*ccBroker) {
	t.Cleanup(func() {
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("log of n%d:\n%s", i+1, n.log.String())
			}
		}
	})
}

// firsts returns the first occurrence of each payload, in order.
func firsts(payloads []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range payloads {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// released waits until node b no longer holds the session of id: its
// release into the cluster is done. The admin API then answers 404 (no
// session anywhere: invalidated) or shows the session held by the
// cluster (its replicated record, offline).
func released(t *testing.T, b *ccBroker, id string) {
	t.Helper()
	poll.Until(t, "node releases the session of "+id, func() bool {
		resp, err := http.Get(b.base + "/api/v1/clients/" + url.PathEscape(id))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return true
		}
		var d admin.ClientDetail
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&d) == nil && d.ClusterState == admin.HeldByCluster
	})
}

// failurePublisher sends count QoS 1 messages "<name>-<i>" on topic,
// starting on addrs[0] and moving to the next address on any error,
// re-sending only the message not acknowledged. It stops after count
// acknowledgements or when ctx ends, and returns the acknowledged
// payloads.
func failurePublisher(ctx context.Context, name, topic string, count int, addrs []string, sent func(int)) []string {
	var acked []string
	var c *paho.Client
	node := 0
	for i := 0; i < count && ctx.Err() == nil; {
		if c == nil {
			var err error
			if c, _, err = persistentClient(addrs[node%len(addrs)], "pub-"+name, true, nil); err != nil {
				c = nil
				node++
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		payload := fmt.Sprintf("%s-%d", name, i)
		res, err := c.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
		cancel()
		if err != nil || res.ReasonCode >= 0x80 {
			_ = c.Disconnect(&paho.Disconnect{})
			c = nil
			node++
			continue
		}
		acked = append(acked, payload)
		i++
		sent(i)
	}
	if c != nil {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	return acked
}

// TestClusterNodeFailure: a persistent QoS 1 subscriber is offline;
// publishers on n1 and n2 send QoS 1 messages; one node is killed with
// SIGKILL mid-stream (n3, n1, n2 in turn, a fresh cluster each); the
// subscriber reconnects to a surviving node and gets every message that
// was acknowledged. The counts are logged.
func TestClusterNodeFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("three broker processes")
	}
	for _, victim := range []int{2, 0, 1} {
		t.Run(fmt.Sprintf("kill n%d", victim+1), func(t *testing.T) { nodeFailure(t, victim) })
	}
}

// nodeFailure is one run of TestClusterNodeFailure, killing
// nodes[victim]. The subscriber's first node is the victim itself.
func nodeFailure(t *testing.T, victim int) {
	const perPublisher = 300
	nodes := startThreeNodes(t)
	logsOnFailure(t, nodes)
	var survivors []string
	for i, n := range nodes {
		if i != victim {
			survivors = append(survivors, n.addr)
		}
	}
	c, _ := mustPersistent(t, nodes[victim].addr, "offline-sub", true, nil)
	subscribeAndLeave(t, c, "fail/#")
	released(t, nodes[victim], "offline-sub")

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var mu sync.Mutex
	progress := map[string]int{}
	half := make(chan struct{})
	var once sync.Once
	sent := func(name string) func(int) {
		return func(i int) {
			mu.Lock()
			defer mu.Unlock()
			progress[name] = i
			if progress["A"] >= perPublisher/3 && progress["B"] >= perPublisher/3 {
				once.Do(func() { close(half) })
			}
		}
	}
	acked := map[string][]string{}
	var wg sync.WaitGroup
	for name, start := range map[string]int{"A": 0, "B": 1} {
		// Each publisher starts on its node and moves along the others.
		addrs := []string{nodes[start].addr, nodes[(start+1)%3].addr, nodes[(start+2)%3].addr}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := failurePublisher(ctx, name, "fail/"+name, perPublisher, addrs, sent(name))
			mu.Lock()
			acked[name] = a
			mu.Unlock()
		}()
	}
	select {
	case <-half:
	case <-ctx.Done():
		t.Fatalf("the publishers did not get a third of their messages acknowledged before the kill: %v", progress)
	}
	mu.Lock()
	t.Logf("killing n%d with SIGKILL after %d and %d acknowledgements", victim+1, progress["A"], progress["B"])
	mu.Unlock()
	nodes[victim].kill(t)
	wg.Wait()
	var all []string
	for _, name := range []string{"A", "B"} {
		all = append(all, acked[name]...)
	}
	if len(all) < perPublisher {
		t.Fatalf("only %d messages acknowledged in 40 s (A %d, B %d)", len(all), len(acked["A"]), len(acked["B"]))
	}

	rec := &recorder{}
	var sub *paho.Client
	poll.Until(t, "the subscriber reconnects to a surviving node", func() bool {
		for _, addr := range survivors {
			var present bool
			if sub, present, _ = persistentClient(addr, "offline-sub", false, rec.add); sub != nil {
				if !present {
					t.Fatalf("no session present on %s after n%d was killed", addr, victim+1)
				}
				return true
			}
		}
		return false
	})
	t.Cleanup(func() { _ = sub.Disconnect(&paho.Disconnect{}) })
	poll.Settle(t, "every acknowledged message reaches the subscriber", func() string {
		got := map[string]bool{}
		for _, topic := range []string{"fail/A", "fail/B"} {
			for _, p := range rec.of(topic) {
				got[p] = true
			}
		}
		missing := 0
		first := ""
		for _, p := range all {
			if !got[p] {
				if missing == 0 {
					first = p
				}
				missing++
			}
		}
		if missing > 0 {
			return fmt.Sprintf("%d of %d acknowledged messages missing (first %s)", missing, len(all), first)
		}
		return ""
	})
	delivered, dups := 0, 0
	seen := map[string]bool{}
	for _, topic := range []string{"fail/A", "fail/B"} {
		for _, p := range rec.of(topic) {
			delivered++
			if seen[p] {
				dups++
			}
			seen[p] = true
		}
	}
	t.Logf("n%d killed: acknowledged %d (A %d, B %d), delivered %d, unique %d, duplicated %d",
		victim+1, len(all), len(acked["A"]), len(acked["B"]), delivered, len(seen), dups)
}
