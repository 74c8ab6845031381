package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// connAuth is an Authenticator and EventListener that uses connection
// attributes the way an extension does: authenticate stashes the user name
// (and reports what the connection held before), the authorizer allows a
// publish only when the stash is the user's, and each event records what
// its connection holds then.
type connAuth struct {
	srv atomic.Pointer[broker.Server] // set once the broker is started

	mu        sync.Mutex
	conns     map[string]broker.Conn // by user name
	before    map[string]int         // attributes a connection held at authenticate
	atEvent   map[string][]string    // "kind user=VALUE" per user name, for its events
	refuse    string                 // a user name to refuse (after it stashed)
	authorize int                    // publishes authorized
}

func (a *connAuth) Authenticate(_ context.Context, c *broker.Connect) broker.AuthResult {
	all, err := a.srv.Load().ConnectionAttributes(c.Conn)
	if err != nil {
		return broker.AuthResult{Decision: broker.Deny, ReasonString: err.Error()}
	}
	if err := a.srv.Load().PutConnectionAttribute(c.Conn, "user", []byte(c.Username)); err != nil {
		return broker.AuthResult{Decision: broker.Deny, ReasonString: err.Error()}
	}
	a.mu.Lock()
	a.conns[c.Username], a.before[c.Username] = c.Conn, len(all)
	a.mu.Unlock()
	if c.Username == a.refuse {
		return broker.AuthResult{Decision: broker.Deny, ReasonCode: 0x87, ReasonString: "refused"}
	}
	return broker.AuthResult{Decision: broker.Allow, Client: connAuthz{a, c.Conn, c.Username}}
}

func (a *connAuth) SecurityExtensions() []string { return []string{"connattrs-test"} }

func (a *connAuth) OnEvent(e *broker.Event) {
	v, ok, err := a.srv.Load().ConnectionAttribute(e.Conn, "user")
	a.mu.Lock()
	defer a.mu.Unlock()
	a.atEvent[e.Username] = append(a.atEvent[e.Username], fmt.Sprintf("%s user=%s,%v,%v", e.Kind, v, ok, err))
}

func (a *connAuth) conn(user string) broker.Conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conns[user]
}

func (a *connAuth) events(user string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.atEvent[user], "; ")
}

type connAuthz struct {
	a    *connAuth
	conn broker.Conn
	user string
}

func (z connAuthz) AuthorizePublish(*broker.Publish) broker.Verdict {
	v, ok, err := z.a.srv.Load().ConnectionAttribute(z.conn, "user")
	if err != nil || !ok || string(v) != z.user {
		return broker.Verdict{Decision: broker.Deny, ReasonCode: 0x87, ReasonString: fmt.Sprintf("stash %q, %v, %v", v, ok, err)}
	}
	z.a.mu.Lock()
	z.a.authorize++
	z.a.mu.Unlock()
	return broker.Verdict{Decision: broker.Allow}
}

func (z connAuthz) AuthorizeSubscribe(*broker.Subscribe) broker.Verdict {
	return broker.Verdict{Decision: broker.Allow}
}

// TestConnectionAttributes: what an authenticator writes stays with the
// connection for its authorizations and events; a take-over by another
// connection of the same client id starts empty, and the old connection's
// end leaves the new one's attributes alone; an ended connection refuses
// writes but still answers reads; a refused CONNECT's attributes reach its
// auth_failed event and end with it.
func TestConnectionAttributes(t *testing.T) {
	a := &connAuth{conns: map[string]broker.Conn{}, before: map[string]int{}, atEvent: map[string][]string{}, refuse: "mallory"}
	b := &svcBroker{t: t, cfg: testConfig(t.TempDir())}
	b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: a, Events: a})
	a.srv.Store(b.Server)

	withUser := func(u string) func(*paho.Connect) {
		return func(cp *paho.Connect) { cp.Username, cp.UsernameFlag = u, true }
	}
	alice, _ := b.connect5("c1", false, 300, withUser("alice"))
	if _, err := alice.Publish(ctx5(t), &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatalf("alice's publish: %v", err)
	}
	aliceConn := a.conn("alice")

	// Take-over: bob's connection of c1 starts empty.
	bob, _ := b.connect5("c1", false, 300, withUser("bob"))
	alice.disconnected(t)
	bobConn := a.conn("bob")
	a.mu.Lock()
	before := a.before["bob"]
	a.mu.Unlock()
	if aliceConn == bobConn || before != 0 {
		t.Fatalf("bob's connection held %d attributes at authenticate, or is alice's; want a new empty one", before)
	}
	// Alice's connection ends: its disconnect event still read its
	// attributes; writes are refused from then on, reads still answer.
	poll.Until(t, "alice's connection ended", func() bool {
		return errors.Is(b.PutConnectionAttribute(aliceConn, "k", nil), broker.ErrNotConnected)
	})
	errorIs(t, b.PutConnectionAttribute(aliceConn, "k", nil), broker.ErrNotConnected,
		`put connection attribute "k": the connection ended: client not connected`)
	errorIs(t, b.DeleteConnectionAttribute(aliceConn, "user"), broker.ErrNotConnected,
		`delete connection attribute "user": the connection ended: client not connected`)
	if v, ok, err := b.ConnectionAttribute(aliceConn, "user"); string(v) != "alice" || !ok || err != nil {
		t.Errorf("alice's ended connection: user = %q, %v, %v", v, ok, err)
	}
	poll.Until(t, "alice's disconnect event", func() bool { return strings.Contains(a.events("alice"), "disconnect") })
	if got, want := a.events("alice"), "connection_start user=,false,<nil>; auth_succeeded user=alice,true,<nil>; disconnect user=alice,true,<nil>"; got != want {
		t.Errorf("alice's events saw %q, want %q", got, want)
	}
	// Bob's attributes survived alice's end, and his publishes see them.
	if _, err := bob.Publish(ctx5(t), &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatalf("bob's publish: %v", err)
	}
	a.mu.Lock()
	authorized := a.authorize
	a.mu.Unlock()
	if authorized != 2 {
		t.Errorf("%d publishes authorized with the right stash, want 2", authorized)
	}
	if err := b.PutConnectionAttribute(bobConn, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	all, err := b.ConnectionAttributes(bobConn)
	if err != nil || len(all) != 2 || all[0].Key != "k" || string(all[0].Value) != "v" || all[1].Key != "user" || string(all[1].Value) != "bob" || all[0].Time.IsZero() {
		t.Errorf("bob's attributes: %+v, %v", all, err)
	}
	if err := b.DeleteConnectionAttribute(bobConn, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := b.ConnectionAttribute(bobConn, "k"); ok {
		t.Error("k still there after delete")
	}

	// A refused CONNECT: its auth_failed event reads the stash, then the
	// connection has ended.
	b.connectRefused("c2", "mallory")
	poll.Until(t, "mallory's auth_failed event", func() bool { return strings.Contains(a.events("mallory"), "auth_failed") })
	if got, want := a.events("mallory"), "connection_start user=,false,<nil>; auth_failed user=mallory,true,<nil>"; got != want {
		t.Errorf("mallory's events saw %q, want %q", got, want)
	}
	errorIs(t, b.PutConnectionAttribute(a.conn("mallory"), "k", nil), broker.ErrNotConnected,
		`put connection attribute "k": the connection ended: client not connected`)
}

// connectRefused connects an MQTT 5 client that the authenticator refuses.
func (b *svcBroker) connectRefused(id, user string) {
	b.t.Helper()
	conn, err := net.DialTimeout("tcp", b.addr, poll.Timeout)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = conn.Close() })
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ack, err := c.Connect(ctx5(b.t), &paho.Connect{ClientID: id, CleanStart: true, Username: user, UsernameFlag: true, KeepAlive: 30})
	if err == nil || ack == nil || ack.ReasonCode != 0x87 {
		b.t.Fatalf("connect %s as %s: %+v, %v; want refused with 0x87", id, user, ack, err)
	}
}

// TestConnectionAttributeLimits: keys and values keep to the session
// attribute limits, a connection to MaxConnectionAttributesLen in all, and
// the zero Conn names no connection.
func TestConnectionAttributeLimits(t *testing.T) {
	a := &connAuth{conns: map[string]broker.Conn{}, before: map[string]int{}, atEvent: map[string][]string{}}
	b := &svcBroker{t: t, cfg: testConfig(t.TempDir())}
	b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: a, Events: a})
	a.srv.Store(b.Server)
	b.connect5("c1", true, 0, func(cp *paho.Connect) { cp.Username, cp.UsernameFlag = "u", true })
	c := a.conn("u") // holds "user"="u": 5 bytes

	errorIs(t, b.PutConnectionAttribute(c, "", nil), broker.ErrInvalidArgument, `put connection attribute "": invalid argument: empty key`)
	errorIs(t, b.PutConnectionAttribute(c, "\xff", nil), broker.ErrInvalidArgument, `put connection attribute "\xff": invalid argument: key is not valid UTF-8`)
	errorIs(t, b.PutConnectionAttribute(c, "k", make([]byte, broker.MaxAttributeValueLen+1)), broker.ErrInvalidArgument,
		`put connection attribute "k": invalid argument: value of 10241 bytes, at most 10240`)
	// Six values of 10,240 bytes under one-byte keys, with "user": 61,451
	// bytes; a seventh would make 71,692.
	val := bytes.Repeat([]byte("v"), broker.MaxAttributeValueLen)
	for i := range 6 {
		if err := b.PutConnectionAttribute(c, fmt.Sprint(i), val); err != nil {
			t.Fatal(err)
		}
	}
	errorIs(t, b.PutConnectionAttribute(c, "6", val), broker.ErrTooLarge,
		`put connection attribute "6": too large: the connection's attributes would take 71692 bytes, at most 65536`)
	// Replacing a value counts the new size only.
	if err := b.PutConnectionAttribute(c, "5", val); err != nil {
		t.Errorf("replace at the limit: %v", err)
	}
	if err := b.DeleteConnectionAttribute(c, "5"); err != nil {
		t.Fatal(err)
	}
	if err := b.PutConnectionAttribute(c, "6", val); err != nil {
		t.Errorf("put after a delete made room: %v", err)
	}

	var zero broker.Conn
	_, _, err := b.ConnectionAttribute(zero, "k")
	errorIs(t, err, broker.ErrNotConnected, "connection attributes: no connection: client not connected")
}
