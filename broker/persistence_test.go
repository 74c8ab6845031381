package broker_test

import (
	"errors"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// countingPersistence is a Persistence given through Options.Persistence: a
// real Pebble store underneath, and a count of every call the broker makes.
type countingPersistence struct {
	st *store.Store

	mu    sync.Mutex
	calls map[string]int
}

var _ broker.Persistence = (*countingPersistence)(nil)

// openCounting opens a real store in dir and wraps it.
func openCounting(t *testing.T, dir string) *countingPersistence {
	t.Helper()
	st, err := store.Open(store.Options{Dir: dir, Durability: store.DurabilitySync})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return &countingPersistence{st: st, calls: make(map[string]int)}
}

func (p *countingPersistence) count(name string) {
	p.mu.Lock()
	p.calls[name]++
	p.mu.Unlock()
}

// n returns how many times the broker called name.
func (p *countingPersistence) n(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[name]
}

func (p *countingPersistence) Load() (*store.Snapshot, error) {
	p.count("Load")
	return p.st.Load()
}

func (p *countingPersistence) PutSession(s *store.Session, durable bool) error {
	p.count("PutSession")
	return p.st.PutSession(s, durable)
}

func (p *countingPersistence) DeleteSession(id string, durable bool) error {
	p.count("DeleteSession")
	return p.st.DeleteSession(id, durable)
}

func (p *countingPersistence) PutSubscription(s *store.Subscription, durable bool) error {
	p.count("PutSubscription")
	return p.st.PutSubscription(s, durable)
}

func (p *countingPersistence) DeleteSubscription(id, filter string, durable bool) error {
	p.count("DeleteSubscription")
	return p.st.DeleteSubscription(id, filter, durable)
}

func (p *countingPersistence) PutInflight(m *store.Message, durable bool) error {
	p.count("PutInflight")
	return p.st.PutInflight(m, durable)
}

func (p *countingPersistence) DeleteInflight(id string, packetID uint16, durable bool) error {
	p.count("DeleteInflight")
	return p.st.DeleteInflight(id, packetID, durable)
}

func (p *countingPersistence) PutRetained(m *store.Message, durable bool) error {
	p.count("PutRetained")
	return p.st.PutRetained(m, durable)
}

func (p *countingPersistence) DeleteRetained(topic string, durable bool) error {
	p.count("DeleteRetained")
	return p.st.DeleteRetained(topic, durable)
}

func (p *countingPersistence) PutPending(seq uint64, m *store.Message, durable bool) error {
	p.count("PutPending")
	return p.st.PutPending(seq, m, durable)
}

func (p *countingPersistence) DeletePending(seq uint64, durable bool) error {
	p.count("DeletePending")
	return p.st.DeletePending(seq, durable)
}

func (p *countingPersistence) Dir() string { return p.st.Dir() }

func (p *countingPersistence) Close() error {
	p.count("Close")
	return p.st.Close()
}

// TestPersistenceOption runs the broker on a Persistence of the caller's: a
// persistent session, its subscription and a message queued while it was
// offline go through it, survive a restart on a new wrapper over the same
// folder, and the configured data folder is never touched.
func TestPersistenceOption(t *testing.T) {
	dataDir := t.TempDir()
	cfg := testConfig(t.TempDir()) // data_dir: must stay empty
	ext := broker.Extensions{Authenticator: brokertest.AllowAll{}}
	start := func(p broker.Persistence) (*broker.Server, string) {
		t.Helper()
		s, err := broker.New(broker.Options{Config: cfg, Extensions: ext, Logger: testLogger(t), Persistence: p})
		if err != nil {
			t.Fatalf("new server: %v", err)
		}
		if err := s.Start(); err != nil {
			t.Fatalf("start server: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s, s.Addr(cfg.Listeners[0].Name)
	}

	p1 := openCounting(t, dataDir)
	s, addr := start(p1)
	c, _ := connectV5Session(t, addr, "keeper", 3600, nil)
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "keep/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	pub := v3Connect(t, v3Options(addr, "pub"))
	wait(t, "publish", pub.Publish("keep/x", 1, false, []byte("while you were away")))
	pub.Disconnect(0)
	poll.Until(t, "the offline session and its queued message in the store", func() bool {
		snap, err := p1.st.Load() // the store itself: not a call of the broker
		if err != nil {
			t.Fatal(err)
		}
		offline := false
		for _, sess := range snap.Sessions {
			offline = offline || sess.ClientID == "keeper" && sess.DisconnectedAt != 0
		}
		queued := false
		for _, m := range snap.Inflight {
			queued = queued || m.ClientID == "keeper" && m.Topic == "keep/x"
		}
		return offline && queued
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Load", "Close"} {
		if got := p1.n(name); got != 1 {
			t.Errorf("%s called %d times, want 1", name, got)
		}
	}
	for _, name := range []string{"PutSession", "PutSubscription", "PutPending", "DeletePending", "PutInflight"} {
		if p1.n(name) == 0 {
			t.Errorf("%s never called through Options.Persistence", name)
		}
	}

	// The folder opens again only because the broker closed the store.
	p2 := openCounting(t, dataDir)
	_, addr = start(p2)
	expectQueuedAfterRestart(t, addr, "keeper", "while you were away")
	if n := p2.n("Load"); n != 1 {
		t.Errorf("Load called %d times after restart, want 1", n)
	}
	if ents, err := os.ReadDir(cfg.DataDir); err != nil || len(ents) != 0 {
		t.Fatalf("configured data_dir used beside Options.Persistence: %d entries, %v", len(ents), err)
	}
}

// TestPersistenceOptionClosedWhenNewFails: New owns a given Persistence
// from the start, so it closes it when it fails, here on an address in use.
func TestPersistenceOptionClosedWhenNewFails(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t.TempDir())
	cfg.Listeners[0].Address = busy.Addr().String()
	p := openCounting(t, t.TempDir())
	_, err = broker.New(broker.Options{Config: cfg, Logger: testLogger(t), Persistence: p})
	if !errors.Is(err, broker.ErrListen) {
		t.Fatalf("New on an address in use: %v, want ErrListen", err)
	}
	if n := p.n("Close"); n != 1 {
		t.Fatalf("Close called %d times, want 1", n)
	}
}

func (p *countingPersistence) AttributeGet(clientID, key string) (store.Attribute, bool, error) {
	p.count("AttributeGet")
	return p.st.AttributeGet(clientID, key)
}

func (p *countingPersistence) AttributePut(clientID string, a store.Attribute, durable bool) error {
	p.count("AttributePut")
	return p.st.AttributePut(clientID, a, durable)
}

func (p *countingPersistence) AttributePutIfNewer(clientID string, a store.Attribute, orEqual, durable bool) (store.Attribute, bool, bool, error) {
	p.count("AttributePutIfNewer")
	return p.st.AttributePutIfNewer(clientID, a, orEqual, durable)
}

func (p *countingPersistence) AttributeDelete(clientID, key string, durable bool) error {
	p.count("AttributeDelete")
	return p.st.AttributeDelete(clientID, key, durable)
}

func (p *countingPersistence) AttributeList(clientID string) ([]store.Attribute, error) {
	p.count("AttributeList")
	return p.st.AttributeList(clientID)
}

func (p *countingPersistence) ExtensionGet(ext, key string) ([]byte, bool, error) {
	p.count("ExtensionGet")
	return p.st.ExtensionGet(ext, key)
}

func (p *countingPersistence) ExtensionPut(ext, key string, value []byte, durable bool) error {
	p.count("ExtensionPut")
	return p.st.ExtensionPut(ext, key, value, durable)
}

func (p *countingPersistence) ExtensionDelete(ext, key string, durable bool) error {
	p.count("ExtensionDelete")
	return p.st.ExtensionDelete(ext, key, durable)
}

func (p *countingPersistence) ExtensionKeysAfter(ext, prefix, after string, limit int) ([]string, bool, error) {
	p.count("ExtensionKeysAfter")
	return p.st.ExtensionKeysAfter(ext, prefix, after, limit)
}
