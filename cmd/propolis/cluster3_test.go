package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// startThreeNodes runs three `propolis serve` processes (allow-all, data
// and extensions folders of their own) forming one cluster over loopback
// routes, and waits until every node sees the three alive with the
// message stream at three replicas.
func startThreeNodes(t *testing.T) []*ccBroker { return startNodes(t, 3, nil) }

// startNodes runs count `propolis serve` processes named n1, n2 ... as
// startThreeNodes does, and waits until every node sees them all alive
// with the message stream at count replicas (3 at most). prepare, when
// not nil, is called with each node's index and configuration file
// before the nodes start (its extensions folder is "ext" beside it).
func startNodes(t *testing.T, count int, prepare func(i int, file string)) []*ccBroker {
	t.Helper()
	return brokersOf(startClusterOf(t, bin, count, prepare))
}

// clusterProc is one node of a test cluster: a `propolis serve` child
// process. Its configuration file (name, route listener, data and
// extensions folders) stays when the test restarts the node, as an
// operator's does; so does its *ccBroker, updated in place (new
// addresses, new log), so that logsOnFailure shows the latest run.
type clusterProc struct {
	*ccBroker
	name, file string
}

// brokersOf returns the nodes' brokers.
func brokersOf(nodes []*clusterProc) []*ccBroker {
	out := make([]*ccBroker, len(nodes))
	for i, p := range nodes {
		out[i] = p.ccBroker
	}
	return out
}

// startClusterOf runs count nodes n1, n2 ... of binary as startNodes
// does, and returns them once every node sees the cluster whole
// (waitCluster).
func startClusterOf(t *testing.T, binary string, count int, prepare func(i int, file string)) []*clusterProc {
	t.Helper()
	routes := testport.Reserve(t, count)
	nodes := make([]*clusterProc, count)
	files := make([]string, count)
	for i := range nodes {
		files[i] = clusterNodeConfig(t, fmt.Sprintf("n%d", i+1), routes[i], routes)
		if prepare != nil {
			prepare(i, files[i])
		}
	}
	var wg sync.WaitGroup
	for i := range nodes {
		p := &clusterProc{name: fmt.Sprintf("n%d", i+1), file: files[i]}
		wg.Add(1)
		go func() { // the nodes wait for each other's JetStream: start them together
			defer wg.Done()
			p.start(t, binary)
			nodes[i] = p
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		if n == nil {
			t.FailNow() // start failed the test
		}
	}
	waitCluster(t, nodes, "", nil)
	return nodes
}

// start runs binary serve on p's configuration and waits until it
// listens for clients. When the test ends, a node still running gets
// SIGTERM and must exit cleanly (a test that stops a node with SIGSTOP
// sends it SIGCONT in a cleanup of its own, which runs first).
func (p *clusterProc) start(t *testing.T, binary string) {
	t.Helper()
	cmd := exec.Command(binary, "serve", "--config", p.file)
	addr, base, log := startServeOps(t, cmd)
	t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return // stopped by the test
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(t, cmd); err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", p.name, err, log.String())
		}
	})
	if base == "" {
		t.Fatalf("%s: no operator HTTP endpoint in the log:\n%s", p.name, log.String())
	}
	if p.ccBroker == nil {
		p.ccBroker = &ccBroker{}
	}
	*p.ccBroker = ccBroker{addr: addr, base: base, log: log, cmd: cmd}
}

// stop sends sig to the node and waits until it exits; after SIGTERM it
// must exit cleanly.
func (p *clusterProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
	if err := waitExit(t, p.cmd); err != nil && sig == syscall.SIGTERM {
		t.Fatalf("%s: exit after SIGTERM: %v\n%s", p.name, err, p.log.String())
	}
}

// clusterStatusOf reads GET /api/v1/cluster of the node at base (up to
// 5 s: a stopped node does not answer).
func clusterStatusOf(base string) (cluster.Status, error) {
	var st cluster.Status
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/api/v1/cluster")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /api/v1/cluster: %s: %s", resp.Status, body)
	}
	return st, json.Unmarshal(body, &st)
}

// clusterStatusEvery is how often waitCluster asks a node for its status
// (each answer lists the streams through JetStream).
const clusterStatusEvery = 100 * time.Millisecond

// waitCluster waits until each of nodes sees the cluster whole: healthy
// (JetStream's meta leader, every stream and bucket with a leader and
// every replica current), every node of nodes alive, PROPOLIS_MESSAGES at
// as many replicas as nodes (3 at most); and until more, when not nil,
// has nothing to say ("" for a node's status, else what is still wrong).
// what adds to the failure's message.
func waitCluster(t *testing.T, nodes []*clusterProc, what string, more func(p *clusterProc, st cluster.Status) string) {
	t.Helper()
	replicas := min(len(nodes), 3)
	for _, p := range nodes {
		var last time.Time
		wrong := "not asked yet"
		poll.Settle(t, fmt.Sprintf("node %s sees the %d nodes alive, healthy, PROPOLIS_MESSAGES at %d replicas%s", p.name, len(nodes), replicas, what), func() string {
			if time.Since(last) < clusterStatusEvery {
				return wrong
			}
			last = time.Now()
			wrong = func() string {
				st, err := clusterStatusOf(p.base)
				if err != nil {
					return err.Error()
				}
				alive := map[string]bool{}
				for _, nd := range st.Nodes {
					alive[nd.Name] = nd.Alive && nd.Registered
				}
				ok := false
				for _, s := range st.Streams {
					ok = ok || s.Name == cluster.MessagesStream && s.Replicas == replicas
				}
				for _, q := range nodes {
					if !alive[q.name] {
						return fmt.Sprintf("%s not alive: %+v", q.name, st)
					}
				}
				if !st.Healthy || !ok {
					return fmt.Sprintf("healthy %v, PROPOLIS_MESSAGES at %d replicas %v: %+v", st.Healthy, replicas, ok, st)
				}
				if more != nil {
					return more(p, st)
				}
				return ""
			}()
			return wrong
		})
	}
}

// v5Client connects an MQTT 5 client id to addr; received PUBLISHes go to
// onPub, a server DISCONNECT's reason code to onDisc (either may be nil).
func v5Client(t *testing.T, addr, id string, onPub func(paho.PublishReceived), onDisc func(byte), will *paho.WillMessage) (*paho.Client, net.Conn) {
	t.Helper()
	return dialV5(t, addr, id, v5Options{onPub: onPub, onDisc: onDisc, will: will})
}

// v5Options are dialV5's options; every field may be left zero.
type v5Options struct {
	// onPub receives the PUBLISHes, onDisc a server DISCONNECT's reason
	// code, onErr the error ending a connection closed without one.
	onPub  func(paho.PublishReceived)
	onDisc func(byte)
	onErr  func(error)
	will   *paho.WillMessage
	// keepAlive in seconds, 30 when 0; a client of a node the test stops
	// asks for more, so that it does not give up on the node itself.
	keepAlive uint16
}

// dialV5 connects an MQTT 5 client id to addr with a clean start, and
// closes its connection when the test ends.
func dialV5(t *testing.T, addr, id string, o v5Options) (*paho.Client, net.Conn) {
	t.Helper()
	c, conn, err := connectV5(t, brokertest.OpCtx(t), addr, id, o)
	if err != nil {
		t.Fatal(err)
	}
	return c, conn
}

// connectV5 is dialV5 returning its error (a refused CONNECT, a CONNACK
// not received before ctx ends) instead of failing the test.
func connectV5(t *testing.T, ctx context.Context, addr, id string, o v5Options) (*paho.Client, net.Conn, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cfg := paho.ClientConfig{ClientID: id, Conn: conn, OnClientError: o.onErr}
	if o.onDisc != nil {
		cfg.OnServerDisconnect = func(d *paho.Disconnect) { o.onDisc(d.ReasonCode) }
	}
	if o.onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			o.onPub(p)
			return true, nil
		}}
	}
	if o.keepAlive == 0 {
		o.keepAlive = 30
	}
	c := paho.NewClient(cfg)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: o.keepAlive, WillMessage: o.will})
	if err != nil || ca.ReasonCode != 0 {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("connect %s to %s: %v %+v", id, addr, err, ca)
	}
	return c, conn, nil
}

// recorder collects the payloads received per topic.
type recorder struct {
	mu  sync.Mutex
	got map[string][]string
}

func (r *recorder) add(p paho.PublishReceived) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]string{}
	}
	r.got[p.Packet.Topic] = append(r.got[p.Packet.Topic], string(p.Packet.Payload))
}

func (r *recorder) of(topic string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got[topic]...)
}

// publish sends one PUBLISH and fails the test on an error or a refusal.
func publish(t *testing.T, c *paho.Client, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	res, err := c.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("publish %s QoS %d: %v", topic, qos, err)
	}
	if qos > 0 && res != nil && res.ReasonCode >= 0x80 {
		t.Fatalf("publish %s QoS %d refused: %#x %s", topic, qos, res.ReasonCode, res.Properties.ReasonString)
	}
}

// probe publishes on topic through pub until rec has received one, so
// that the subscriber's interest has reached the publisher's node.
func probe(t *testing.T, pub *paho.Client, topic string, rec *recorder) {
	t.Helper()
	poll.Until(t, "a probe on "+topic+" crosses the cluster", func() bool {
		if len(rec.of(topic)) > 0 {
			return true
		}
		publish(t, pub, topic, 0, false, "probe")
		return false
	})
}

// TestClusterThreeNodes runs a real three-node cluster (three child
// processes, routes on loopback) and checks what a user sees of it:
// QoS 0/1/2 across nodes in order, retained messages and wills across
// nodes, a client id taken over from another node (0x8E), and a shared
// subscription group with members on two nodes receiving each message
// once.
func TestClusterThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("three broker processes")
	}
	nodes := startThreeNodes(t)
	n1, n2, n3 := nodes[0].addr, nodes[1].addr, nodes[2].addr

	t.Run("qos 0 1 2 in order across nodes", func(t *testing.T) {
		rec := &recorder{}
		sub, _ := v5Client(t, n3, "sub-flow", rec.add, nil, nil)
		if _, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "flow/#", QoS: 2}}}); err != nil {
			t.Fatal(err)
		}
		pub, _ := v5Client(t, n1, "pub-flow", nil, nil, nil)
		probe(t, pub, "flow/probe", rec)
		const n = 30
		for i := range n {
			for q := byte(0); q <= 2; q++ {
				publish(t, pub, fmt.Sprintf("flow/q%d", q), q, false, fmt.Sprint(i))
			}
		}
		for q := 0; q <= 2; q++ {
			topic := fmt.Sprintf("flow/q%d", q)
			poll.Settle(t, fmt.Sprintf("%d messages on %s, in order", n, topic), func() string {
				got := rec.of(topic)
				want := make([]string, 0, n)
				for i := range min(len(got), n) {
					want = append(want, fmt.Sprint(i))
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					return fmt.Sprintf("out of order or duplicated: %v", got)
				}
				if len(got) != n {
					return fmt.Sprintf("%d of %d", len(got), n)
				}
				return ""
			})
		}
	})

	t.Run("retained and wills across nodes", func(t *testing.T) {
		pub, _ := v5Client(t, n2, "pub-retained", nil, nil, nil)
		publish(t, pub, "state/lamp", 1, true, "on")
		poll.Until(t, "n1 stores the retained message published on n2", func() bool {
			resp, err := http.Get(nodes[0].base + "/api/v1/retained?filter=" + url.QueryEscape("state/#"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"topic":"state/lamp"`)
		})
		retained := &recorder{}
		c, _ := v5Client(t, n1, "sub-retained", retained.add, nil, nil)
		if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "state/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "a subscriber on n1 gets the retained message", func() bool {
			got := retained.of("state/lamp")
			return len(got) == 1 && got[0] == "on"
		})

		rec := &recorder{}
		sub, _ := v5Client(t, n3, "sub-will", rec.add, nil, nil)
		if _, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "wills/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		pub2, _ := v5Client(t, n1, "pub-willprobe", nil, nil, nil)
		probe(t, pub2, "wills/probe", rec)
		_, conn := v5Client(t, n1, "dying", nil, nil, &paho.WillMessage{Topic: "wills/dying", QoS: 1, Payload: []byte("gone")})
		_ = conn.Close() // no DISCONNECT: the will is published on n1
		poll.Until(t, "the will of a client dropped on n1 reaches n3", func() bool { return len(rec.of("wills/dying")) == 1 })
	})

	t.Run("take-over from another node", func(t *testing.T) {
		kicked := make(chan byte, 1)
		v5Client(t, n1, "roamer", nil, func(code byte) { kicked <- code }, nil)
		second, _ := v5Client(t, n2, "roamer", nil, nil, nil)
		select {
		case code := <-kicked:
			if code != 0x8E {
				t.Fatalf("n1 disconnected roamer with %#x, want 0x8E", code)
			}
		case <-brokertest.OpCtx(t).Done():
			t.Fatal("n1 did not disconnect roamer after it connected to n2")
		}
		if _, err := second.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "roamer/alive", QoS: 1, Payload: []byte("x")}); err != nil {
			t.Fatalf("the connection on n2 does not work after the take-over: %v", err)
		}
	})

	t.Run("shared subscription across nodes", func(t *testing.T) {
		recA, recB := &recorder{}, &recorder{}
		for _, m := range []struct {
			addr, id string
			rec      *recorder
		}{{n1, "member-a", recA}, {n2, "member-b", recB}} {
			c, _ := v5Client(t, m.addr, m.id, m.rec.add, nil, nil)
			if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/jobs/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
		}
		pub, _ := v5Client(t, n3, "pub-jobs", nil, nil, nil)
		poll.Until(t, "both members' nodes hold the group's interest", func() bool {
			if len(recA.of("jobs/probe")) > 0 && len(recB.of("jobs/probe")) > 0 {
				return true
			}
			publish(t, pub, "jobs/probe", 1, false, "probe")
			return false
		})
		const n = 100
		for i := range n {
			publish(t, pub, "jobs/work", 1, false, fmt.Sprint(i))
		}
		poll.Settle(t, "each job delivered once across the two members", func() string {
			a, b := recA.of("jobs/work"), recB.of("jobs/work")
			seen := map[string]int{}
			for _, p := range append(a, b...) {
				seen[p]++
			}
			for p, c := range seen {
				if c > 1 {
					return fmt.Sprintf("job %s delivered %d times", p, c)
				}
			}
			if len(seen) != n {
				return fmt.Sprintf("%d of %d jobs delivered (a %d, b %d)", len(seen), n, len(a), len(b))
			}
			if len(a) == 0 || len(b) == 0 {
				return fmt.Sprintf("one member got every job (a %d, b %d)", len(a), len(b))
			}
			return ""
		})
	})
}
