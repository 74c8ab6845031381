package cluster

import (
	"context"
	"fmt"
	"net"
	"sync"
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

// The tests of owner.go and shared.go run two "nodes" in one process: two
// real brokers, each with its own NATS connection, owners and shared under
// its own node name, on one embedded JetStream server.

// testLevels is the topic level distribution of the test nodes.
const testLevels = 1

// sessionNode is one test node: a real broker on a loopback port with
// owners and shared wired to it through testCluster.
type sessionNode struct {
	name   string
	srv    *broker.Server
	addr   string
	nc     *nats.Conn
	owners *owners
	shared *shared

	fwdMu     sync.Mutex
	forwarded map[string]int // payload -> Forward calls
}

// forwardedCount returns how many times a message with payload p was
// forwarded by n.
func (n *sessionNode) forwardedCount(p string) int {
	n.fwdMu.Lock()
	defer n.fwdMu.Unlock()
	return n.forwarded[p]
}

// testCluster is the broker.Cluster of a test node: Connected and
// Disconnected go to owners, shared Subscribed and Unsubscribed to shared,
// as the Node does. Forward publishes on the node's connection in the
// wire format of route.go (encode), without the router: the tests of
// take-over and shared subscriptions need no plain routing.
type testCluster struct{ n *sessionNode }

var _ broker.Cluster = testCluster{}

func (c testCluster) Forward(m *broker.Message, publisher string) error {
	c.n.fwdMu.Lock()
	if c.n.forwarded == nil {
		c.n.forwarded = map[string]int{}
	}
	c.n.forwarded[string(m.Payload)]++
	c.n.fwdMu.Unlock()
	return c.n.nc.PublishMsg(encode(m, publisher, c.n.name, routingSubject(m.Topic, testLevels)))
}

func (c testCluster) Subscribed(filter, group string) {
	if group != "" {
		c.n.shared.subscribed(filter, group)
	}
}

func (c testCluster) Unsubscribed(filter, group string) {
	if group != "" {
		c.n.shared.unsubscribed(filter, group)
	}
}

func (c testCluster) CheckFilter(filter, group string) error {
	return filterFits(filter, group, testLevels, nodeQueue(c.n.name))
}

func (testCluster) CheckClientID(id string) error {
	_, err := clientKey(id)
	return err
}

func (c testCluster) Connected(id string)    { c.n.owners.connected(id) }
func (c testCluster) Disconnected(id string) { c.n.owners.disconnected(id) }

// startSessionNode starts node name on the NATS server ns: a broker with
// allow-all security and its data in a temporary folder, its owners and
// shared, all closed when the test ends. Each of opts may change the
// options of its owners.
func startSessionNode(t *testing.T, ns *server.Server, name string, opts ...func(*ownerOptions)) *sessionNode {
	t.Helper()
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Durability.Mode = "none"
	n := &sessionNode{name: name, nc: natstest.Connect(t, ns, nats.ReconnectWait(20*time.Millisecond), nats.MaxReconnects(-1))}
	// The broker reports to testCluster{n} from New on; owners and shared
	// exist before Start, the first point that reaches them.
	srv, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: testLogger().With("node", name), Cluster: testCluster{n}})
	if err != nil {
		t.Fatalf("node %s: new broker: %v", name, err)
	}
	n.srv = srv
	js, err := jetstream.New(n.nc)
	if err != nil {
		t.Fatalf("node %s: jetstream: %v", name, err)
	}
	oo := ownerOptions{JS: js, Node: name, Replicas: 1, Broker: srv, Log: testLogger().With("node", name)}
	for _, f := range opts {
		f(&oo)
	}
	n.owners, err = newOwners(oo)
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	n.shared, err = newShared(sharedOptions{Conn: n.nc, Levels: testLevels, Broker: srv, Log: testLogger().With("node", name)})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("node %s: start broker: %v", name, err)
	}
	t.Cleanup(func() {
		_ = srv.Close()
		n.owners.Close()
		n.shared.Close()
	})
	n.addr = srv.Addr(cfg.Listeners[0].Name)
	return n
}

// connected reports whether node n holds a connected session of id.
func (n *sessionNode) connected(id string) bool {
	info, ok := n.srv.Client(id)
	return ok && info.Connected
}

// connect5 connects an MQTT 5 client id to n; the reason code of a
// DISCONNECT from the server goes to gone.
func connect5(t *testing.T, n *sessionNode, id string, gone chan<- byte, onPublish func(*paho.Publish)) *paho.Client {
	t.Helper()
	c, err := dial5(t, n, id, gone, onPublish)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dial5 is connect5 returning its error, for other goroutines than the
// test's.
func dial5(t *testing.T, n *sessionNode, id string, gone chan<- byte, onPublish func(*paho.Publish)) (*paho.Client, error) {
	cfg := paho.ClientConfig{ClientID: id}
	if gone != nil {
		cfg.OnServerDisconnect = func(d *paho.Disconnect) { gone <- d.ReasonCode }
	}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(r paho.PublishReceived) (bool, error) { onPublish(r.Packet); return true, nil },
		}
	}
	conn, err := net.DialTimeout("tcp", n.addr, poll.Timeout)
	if err != nil {
		return nil, fmt.Errorf("dial node %s: %w", n.name, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cfg.Conn = conn
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		return nil, fmt.Errorf("connect %s to node %s: %w", id, n.name, err)
	}
	return c, nil
}
