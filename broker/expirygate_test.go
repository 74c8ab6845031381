package broker_test

import (
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// SetSessionExpiry on a connected client writes mochi's fields only where
// mochi cannot read them at the same time (expirygate.go). Before that,
// `go test -race` found the write racing mochi's reads at the end of the
// connection (attachClient), in processDisconnect and in SendConnack.

// TestSetSessionExpiryConnectedNoRace: a change made while the client
// waits, then the connection's end reading it (plain DISCONNECT, a
// DISCONNECT with its own interval, a 3.1.1 clean session). Under -race it
// failed before the gate; without -race it checks the outcome.
func TestSetSessionExpiryConnectedNoRace(t *testing.T) {
	b := startSvc(t)

	c, _ := b.connect5("plain", true, 0, nil)
	if got, err := b.SetSessionExpiry("plain", 60); err != nil || got != 60 {
		t.Fatalf("SetSessionExpiry = %d, %v", got, err)
	}
	c.leave()
	b.awaitOffline("plain")
	if info, _ := b.Client("plain"); info.SessionExpiry != 60 {
		t.Errorf("plain: offline with an expiry of %d, want 60", info.SessionExpiry)
	}

	// mochi refuses a DISCONNECT's non-zero interval when the session's is
	// 0 (MQTT 5 3.14.2.2.2): it must see the 60 set while connected.
	c, _ = b.connect5("own", true, 0, nil)
	if _, err := b.SetSessionExpiry("own", 60); err != nil {
		t.Fatal(err)
	}
	thirty := uint32(30)
	if err := c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &thirty}}); err != nil {
		t.Fatal(err)
	}
	b.awaitOffline("own")
	if info, _ := b.Client("own"); info.SessionExpiry != 30 {
		t.Errorf("own: offline with an expiry of %d, want the DISCONNECT's 30", info.SessionExpiry)
	}

	v3 := v3Connect(t, v3Options(b.addr, "v3"))
	if _, err := b.SetSessionExpiry("v3", 600); err != nil {
		t.Fatal(err)
	}
	v3.Disconnect(0)
	b.awaitOffline("v3")
	if got := b.stored("v3"); got != "[session]" {
		t.Errorf("v3: store holds %s, want [session]", got)
	}
}

// expiryOnSubscribe sets the session expiry of a client that subscribes,
// from its subscribe event, on the client's own connection goroutine,
// which is busy with the SUBSCRIBE: the change waits for it.
type expiryOnSubscribe struct {
	*brokertest.Rules
	srv  atomic.Pointer[broker.Server]
	errs chan error
}

func (o *expiryOnSubscribe) OnEvent(e *broker.Event) {
	o.Rules.OnEvent(e)
	if s := o.srv.Load(); s != nil && e.Kind == broker.EventSubscribe {
		_, err := s.SetSessionExpiry(e.ClientID, 60)
		o.errs <- err
	}
}

// TestSetSessionExpiryPending: a change made while the connection's
// goroutine is busy is stored at once, read back at once, and reaches
// mochi, which keeps the session when the connection ends.
func TestSetSessionExpiryPending(t *testing.T) {
	o := &expiryOnSubscribe{Rules: &brokertest.Rules{}, errs: make(chan error, 1)}
	b := &svcBroker{t: t, cfg: testConfig(t.TempDir()), rules: o.Rules}
	b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: o.Rules, Events: o})
	o.srv.Store(b.Server)

	c, _ := b.connect5("busy", true, 0, nil)
	c.subscribe(t, "k/#", 1)
	if err := <-o.errs; err != nil {
		t.Fatal(err)
	}
	if got := b.stored("busy"); got != "[session subscription k/#]" {
		t.Errorf("store holds %s", got)
	}
	if info, _ := b.Client("busy"); info.SessionExpiry != 60 {
		t.Errorf("Client: expiry %d, want 60", info.SessionExpiry)
	}
	c.leave()
	b.awaitOffline("busy")
	poll.Until(t, "session kept offline with its expiry", func() bool {
		info, ok := b.Client("busy")
		return ok && info.SessionExpiry == 60
	})
	if got := b.stored("busy"); got != "[session subscription k/#]" {
		t.Errorf("store holds %s after the end", got)
	}
}
