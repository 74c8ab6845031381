package broker_test

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// A session removed (InvalidateSession, or SetSessionExpiry running it
// out) while a new connection of its client id takes it over: whatever
// the order, the broker's memory and its store agree at the end.

// onAuth runs act, once armed, on its own goroutine when a CONNECT is
// accepted, and holds the connection until the removal has found the
// session (see removing): the removal then races the take-over that
// follows.
type onAuth struct {
	*brokertest.Rules
	armed atomic.Pointer[func() error]
	done  chan error
	found atomic.Pointer[chan struct{}]
}

func (o *onAuth) OnEvent(e *broker.Event) {
	o.Rules.OnEvent(e)
	if e.Kind != broker.EventAuthSucceeded {
		return
	}
	if act := o.armed.Swap(nil); act != nil {
		found := make(chan struct{})
		o.found.Store(&found)
		go func() { o.done <- (*act)() }()
		select {
		case <-found:
		case <-time.After(poll.Timeout):
		}
	}
}

// removing is the broker's SetBeforeRemove hook: it tells OnEvent the
// removal found the session.
func (o *onAuth) removing() {
	if ch := o.found.Swap(nil); ch != nil {
		close(*ch)
	}
}

// TestRemoveSessionRacingTakeOver: an auth_succeeded handler removes the
// session the connecting client is about to resume. The client may get
// its session back (session present) or a new one, or be disconnected,
// but what the store holds is what the broker holds: never a session
// record whose subscriptions are only in memory.
func TestRemoveSessionRacingTakeOver(t *testing.T) {
	invalidate := func(s *broker.Server) error { return s.InvalidateSession("s") }
	expire := func(s *broker.Server) error { _, err := s.SetSessionExpiry("s", 0); return err }
	for _, tc := range []struct {
		name string
		act  func(s *broker.Server) error
		// late holds the removal, once it has found the offline
		// session, until the new connection has taken it over.
		late bool
	}{
		{"invalidate", invalidate, false},
		{"expire", expire, false},
		{"invalidate after take-over", invalidate, true},
		{"expire after take-over", expire, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &onAuth{Rules: &brokertest.Rules{}, done: make(chan error, 1)}
			b := &svcBroker{t: t, cfg: testConfig(t.TempDir()), rules: o.Rules}
			b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: o, Events: o})
			var hold atomic.Bool
			b.SetBeforeRemove(func(id string) {
				o.removing()
				if hold.Swap(false) {
					poll.Until(t, id+" taken over", func() bool { info, ok := b.Client(id); return ok && info.Connected })
				}
			})
			agree := func(when string) {
				t.Helper()
				var want, got string
				defer func() {
					if t.Failed() {
						t.Logf("memory holds %s, the store %s", want, got)
					}
				}()
				poll.Until(t, "memory and store agree "+when, func() bool {
					want, got = b.heldInMemory("s"), b.stored("s")
					return want == got
				})
			}
			for try := range 30 {
				c, _ := b.connect5("s", false, 3600, nil)
				c.subscribe(t, "t/1", 1)
				c.subscribe(t, "t/2", 1)
				c.leave()
				b.awaitOffline("s")

				hold.Store(tc.late)
				act := func() error { return tc.act(b.Server) }
				o.armed.Store(&act)
				conn, present := b.connectLoose("s")
				if err := <-o.done; err != nil {
					t.Fatalf("try %d: %v", try, err)
				}
				agree(fmt.Sprintf("after try %d (session present %v)", try, present))
				_ = conn.Close()
				poll.Until(t, "s disconnected", func() bool {
					info, ok := b.Client("s")
					return !ok || !info.Connected
				})
				agree(fmt.Sprintf("once try %d disconnected", try))
				if err := b.InvalidateSession("s"); err != nil && !errorsIsNoSession(err) {
					t.Fatal(err)
				}
				agree("after cleaning up")
			}
		})
	}
}

// heldInMemory lists what the broker holds of id's session in memory, in
// the form of stored: its session and its subscriptions; "[]" for none.
func (b *svcBroker) heldInMemory(id string) string {
	b.t.Helper()
	if _, ok := b.Client(id); !ok {
		return "[]"
	}
	subs, err := b.Subscriptions(id)
	if err != nil {
		return "[]" // removed since
	}
	what := []string{"session"}
	for _, s := range subs {
		what = append(what, "subscription "+s.Filter)
	}
	return fmt.Sprint(what)
}

// connectLoose connects id as connect5 does (resuming its session with an
// expiry of 3600 s) but takes a refused or cut-off connection in its
// stride. It returns the connection and whether the CONNACK said session
// present.
func (b *svcBroker) connectLoose(id string) (net.Conn, bool) {
	b.t.Helper()
	conn, err := net.DialTimeout("tcp", b.addr, poll.Timeout)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = conn.Close() })
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	expiry := uint32(3600)
	ack, err := c.Connect(ctx5(b.t), &paho.Connect{ClientID: id, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, RequestProblemInfo: true}})
	if err != nil {
		return conn, false // disconnected as it connected
	}
	return conn, ack.SessionPresent
}

func errorsIsNoSession(err error) bool { return errors.Is(err, broker.ErrNoSession) }

// TestServiceAttributeRacingInvalidate: attribute writes racing
// InvalidateSession never leave the ended session in the store (a session
// record written after the removal would bring the session back at the
// next start).
func TestServiceAttributeRacingInvalidate(t *testing.T) {
	b := startSvc(t)
	// Each session ended just after the write found it.
	for _, expiry := range []uint32{600, 0} {
		id := fmt.Sprintf("ended%d", expiry)
		b.connect5(id, true, expiry, nil)
		var once sync.Once
		b.SetAttributeFound(func(found string) {
			if found == id {
				once.Do(func() {
					if err := b.InvalidateSession(id); err != nil {
						t.Error(err)
					}
				})
			}
		})
		if err := b.PutAttribute(id, "k", []byte("v")); !errors.Is(err, broker.ErrNoSession) {
			t.Errorf("put to %s ended meanwhile: %v; want no session", id, err)
		}
		poll.Until(t, id+" gone from the store", func() bool { return b.stored(id) == "[]" })
	}
	b.SetAttributeFound(nil)

	// Writes from 4 goroutines racing the removal.
	var ids []string
	for try := range 60 {
		id := fmt.Sprintf("a%d", try)
		ids = append(ids, id)
		b.connect5(id, true, uint32(600*(try%2)), nil) // persistent, then not
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 1000 {
					err := b.PutAttribute(id, fmt.Sprintf("k%d", g), []byte("v"))
					if errors.Is(err, broker.ErrNoSession) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		if err := b.InvalidateSession(id); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		// The kicked connection may still be saving and removing the
		// session as it ends.
		poll.Until(t, fmt.Sprintf("try %d: %s gone from the store", try, id), func() bool { return b.stored(id) == "[]" })
	}
	b.restart()
	for _, id := range ids {
		if _, ok := b.Client(id); ok {
			t.Errorf("%s restored after its session was invalidated", id)
		}
	}
}
