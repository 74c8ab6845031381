package broker_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// SetSessionExpiry across a restart and for MQTT 3.1.1 sessions, and
// PublishTo's choice of subscription; the wire-level tests of these
// services from a guest are in host/svc_clients_test.go.

// TestServiceSetSessionExpiryRestart: a new expiry of an offline session,
// and of a connected one, is in the store: a restart honours it.
func TestServiceSetSessionExpiryRestart(t *testing.T) {
	b := startSvc(t)
	off, _ := b.connect5("off", false, 600, nil)
	off.leave()
	b.awaitOffline("off")
	if got, err := b.SetSessionExpiry("off", 7200); err != nil || got != 7200 {
		t.Fatalf("SetSessionExpiry = %d, %v", got, err)
	}
	on, _ := b.connect5("on", false, 600, nil)
	if _, err := b.SetSessionExpiry("on", 3600); err != nil {
		t.Fatal(err)
	}
	on.leave()
	b.awaitOffline("on")
	// Capped by mqtt.max_session_expiry.
	max := uint32(time.Duration(b.cfg.MQTT.MaxSessionExpiry) / time.Second)
	if got, err := b.SetSessionExpiry("on", max+1); err != nil || got != max {
		t.Errorf("SetSessionExpiry above the cap = %d, %v; want %d", got, err, max)
	}
	if _, err := b.SetSessionExpiry("on", 3600); err != nil {
		t.Fatal(err)
	}
	b.restart()
	for id, want := range map[string]uint32{"off": 7200, "on": 3600} {
		info, ok := b.Client(id)
		// What is left of it: a few seconds may have passed.
		if !ok || info.SessionExpiry > want || info.SessionExpiry < want-60 {
			t.Errorf("%s after restart: %+v, %v; want an expiry of about %d", id, info, ok, want)
		}
	}
	if _, err := b.SetSessionExpiry("nobody", 1); err == nil {
		t.Error("SetSessionExpiry of no session: no error")
	}
}

// TestServiceSetSessionExpiry311: an MQTT 3.1.1 session follows the new
// expiry: 0 ends it with the connection, a short one removes it once
// offline that long (mochi's sweep would keep it for the broker's maximum).
func TestServiceSetSessionExpiry311(t *testing.T) {
	b := startSvc(t)
	o := v3Options(b.addr, "zero").SetCleanSession(false)
	c := v3Connect(t, o)
	if _, err := b.SetSessionExpiry("zero", 0); err != nil {
		t.Fatal(err)
	}
	c.Disconnect(0)
	poll.Until(t, "3.1.1 session with expiry 0 gone", func() bool { _, ok := b.Client("zero"); return !ok })

	c = v3Connect(t, v3Options(b.addr, "short").SetCleanSession(false))
	if _, err := b.SetSessionExpiry("short", 1); err != nil {
		t.Fatal(err)
	}
	c.Disconnect(0)
	b.awaitOffline("short")
	poll.Until(t, "3.1.1 session with expiry 1 gone", func() bool { _, ok := b.Client("short"); return !ok })
	if got := b.stored("short"); got != "[]" {
		t.Errorf("store holds %s of the expired session", got)
	}

	// A clean 3.1.1 session made persistent is stored with its
	// subscriptions and resumed.
	c = v3Connect(t, v3Options(b.addr, "kept"))
	wait(t, "subscribe", c.Subscribe("k/#", 1, nil))
	if _, err := b.SetSessionExpiry("kept", 600); err != nil {
		t.Fatal(err)
	}
	if got := b.stored("kept"); got != "[session subscription k/#]" {
		t.Errorf("store holds %s", got)
	}
	c.Disconnect(0)
	b.awaitOffline("kept")
}

// TestServicePublishTo: PublishTo merges the client's matching
// subscriptions (highest QoS, every identifier) and refuses what it
// cannot send.
func TestServicePublishTo(t *testing.T) {
	b := startSvc(t)
	c, _ := b.connect5("c", true, 0, nil)
	id := 7
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "a/+", QoS: 1}},
		Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id}}); err != nil {
		t.Fatal(err)
	}
	c.subscribe(t, "a/#", 2)
	other, _ := b.connect5("other", true, 0, nil)
	other.subscribe(t, "a/#", 2)
	if err := b.PublishTo("c", broker.Message{Topic: "a/b", Payload: []byte("x"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	m := c.next(t)
	if m.QoS != 2 || m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != 7 {
		t.Errorf("got QoS %d, properties %+v; want QoS 2 (the higher subscription), identifier 7", m.QoS, m.Properties)
	}
	if err := b.Publish(broker.Message{Topic: "a/marker", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if m := other.next(t); m.Topic != "a/marker" {
		t.Errorf("other got %s: a message to c reached it", m.Topic)
	}
	errorIs(t, b.PublishTo("c", broker.Message{Topic: "b", QoS: 1}), broker.ErrNotSubscribed,
		`publish to client "c", topic "b": client not subscribed to the topic`)
	errorIs(t, b.PublishTo("c", broker.Message{Topic: "a/b", Retain: true}), broker.ErrInvalidArgument,
		`publish to client "c", topic "a/b": invalid argument: a message to one client cannot be retained`)
	errorIs(t, b.PublishTo("c", broker.Message{Topic: "a/+"}), broker.ErrInvalidArgument,
		`publish to client "c", topic "a/+": invalid argument: topic "a/+" has a wildcard`)
	errorIs(t, b.PublishTo("nobody", broker.Message{Topic: "a/b"}), broker.ErrNoSession,
		`publish to client "nobody": no session`)
}

// TestRequestProblemInfoZero: a client that asks for no problem
// information (paho sends Request Problem Information 0 whenever it sends
// properties) still gets the user properties of the messages it receives
// and the reason string of a DISCONNECT ([MQTT-3.1.2-29], [MQTT-3.3.2-17]).
func TestRequestProblemInfoZero(t *testing.T) {
	b := startSvc(t)
	c, _ := b.connect5("c", true, 0, func(cp *paho.Connect) { cp.Properties.RequestProblemInfo = false })
	c.subscribe(t, "p", 1)
	if err := b.Publish(broker.Message{Topic: "p", QoS: 1, UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}}}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t); m.Properties == nil || m.Properties.User.Get("k") != "v" {
		t.Errorf("PUBLISH lost its user property: %+v", m.Properties)
	}
	if err := b.Disconnect("c", 0x98, "bye", false); err != nil {
		t.Fatal(err)
	}
	if d := c.disconnected(t); d.Properties == nil || d.Properties.ReasonString != "bye" {
		t.Errorf("DISCONNECT without its reason string: %+v", d.Properties)
	}
}

// storedSession returns the session record the store holds of id.
func (b *svcBroker) storedSession(id string) (store.Session, bool) {
	b.t.Helper()
	snap, err := b.Store().Load()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, s := range snap.Sessions {
		if s.ClientID == id {
			return s, true
		}
	}
	return store.Session{}, false
}

// TestServiceSetSessionExpiryRestored: the new expiry of a session
// restored at start-up counts from when the session went offline before
// the restart, not from the restart, and its record keeps that time.
func TestServiceSetSessionExpiryRestored(t *testing.T) {
	b := startSvc(t)
	wentOff := time.Now().Unix() - 3000 // as if they had left 3000 s ago
	for _, id := range []string{"gone", "kept"} {
		c, _ := b.connect5(id, false, 3600, nil)
		c.subscribe(t, "r/#", 1)
		c.leave()
		b.awaitOffline(id)
		poll.Until(t, id+" stored offline", func() bool { rec, ok := b.storedSession(id); return ok && rec.DisconnectedAt != 0 })
		rec, _ := b.storedSession(id)
		rec.DisconnectedAt = wentOff
		if err := b.Store().PutSession(&rec, true); err != nil {
			t.Fatal(err)
		}
	}
	b.restart()

	// 2000 s from going offline have passed: the session ends now.
	if _, err := b.SetSessionExpiry("gone", 2000); err != nil {
		t.Fatal(err)
	}
	if info, ok := b.Client("gone"); ok {
		t.Errorf("session whose new expiry ran out before the restart is still held: %+v", info)
	}
	if got := b.stored("gone"); got != "[]" {
		t.Errorf("store holds %s of the expired session", got)
	}

	// 3500 s: 500 s are left, counted from when it went offline.
	if got, err := b.SetSessionExpiry("kept", 3500); err != nil || got != 3500 {
		t.Fatalf("SetSessionExpiry = %d, %v", got, err)
	}
	info, ok := b.Client("kept")
	if !ok || info.SessionExpiry != 3500 || info.ExpiresAt.Unix() != wentOff+3500 {
		t.Errorf("kept: %+v, %v; want expiry 3500 ending at %d", info, ok, wentOff+3500)
	}
	rec, ok := b.storedSession("kept")
	if !ok || rec.DisconnectedAt != wentOff || rec.SessionExpiry != 3500 {
		t.Errorf("stored record %+v, %v; want disconnected at %d, expiry 3500", rec, ok, wentOff)
	}
	b.restart()
	if rec, ok := b.storedSession("kept"); !ok || rec.DisconnectedAt != wentOff {
		t.Errorf("after a second restart the record is %+v, %v", rec, ok)
	}
	if _, ok := b.Client("kept"); !ok {
		t.Error("kept session not restored")
	}
}

// TestServiceClientExpiry311: the expiry Client reports for an MQTT 3.1.1
// session is the one set for it, connected and offline.
func TestServiceClientExpiry311(t *testing.T) {
	b := startSvc(t)
	c := v3Connect(t, v3Options(b.addr, "v3").SetCleanSession(false))
	if _, err := b.SetSessionExpiry("v3", 120); err != nil {
		t.Fatal(err)
	}
	if info, ok := b.Client("v3"); !ok || info.SessionExpiry != 120 {
		t.Errorf("connected: %+v, %v; want expiry 120", info, ok)
	}
	c.Disconnect(0)
	b.awaitOffline("v3")
	info, ok := b.Client("v3")
	if !ok || info.SessionExpiry != 120 || info.ExpiresAt.IsZero() {
		t.Errorf("offline: %+v, %v; want expiry 120", info, ok)
	}
	// A plain 3.1.1 persistent session has the broker's maximum.
	d := v3Connect(t, v3Options(b.addr, "plain").SetCleanSession(false))
	defer d.Disconnect(0)
	max := uint32(time.Duration(b.cfg.MQTT.MaxSessionExpiry) / time.Second)
	if info, ok := b.Client("plain"); !ok || info.SessionExpiry != max {
		t.Errorf("plain: %+v, %v; want %d", info, ok, max)
	}
}
