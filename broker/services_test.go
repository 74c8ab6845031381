package broker_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The services are tested through a real broker on a loopback port, with
// real MQTT clients, and, where it matters, across a restart on the same
// data folder.

// svcBroker is a broker under test and what it needs to restart.
type svcBroker struct {
	*broker.Server
	t     *testing.T
	cfg   *config.Config
	addr  string
	rules *brokertest.Rules // allows everything, records events
}

func startSvc(t *testing.T) *svcBroker {
	t.Helper()
	b := &svcBroker{t: t, cfg: testConfig(t.TempDir()), rules: &brokertest.Rules{}}
	b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: b.rules, Events: b.rules})
	return b
}

// restart closes the broker and starts a new one on the same data folder.
func (b *svcBroker) restart() {
	b.t.Helper()
	if err := b.Close(); err != nil {
		b.t.Fatal(err)
	}
	b.cfg = testConfig(b.cfg.DataDir)
	b.Server, b.addr = startServer(b.t, b.cfg, broker.Extensions{Authenticator: b.rules, Events: b.rules})
}

// store returns the broker's Pebble store, to check what it holds.
func (b *svcBroker) store() *store.Store { return b.Store().(*store.Store) }

// stored lists what the store holds of id: its session record,
// subscriptions, queued messages and attributes, in that order.
func (b *svcBroker) stored(id string) string {
	b.t.Helper()
	snap, err := b.Store().Load()
	if err != nil {
		b.t.Fatal(err)
	}
	var what []string
	for _, s := range snap.Sessions {
		if s.ClientID == id {
			what = append(what, "session")
		}
	}
	for _, s := range snap.Subscriptions {
		if s.ClientID == id {
			what = append(what, "subscription "+s.Filter)
		}
	}
	for _, m := range snap.Inflight {
		if m.ClientID == id {
			what = append(what, "queued "+m.Topic)
		}
	}
	attrs, err := b.store().AttributeList(id)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, a := range attrs {
		what = append(what, "attribute "+a.Key)
	}
	return fmt.Sprint(what)
}

// client5 is an MQTT 5 client with what it received.
type client5 struct {
	*paho.Client
	conn net.Conn
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

// connect5 connects an MQTT 5 client with clean start and session expiry as
// given; edit may change the CONNECT. It returns whether the broker had a
// session for it.
func (b *svcBroker) connect5(id string, clean bool, expiry uint32, edit func(*paho.Connect)) (*client5, bool) {
	b.t.Helper()
	conn, err := net.DialTimeout("tcp", b.addr, poll.Timeout)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = conn.Close() })
	c := &client5{conn: conn, msgs: make(chan *paho.Publish, 64), disc: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(p paho.PublishReceived) (bool, error) { c.msgs <- p.Packet; return true, nil },
		},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disc <- d },
	})
	// Without Request Problem Information mochi drops user properties and
	// reason strings, even from PUBLISH.
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, RequestProblemInfo: true}}
	if edit != nil {
		edit(cp)
	}
	ack, err := c.Connect(ctx5(b.t), cp)
	if err != nil {
		b.t.Fatalf("connect %s: %v", id, err)
	}
	return c, ack.SessionPresent
}

func (c *client5) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

// next returns the next message received or fails the test.
func (c *client5) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-c.msgs:
		return p
	case <-time.After(poll.Timeout):
		t.Fatal("no message received")
		return nil
	}
}

// none fails if a message arrives within a short window.
func (c *client5) none(t *testing.T) {
	t.Helper()
	select {
	case p := <-c.msgs:
		t.Fatalf("unexpected message on %s: %q", p.Topic, p.Payload)
	case <-time.After(200 * time.Millisecond):
	}
}

// disconnected returns the DISCONNECT the server sent or fails the test.
func (c *client5) disconnected(t *testing.T) *paho.Disconnect {
	t.Helper()
	select {
	case d := <-c.disc:
		return d
	case <-time.After(poll.Timeout):
		t.Fatal("no DISCONNECT received")
		return nil
	}
}

// leave disconnects the client normally (its session stays per its expiry).
func (c *client5) leave() { _ = c.Disconnect(&paho.Disconnect{ReasonCode: 0}) }

// publish3 publishes one message from a fresh 3.1.1 client.
func (b *svcBroker) publish3(topic string, qos byte, retain bool, payload string) {
	b.t.Helper()
	pub := v3Connect(b.t, v3Options(b.addr, fmt.Sprintf("pub-%d", rand.Int())))
	wait(b.t, "publish "+topic, pub.Publish(topic, qos, retain, []byte(payload)))
	pub.Disconnect(0)
}

// awaitOffline waits until the broker sees id's session offline and the
// store holds it that way.
func (b *svcBroker) awaitOffline(id string) {
	b.t.Helper()
	poll.Until(b.t, id+" offline", func() bool {
		info, ok := b.Client(id)
		return ok && !info.Connected
	})
}

// errorIs fails unless err wraps want and reads exactly msg.
func errorIs(t *testing.T, err, want error, msg string) {
	t.Helper()
	if !errors.Is(err, want) || err.Error() != msg {
		t.Errorf("error = %v\nwant %q (wrapping %v)", err, msg, want)
	}
}

func TestServiceClientInfo(t *testing.T) {
	b := startSvc(t)
	before := time.Now()
	recv := uint16(7)
	c, _ := b.connect5("info", false, 60, func(cp *paho.Connect) {
		cp.Username, cp.UsernameFlag = "alice", true
		cp.Properties.ReceiveMaximum = &recv
	})
	after := time.Now()

	info, ok := b.Client("info")
	if !ok {
		t.Fatal("Client: no session for a connected client")
	}
	if info.ConnectedSince.Before(before) || info.ConnectedSince.After(after) {
		t.Errorf("ConnectedSince %v not between %v and %v", info.ConnectedSince, before, after)
	}
	want := broker.ClientInfo{
		ClientID: "info", Username: "alice", Connected: true, ConnectedSince: info.ConnectedSince,
		ProtocolVersion: 5, Listener: b.cfg.Listeners[0].Name, RemoteAddr: c.conn.LocalAddr().String(),
		SessionExpiry: 60, ReceiveMaximum: uint16(b.cfg.MQTT.ReceiveMaximum), InflightWindow: 7,
		MaxQueued: b.cfg.MQTT.MaxQueuedMessages, KeepAlive: 30, QueueFullPolicy: "drop-new", AuthenticatedBy: "brokertest-rules",
	}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("Client(connected) =\n %+v\nwant\n %+v", info, want)
	}

	// Offline with two queued messages.
	c.subscribe(t, "q", 1)
	c.leave()
	b.awaitOffline("info")
	left := time.Now()
	b.publish3("q", 1, false, "one")
	b.publish3("q", 1, false, "two")
	// The PUBACK goes out before mochi queues the message for subscribers.
	poll.Until(t, "two messages queued", func() bool {
		info, _ = b.Client("info")
		return info.Queued == 2
	})
	if info.Connected || !info.ConnectedSince.IsZero() {
		t.Errorf("Client(offline) = %+v; want not connected, no ConnectedSince", info)
	}
	if off := info.OfflineSince; off.Before(before.Truncate(time.Second)) || off.After(left) {
		t.Errorf("OfflineSince %v, want between %v and %v", off, before, left)
	}
	if exp := info.ExpiresAt; exp.Before(before.Add(59*time.Second)) || exp.After(left.Add(61*time.Second)) {
		t.Errorf("ExpiresAt %v, want about 60s after %v", exp, left)
	}

	for _, id := range []string{"nobody", "inline"} {
		if info, ok := b.Client(id); ok {
			t.Errorf("Client(%q) = %+v, want none", id, info)
		}
	}
}

func TestServiceDisconnect(t *testing.T) {
	b := startSvc(t)
	watcher, _ := b.connect5("watcher", true, 0, nil)
	watcher.subscribe(t, "wills/#", 0)
	will := func(topic string) func(*paho.Connect) {
		return func(cp *paho.Connect) { cp.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte("gone")} }
	}

	// MQTT 5: the DISCONNECT carries the code and reason; no will.
	quiet, _ := b.connect5("quiet", true, 0, will("wills/quiet"))
	if err := b.Disconnect("quiet", 0x98, "maintenance", true); err != nil {
		t.Fatal(err)
	}
	if d := quiet.disconnected(t); d.ReasonCode != 0x98 || d.Properties == nil || d.Properties.ReasonString != "maintenance" {
		t.Errorf("DISCONNECT = code %#x, properties %+v; want 0x98 \"maintenance\"", d.ReasonCode, d.Properties)
	}
	watcher.none(t)

	// Without preventWill the will is published.
	loud, _ := b.connect5("loud", true, 0, will("wills/loud"))
	if err := b.Disconnect("loud", 0x89, "", false); err != nil {
		t.Fatal(err)
	}
	if d := loud.disconnected(t); d.ReasonCode != 0x89 {
		t.Errorf("DISCONNECT code %#x, want 0x89", d.ReasonCode)
	}
	if p := watcher.next(t); p.Topic != "wills/loud" {
		t.Errorf("will on %q, want wills/loud", p.Topic)
	}

	// MQTT 3.1.1: no DISCONNECT from a server, the connection just closes.
	lost := make(chan error, 1)
	v3 := newPahoClient(v3Options(b.addr, "old").SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err }))
	wait(t, "connect old", v3.Connect())
	if err := b.Disconnect("old", 0x87, "no", false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(poll.Timeout):
		t.Fatal("3.1.1 client still connected")
	}

	// The EventListener hears server disconnects with the codes. mochi
	// writes an MQTT 5 DISCONNECT before it marks the connection stopped,
	// so a client that closes its side at once can, rarely, make it a lost
	// connection; a 3.1.1 connection is stopped first.
	poll.Until(t, "three disconnect events", func() bool {
		got := map[string]string{}
		for _, e := range b.rules.Recorded() {
			if e.Kind == broker.EventDisconnect {
				got[e.ClientID] = fmt.Sprintf("%s %#x", e.Disconnect, e.ReasonCode)
			}
		}
		if len(got) < 3 {
			return false
		}
		for id, want := range map[string]string{"quiet": "server 0x98", "loud": "server 0x89", "old": "server 0x87"} {
			if got[id] != want && (id == "old" || got[id] != "lost 0x0") {
				t.Fatalf("disconnect event of %s: %s, want %s", id, got[id], want)
			}
		}
		return true
	})

	// An offline persistent session, an unknown id, bad arguments.
	p, _ := b.connect5("away", false, 60, nil)
	p.leave()
	b.awaitOffline("away")
	for _, tc := range []struct {
		name, id, reason string
		code             byte
		want             error
		msg              string
	}{
		{"offline", "away", "", 0x80, broker.ErrNotConnected, `disconnect "away": client not connected`},
		{"unknown", "nobody", "", 0x80, broker.ErrNoSession, `disconnect "nobody": no session`},
		{"inline", "inline", "", 0x80, broker.ErrNoSession, `disconnect "inline": no session`},
		{"normal code", "watcher", "", 0x00, broker.ErrInvalidArgument,
			`disconnect "watcher": invalid argument: reason code 0x00 is not one a server sends (0x80 and up)`},
		{"client-only code", "watcher", "", 0x04, broker.ErrInvalidArgument,
			`disconnect "watcher": invalid argument: reason code 0x04 is not one a server sends (0x80 and up)`},
		{"bad reason", "watcher", "a\x00b", 0x80, broker.ErrInvalidArgument,
			`disconnect "watcher": invalid argument: reason contains U+0000`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errorIs(t, b.Disconnect(tc.id, tc.code, tc.reason, false), tc.want, tc.msg)
		})
	}
	if info, _ := b.Client("watcher"); !info.Connected {
		t.Error("a refused Disconnect disconnected the client")
	}
}

func TestServiceInvalidateSession(t *testing.T) {
	b := startSvc(t)

	// An offline session with a subscription, queued messages and an
	// attribute.
	c, _ := b.connect5("gone", false, 3600, nil)
	c.subscribe(t, "q", 1)
	if err := b.PutAttribute("gone", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.leave()
	b.awaitOffline("gone")
	b.publish3("q", 1, false, "one")
	b.publish3("q", 1, false, "two")
	poll.Until(t, "the session, its subscription, two queued messages and an attribute stored", func() bool {
		return b.stored("gone") == "[session subscription q queued q queued q attribute k]"
	})

	if err := b.InvalidateSession("gone"); err != nil {
		t.Fatal(err)
	}
	if info, ok := b.Client("gone"); ok {
		t.Fatalf("Client after InvalidateSession = %+v", info)
	}
	if got := b.stored("gone"); got != "[]" {
		t.Fatalf("stored after InvalidateSession = %s", got)
	}
	errorIs(t, b.InvalidateSession("gone"), broker.ErrNoSession, `invalidate session "gone": no session`)

	// A connected client is told, and its goroutine saving the session as
	// the connection closes does not bring it back.
	live, _ := b.connect5("live", false, 3600, nil)
	live.subscribe(t, "q", 1)
	if err := b.InvalidateSession("live"); err != nil {
		t.Fatal(err)
	}
	if d := live.disconnected(t); d.ReasonCode != 0x98 {
		t.Errorf("DISCONNECT code %#x, want 0x98", d.ReasonCode)
	}
	// The client's goroutine saves the session as its connection closes,
	// after InvalidateSession deleted it; it must delete it again.
	poll.Until(t, "nothing stored for live", func() bool { return b.stored("live") == "[]" })

	// Gone after a restart too: a reconnect finds no session, no message.
	b.restart()
	for _, id := range []string{"gone", "live"} {
		if _, ok := b.Client(id); ok {
			t.Fatalf("session %s restored", id)
		}
		c, present := b.connect5(id, false, 3600, nil)
		if present {
			t.Errorf("%s: session present after InvalidateSession and restart", id)
		}
		c.none(t)
	}
}

func TestServiceSubscriptions(t *testing.T) {
	b := startSvc(t)

	// An offline session subscribed by the service gets a message
	// published while it is away, after a restart, when it reconnects.
	c, _ := b.connect5("away", false, 3600, nil)
	c.subscribe(t, "own", 1)
	c.leave()
	b.awaitOffline("away")
	sub := broker.SubscriptionInfo{Filter: "svc/+", QoS: 1, RetainAsPublished: true, RetainHandling: 2, Identifier: 9}
	if err := b.Subscribe("away", sub); err != nil {
		t.Fatal(err)
	}
	want := []broker.SubscriptionInfo{{Filter: "own", QoS: 1}, sub}
	if got, err := b.Subscriptions("away"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Subscriptions = %+v, %v; want %+v", got, err, want)
	}
	b.restart()
	if got, err := b.Subscriptions("away"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Subscriptions after restart = %+v, %v; want %+v", got, err, want)
	}
	b.publish3("svc/x", 1, false, "for you")
	// The PUBACK goes out before mochi queues the message for subscribers;
	// reconnecting before that would race with the fan-out.
	poll.Until(t, "the message queued for away", func() bool {
		info, _ := b.Client("away")
		return info.Queued == 1
	})
	c, present := b.connect5("away", false, 3600, nil)
	if !present {
		t.Fatal("session not present")
	}
	if p := c.next(t); p.Topic != "svc/x" || string(p.Payload) != "for you" {
		t.Fatalf("got %s %q", p.Topic, p.Payload)
	}

	// A connected client: messages flow at once; Unsubscribe stops them.
	if err := b.Subscribe("away", broker.SubscriptionInfo{Filter: "live/#", QoS: 0}); err != nil {
		t.Fatal(err)
	}
	b.publish3("live/a", 0, false, "now")
	if p := c.next(t); p.Topic != "live/a" {
		t.Fatalf("got %s", p.Topic)
	}
	for _, f := range []string{"live/#", "svc/+", "never/subscribed"} {
		if err := b.Unsubscribe("away", f); err != nil {
			t.Fatal(err)
		}
	}
	b.publish3("live/a", 0, false, "later")
	b.publish3("svc/x", 1, false, "later")
	c.none(t)
	if got := b.stored("away"); got != "[session subscription own]" {
		t.Fatalf("stored = %s", got)
	}

	for _, tc := range []struct {
		name string
		id   string
		sub  broker.SubscriptionInfo
		want error
		msg  string
	}{
		{"unknown", "nobody", broker.SubscriptionInfo{Filter: "a"}, broker.ErrNoSession, `subscribe "nobody" to "a": no session`},
		{"bad filter", "away", broker.SubscriptionInfo{Filter: "a/#/b"}, broker.ErrInvalidArgument,
			`subscribe "away" to "a/#/b": invalid argument: "a/#/b" is not a topic filter`},
		{"empty filter", "away", broker.SubscriptionInfo{}, broker.ErrInvalidArgument,
			`subscribe "away" to "": invalid argument: "" is not a topic filter`},
		{"bad share", "away", broker.SubscriptionInfo{Filter: "$share/g"}, broker.ErrInvalidArgument,
			`subscribe "away" to "$share/g": invalid argument: "$share/g" is not a topic filter`},
		{"QoS 3", "away", broker.SubscriptionInfo{Filter: "a", QoS: 3}, broker.ErrInvalidArgument,
			`subscribe "away" to "a": invalid argument: QoS 3, want 0, 1 or 2`},
		{"retain handling", "away", broker.SubscriptionInfo{Filter: "a", RetainHandling: 3}, broker.ErrInvalidArgument,
			`subscribe "away" to "a": invalid argument: retain handling 3, want 0, 1 or 2`},
		{"identifier", "away", broker.SubscriptionInfo{Filter: "a", Identifier: 1 << 28}, broker.ErrInvalidArgument,
			`subscribe "away" to "a": invalid argument: subscription identifier 268435456, want 0 to 268435455`},
		{"shared no-local", "away", broker.SubscriptionInfo{Filter: "$share/g/a", NoLocal: true}, broker.ErrInvalidArgument,
			`subscribe "away" to "$share/g/a": invalid argument: no-local on a shared subscription`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errorIs(t, b.Subscribe(tc.id, tc.sub), tc.want, tc.msg)
		})
	}
	_, err := b.Subscriptions("nobody")
	errorIs(t, err, broker.ErrNoSession, `subscriptions of "nobody": no session`)
	errorIs(t, b.Unsubscribe("nobody", "a"), broker.ErrNoSession, `unsubscribe "nobody" from "a": no session`)
}

func TestServiceRetained(t *testing.T) {
	b := startSvc(t)
	early, _ := b.connect5("early", true, 0, nil)
	// Retain handling 2: mochi sends retained messages after the SUBACK,
	// so one put meanwhile would arrive as such; none may arrive here.
	if _, err := early.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "status/#", QoS: 1, RetainHandling: 2}}}); err != nil {
		t.Fatal(err)
	}

	m := broker.Message{Topic: "status/a", Payload: []byte("up"), QoS: 1, ContentType: "text/plain",
		UserProperties: []broker.UserProperty{{Key: "by", Value: "svc"}}}
	if err := b.PutRetained(m); err != nil {
		t.Fatal(err)
	}
	early.none(t) // not delivered to current subscribers
	want := m
	want.Retain = true
	if got, ok := b.Retained("status/a"); !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Retained = %+v, %v; want %+v", got, ok, want)
	}

	// A new subscriber gets it, after a restart too.
	b.restart()
	late, _ := b.connect5("late", true, 0, nil)
	late.subscribe(t, "status/#", 1)
	p := late.next(t)
	if p.Topic != "status/a" || string(p.Payload) != "up" || !p.Retain || p.Properties.User.Get("by") != "svc" {
		t.Fatalf("got %s %q retain=%v %+v", p.Topic, p.Payload, p.Retain, p.Properties)
	}

	// DeleteRetained removes it, for good.
	if err := b.DeleteRetained("status/a"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRetained("status/none"); err != nil {
		t.Fatal(err)
	}
	b.restart()
	if got, ok := b.Retained("status/a"); ok {
		t.Fatalf("Retained after DeleteRetained and restart = %+v", got)
	}
	again, _ := b.connect5("again", true, 0, nil)
	again.subscribe(t, "status/#", 1)
	again.none(t)

	// A retained message with an expiry goes when it expires.
	if err := b.PutRetained(broker.Message{Topic: "status/brief", Payload: []byte("x"), MessageExpiry: 1}); err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Retained("status/brief"); !ok || got.MessageExpiry != 1 {
		t.Fatalf("Retained = %+v, %v", got, ok)
	}
	poll.Until(t, "the retained message to expire", func() bool {
		_, ok := b.Retained("status/brief")
		return !ok
	})

	errorIs(t, b.PutRetained(broker.Message{Topic: "status/a"}), broker.ErrInvalidArgument,
		`put retained "status/a": invalid argument: empty payload (an empty retained message is a deletion: use DeleteRetained)`)
	errorIs(t, b.PutRetained(broker.Message{Topic: "status/+", Payload: []byte("x")}), broker.ErrInvalidArgument,
		`put retained "status/+": invalid argument: topic "status/+" has a wildcard`)
	errorIs(t, b.DeleteRetained(""), broker.ErrInvalidArgument, `delete retained "": invalid argument: empty topic`)
}

func TestServicePublish(t *testing.T) {
	b := startSvc(t)
	sub, _ := b.connect5("sub", true, 0, nil)
	sub.subscribe(t, "news/#", 2)
	away, _ := b.connect5("away", false, 3600, nil)
	away.subscribe(t, "news/#", 1)
	away.leave()
	b.awaitOffline("away")

	m := broker.Message{Topic: "news/a", Payload: []byte("hello"), QoS: 2, PayloadFormat: 1, ContentType: "text/plain",
		ResponseTopic: "replies/a", CorrelationData: []byte{1, 2},
		UserProperties: []broker.UserProperty{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}}}
	if err := b.Publish(m); err != nil {
		t.Fatal(err)
	}
	p := sub.next(t)
	pp := p.Properties
	if p.Topic != "news/a" || string(p.Payload) != "hello" || p.QoS != 2 || p.Retain ||
		pp.ContentType != "text/plain" || pp.ResponseTopic != "replies/a" || !bytes.Equal(pp.CorrelationData, []byte{1, 2}) ||
		pp.PayloadFormat == nil || *pp.PayloadFormat != 1 ||
		!reflect.DeepEqual(pp.User, paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}}) {
		t.Fatalf("received %s %q qos %d retain %v %+v", p.Topic, p.Payload, p.QoS, p.Retain, pp)
	}

	// Retained, and queued for the offline session like any message: one
	// message that outlives the wait, one that expires during it.
	if err := b.Publish(broker.Message{Topic: "news/kept", Payload: []byte("kept"), QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(broker.Message{Topic: "news/brief", Payload: []byte("brief"), QoS: 1, MessageExpiry: 1}); err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Retained("news/kept"); !ok || string(got.Payload) != "kept" {
		t.Fatalf("Retained = %+v, %v", got, ok)
	}
	for _, want := range []string{"news/kept", "news/brief"} {
		if p := sub.next(t); p.Topic != want {
			t.Fatalf("connected subscriber got %s, want %s", p.Topic, want)
		}
	}
	poll.Until(t, "the brief message to leave the offline session's queue", func() bool {
		info, _ := b.Client("away")
		return info.Queued == 2 // hello and kept
	})
	away, _ = b.connect5("away", false, 3600, nil)
	var got []string
	for range 2 {
		got = append(got, away.next(t).Topic)
	}
	slices.Sort(got)
	if !reflect.DeepEqual(got, []string{"news/a", "news/kept"}) {
		t.Fatalf("offline session got %v", got)
	}
	away.none(t)

	for _, tc := range []struct {
		name string
		m    broker.Message
		msg  string
	}{
		{"empty topic", broker.Message{}, `publish to "": invalid argument: empty topic`},
		{"wildcard", broker.Message{Topic: "a/#"}, `publish to "a/#": invalid argument: topic "a/#" has a wildcard`},
		{"NUL", broker.Message{Topic: "a\x00"}, `publish to "a\x00": invalid argument: topic contains U+0000`},
		{"not UTF-8", broker.Message{Topic: "a\xff"}, `publish to "a\xff": invalid argument: topic is not valid UTF-8`},
		{"QoS 3", broker.Message{Topic: "a", QoS: 3}, `publish to "a": invalid argument: QoS 3, want 0, 1 or 2`},
		{"payload format", broker.Message{Topic: "a", PayloadFormat: 2}, `publish to "a": invalid argument: payload format 2, want 0 or 1`},
		{"response topic", broker.Message{Topic: "a", ResponseTopic: "r/+"},
			`publish to "a": response topic: invalid argument: topic "r/+" has a wildcard`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errorIs(t, b.Publish(tc.m), broker.ErrInvalidArgument, tc.msg)
		})
	}
	sub.none(t)
}

func TestServiceAttributes(t *testing.T) {
	b := startSvc(t)
	c, _ := b.connect5("dev", false, 3600, nil)
	if err := b.PutAttribute("dev", "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := b.PutAttribute("dev", "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := b.Attribute("dev", "a"); err != nil || !ok || string(v) != "1" {
		t.Fatalf("Attribute = %q, %v, %v", v, ok, err)
	}
	if v, ok, err := b.Attribute("dev", "missing"); err != nil || ok || v != nil {
		t.Fatalf("Attribute(missing) = %q, %v, %v", v, ok, err)
	}
	ts := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if prev, replaced, err := b.PutAttributeIfNewer("dev", "c", []byte("3"), ts, false); err != nil || !replaced || prev != nil {
		t.Fatalf("PutAttributeIfNewer = %q, %v, %v", prev, replaced, err)
	}
	if prev, replaced, err := b.PutAttributeIfNewer("dev", "c", []byte("old"), ts.Add(-time.Nanosecond), true); err != nil || replaced || string(prev) != "3" {
		t.Fatalf("PutAttributeIfNewer(older) = %q, %v, %v", prev, replaced, err)
	}

	// They survive a restart, with their times.
	c.leave()
	b.awaitOffline("dev")
	b.restart()
	all, err := b.Attributes("dev")
	if err != nil || len(all) != 3 {
		t.Fatalf("Attributes after restart = %+v, %v", all, err)
	}
	if all[0].Key != "a" || string(all[0].Value) != "1" || all[0].Time.Before(before) ||
		all[1].Key != "b" || all[2].Key != "c" || string(all[2].Value) != "3" || !all[2].Time.Equal(ts) {
		t.Fatalf("Attributes after restart = %+v", all)
	}
	if err := b.DeleteAttribute("dev", "b"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteAttribute("dev", "missing"); err != nil {
		t.Fatal(err)
	}
	if got := b.stored("dev"); got != "[session attribute a attribute c]" {
		t.Fatalf("stored = %s", got)
	}

	// A resumed session keeps them; a clean start drops them.
	c, _ = b.connect5("dev", false, 3600, nil)
	if _, ok, _ := b.Attribute("dev", "a"); !ok {
		t.Fatal("attribute lost when the session resumed")
	}
	c.leave()
	b.awaitOffline("dev")
	c, _ = b.connect5("dev", true, 3600, nil)
	if all, err := b.Attributes("dev"); err != nil || len(all) != 0 {
		t.Fatalf("Attributes after a clean start = %+v, %v", all, err)
	}
	c.leave()

	errs := []struct {
		name string
		err  error
		want error
		msg  string
	}{
		{"no session", b.PutAttribute("nobody", "k", nil), broker.ErrNoSession, `put attribute of "nobody": no session`},
		{"empty key", b.PutAttribute("dev", "", nil), broker.ErrInvalidArgument, `put attribute "" of "dev": invalid argument: empty key`},
		{"long key", b.PutAttribute("dev", string(make([]byte, broker.MaxAttributeKeyLen+1)), nil), broker.ErrInvalidArgument,
			fmt.Sprintf(`put attribute %q of "dev": invalid argument: key of 257 bytes, at most 256`, make([]byte, 257))},
		{"bad key", b.PutAttribute("dev", "\xff", nil), broker.ErrInvalidArgument, `put attribute "\xff" of "dev": invalid argument: key is not valid UTF-8`},
		{"big value", b.PutAttribute("dev", "k", make([]byte, broker.MaxAttributeValueLen+1)), broker.ErrInvalidArgument,
			`put attribute "k" of "dev": invalid argument: value of 10241 bytes, at most 10240`},
		{"zero time", third(b.PutAttributeIfNewer("dev", "k", nil, time.Time{}, false)), broker.ErrInvalidArgument,
			`put attribute "k" of "dev" if newer: invalid argument: time 0001-01-01 00:00:00 +0000 UTC outside 1678-2262`},
		{"get", third(b.Attribute("nobody", "k")), broker.ErrNoSession, `get attribute of "nobody": no session`},
		{"list", second(b.Attributes("nobody")), broker.ErrNoSession, `list attributes of "nobody": no session`},
		{"delete", b.DeleteAttribute("nobody", "k"), broker.ErrNoSession, `delete attribute of "nobody": no session`},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) { errorIs(t, tc.err, tc.want, tc.msg) })
	}
}

// TestServiceAttributesEndWithTheSession checks every way a session ends:
// its connection (a session that does not outlive it), its expiry, a
// take-over that starts a new session, and a crash of the broker.
func TestServiceAttributesEndWithTheSession(t *testing.T) {
	b := startSvc(t)

	// A 3.1.1 clean session: its attributes are stored while it is
	// connected and removed with it.
	v3 := v3Connect(t, v3Options(b.addr, "clean3"))
	if err := b.PutAttribute("clean3", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := b.stored("clean3"); got != "[session attribute k]" {
		t.Fatalf("stored while connected = %s", got)
	}
	v3.Disconnect(0)
	poll.Until(t, "clean3 gone from the store", func() bool { return b.stored("clean3") == "[]" })
	errorIs(t, b.PutAttribute("clean3", "k", nil), broker.ErrNoSession, `put attribute of "clean3": no session`)

	// An MQTT 5 session of 1 second: removed with its attributes when it
	// expires.
	short, _ := b.connect5("short", false, 1, nil)
	if err := b.PutAttribute("short", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	short.leave()
	poll.Until(t, "the session of short to expire", func() bool {
		_, ok := b.Client("short")
		return !ok
	})
	if got := b.stored("short"); got != "[]" {
		t.Fatalf("stored after expiry = %s", got)
	}

	// A 3.1.1 clean session taken over by a persistent connection: mochi
	// starts a new session, without the old one's attributes.
	v3 = v3Connect(t, v3Options(b.addr, "taken"))
	if err := b.PutAttribute("taken", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_, present := b.connect5("taken", false, 60, nil)
	if present {
		t.Fatal("mochi resumed a 3.1.1 clean session")
	}
	if all, err := b.Attributes("taken"); err != nil || len(all) != 0 {
		t.Fatalf("Attributes of the new session = %+v, %v", all, err)
	}

	// A crash with a clean session connected leaves its session record and
	// attribute behind; restore discards both (here the folder is written
	// as the broker would have left it).
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Options{Dir: b.cfg.DataDir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutSession(&store.Session{ClientID: "crashed", ProtocolVersion: 5, SessionExpirySet: true}, true); err != nil {
		t.Fatal(err)
	}
	if err := st.AttributePut("crashed", store.Attribute{Key: "k"}, true); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: b.rules})
	if got := b.stored("crashed"); got != "[]" {
		t.Fatalf("stored after restart = %s", got)
	}
}

// TestServiceAttributePutIfNewerHammer has 8 goroutines race
// PutAttributeIfNewer with random times: the newest value wins.
func TestServiceAttributePutIfNewerHammer(t *testing.T) {
	b := startSvc(t)
	b.connect5("hammered", true, 0, nil)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		newest time.Time
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 50 {
				ts := base.Add(time.Duration(r.Int64N(int64(time.Hour))))
				if _, _, err := b.PutAttributeIfNewer("hammered", "k", []byte(ts.Format(time.RFC3339Nano)), ts, false); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ts.After(newest) {
					newest = ts
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	all, err := b.Attributes("hammered")
	if err != nil || len(all) != 1 {
		t.Fatalf("Attributes = %+v, %v", all, err)
	}
	if !all[0].Time.Equal(newest) || string(all[0].Value) != newest.Format(time.RFC3339Nano) {
		t.Fatalf("after the hammer: %s at %v; want the newest, %v", all[0].Value, all[0].Time, newest)
	}
}

// second and third return the error of a call, for tables of errors.
func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }
