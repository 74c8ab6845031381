package host

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// The client and publish services, run from svcprobe against a real broker
// and read on the wire by real MQTT clients.

const clientsAndPublish = "services: [clients, publish]\n"

// client5 is an MQTT 5 client of these tests, with what the broker sent it.
type client5 struct {
	*paho.Client
	ack  *paho.Connack
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

// dial5 connects an MQTT 5 client as id with clean start and session
// expiry as given, and a will when will is not nil.
func dial5(t *testing.T, addr, id string, clean bool, expiry uint32, will *paho.WillMessage) *client5 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client5{msgs: make(chan *paho.Publish, 100), disc: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			c.msgs <- p.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disc <- d },
		OnClientError:      func(error) {},
	})
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30, WillMessage: will,
		// RequestProblemInfo: paho sends the property whenever there are
		// properties; 1 asks for reason strings on every packet.
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, RequestProblemInfo: true}}
	if c.ack, err = c.Connect(ctx(t), cp); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

// next returns the next message the client received.
func (c *client5) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-c.msgs:
		return p
	case <-time.After(poll.Timeout):
		t.Fatal("no message")
		return nil
	}
}

// serverDisconnect returns the DISCONNECT the broker sent the client.
func (c *client5) serverDisconnect(t *testing.T) *paho.Disconnect {
	t.Helper()
	select {
	case d := <-c.disc:
		return d
	case <-time.After(poll.Timeout):
		t.Fatal("no DISCONNECT from the broker")
		return nil
	}
}

func (c *client5) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	if _, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
}

// send publishes from c and waits for the PUBACK of a QoS 1 message.
func send(t *testing.T, c *paho.Client, topic string, qos byte, payload string) {
	t.Helper()
	if _, err := c.Publish(ctx(t), &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}

// leave disconnects the client normally, without a session expiry of its
// own in the DISCONNECT.
func (c *client5) leave() { _ = c.Disconnect(&paho.Disconnect{ReasonCode: 0}) }

// awaitGone waits until the broker holds no session of id.
func (w *wired) awaitGone(t *testing.T, id string) {
	t.Helper()
	poll.Until(t, "session "+id+" gone", func() bool { _, ok := w.srv.Client(id); return !ok })
}

// awaitOffline waits until the session of id is offline.
func (w *wired) awaitOffline(t *testing.T, id string) {
	t.Helper()
	poll.Until(t, "session "+id+" offline", func() bool { i, ok := w.srv.Client(id); return ok && !i.Connected })
}

// want runs steps of probe commands and their expected answers.
func want(t *testing.T, c *paho.Client, steps ...string) {
	t.Helper()
	for i := 0; i+1 < len(steps); i += 2 {
		if got := probe(t, c, steps[i]); got != steps[i+1] {
			t.Errorf("%q: got %q, want %q", steps[i], got, steps[i+1])
		}
	}
}

// TestClientServiceQueries: client_is_connected and client_session for a
// connected client, an offline session and no session.
func TestClientServiceQueries(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")
	s := dial5(t, w.addr, "s1", true, 600, nil)
	want(t, c,
		"conn|s1", "ok:true",
		"conn|nobody", "err:propolis: NOT_FOUND",
		"session|nobody", "err:propolis: NOT_FOUND",
		"session|s1", "ok:connected=true,proto=5,expiry=600,window=0,queued=0,max=1000,drop=0,user=,since=true,expires=false",
	)
	s.leave()
	w.awaitOffline(t, "s1")
	want(t, c,
		"conn|s1", "ok:false",
		"session|s1", "ok:connected=false,proto=5,expiry=600,window=0,queued=0,max=1000,drop=0,user=,since=false,expires=true",
	)
}

// TestClientServiceDisconnect: the DISCONNECT carries the reason code and
// string; with prevent-will the will is not published, without it is.
func TestClientServiceDisconnect(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")
	watcher := dial5(t, w.addr, "watcher", true, 0, nil)
	watcher.subscribe(t, "will/#", 1)

	quiet := dial5(t, w.addr, "quiet", true, 0, &paho.WillMessage{Topic: "will/quiet", Payload: []byte("gone"), QoS: 1})
	want(t, c, "disc|quiet|0x98|banned by test|1", "ok")
	if d := quiet.serverDisconnect(t); d.ReasonCode != 0x98 || d.Properties == nil || d.Properties.ReasonString != "banned by test" {
		t.Errorf("DISCONNECT: %+v", d)
	}
	// The session ended with its connection: mochi removes it after the
	// will would have been published. A marker published now is the first
	// message on will/#.
	w.awaitGone(t, "quiet")
	send(t, c, "will/marker", 1, "m")
	if p := watcher.next(t); p.Topic != "will/marker" {
		t.Errorf("first message on will/# is %s %q: the will was published", p.Topic, p.Payload)
	}

	loud := dial5(t, w.addr, "loud", true, 0, &paho.WillMessage{Topic: "will/loud", Payload: []byte("gone"), QoS: 1})
	want(t, c, "disc|loud|0x80||0", "ok")
	if d := loud.serverDisconnect(t); d.ReasonCode != 0x80 {
		t.Errorf("DISCONNECT: %+v", d)
	}
	if p := watcher.next(t); p.Topic != "will/loud" || string(p.Payload) != "gone" {
		t.Errorf("got %s %q, want the will", p.Topic, p.Payload)
	}
	w.awaitGone(t, "loud")
	send(t, c, "will/marker", 1, "m2")
	if p := watcher.next(t); p.Topic != "will/marker" {
		t.Errorf("got %s %q after the will, want the marker: the will was published twice", p.Topic, p.Payload)
	}

	off := dial5(t, w.addr, "off", true, 600, nil)
	off.leave()
	w.awaitOffline(t, "off")
	want(t, c,
		"disc|nobody|0x98|x|0", "err:propolis: NOT_FOUND",
		"disc|off|0x98|x|0", "err:propolis: NOT_FOUND", // offline
		"disc|watcher|0|x|0", "err:propolis: INVALID_ARGUMENT", // not a server's code
		"disc|watcher|0x98|\xff|0", "err:propolis: INVALID_ARGUMENT", // reason not UTF-8
	)
	if i, ok := w.srv.Client("watcher"); !ok || !i.Connected {
		t.Error("a refused disconnect closed the connection")
	}
}

// TestClientServiceInvalidateSession: the session is gone everywhere: the
// client is disconnected with 0x98, its next CONNECT finds no session, its
// queued messages and attributes are gone.
func TestClientServiceInvalidateSession(t *testing.T) {
	w, c := probeClient(t, "services: [clients, publish, session_attributes]\n", Options{}, "c1")
	live := dial5(t, w.addr, "live", false, 600, nil)
	live.subscribe(t, "q/live", 1)
	want(t, c, "inv|live", "ok")
	if d := live.serverDisconnect(t); d.ReasonCode != 0x98 {
		t.Errorf("DISCONNECT: %+v", d)
	}
	w.awaitGone(t, "live")
	again := dial5(t, w.addr, "live", false, 600, nil)
	if again.ack.SessionPresent {
		t.Error("reconnect after invalidate: session present")
	}
	if subs, err := w.srv.Subscriptions("live"); err != nil || len(subs) != 0 {
		t.Errorf("subscriptions after invalidate: %v, %v", subs, err)
	}

	// An offline session with a queued message and an attribute.
	off := dial5(t, w.addr, "off", false, 600, nil)
	off.subscribe(t, "q/off", 1)
	off.leave()
	w.awaitOffline(t, "off")
	send(t, c, "q/off", 1, "queued")
	if err := w.srv.PutAttribute("off", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	want(t, c, "inv|off", "ok", "conn|off", "err:propolis: NOT_FOUND", "inv|off", "err:propolis: NOT_FOUND")
	back := dial5(t, w.addr, "off", false, 600, nil)
	if back.ack.SessionPresent {
		t.Error("reconnect after invalidate: session present")
	}
	back.subscribe(t, "q/off", 1)
	send(t, c, "q/off", 1, "marker")
	if p := back.next(t); string(p.Payload) != "marker" {
		t.Errorf("first message %q: the queued message survived", p.Payload)
	}
	if _, ok, err := w.srv.Attribute("off", "k"); ok || err != nil {
		t.Errorf("attribute after invalidate: %v, %v", ok, err)
	}
}

// TestClientServiceSessionExpiry: a new expiry takes effect on the live
// session and on an offline one.
func TestClientServiceSessionExpiry(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")

	// Persistent -> 0: the session ends with the connection.
	p := dial5(t, w.addr, "p", false, 600, nil)
	want(t, c, "expiry|p|0", "ok",
		"session|p", "ok:connected=true,proto=5,expiry=0,window=0,queued=0,max=1000,drop=0,user=,since=true,expires=false")
	p.leave()
	w.awaitGone(t, "p")
	if again := dial5(t, w.addr, "p", false, 600, nil); again.ack.SessionPresent {
		t.Error("expiry 0: session present after reconnect")
	}

	// 0 -> 600: the session outlives the connection and queues messages.
	e := dial5(t, w.addr, "e", true, 0, nil)
	e.subscribe(t, "q/e", 1)
	want(t, c, "expiry|e|600", "ok")
	e.leave()
	w.awaitOffline(t, "e")
	send(t, c, "q/e", 1, "kept")
	back := dial5(t, w.addr, "e", false, 600, nil)
	if !back.ack.SessionPresent {
		t.Error("expiry 600: no session after reconnect")
	}
	if m := back.next(t); string(m.Payload) != "kept" {
		t.Errorf("got %q, want the queued message", m.Payload)
	}

	// Offline: 0 removes the session at once; a longer expiry is kept.
	o := dial5(t, w.addr, "o", false, 600, nil)
	o.leave()
	w.awaitOffline(t, "o")
	want(t, c, "expiry|o|7200", "ok",
		"session|o", "ok:connected=false,proto=5,expiry=7200,window=0,queued=0,max=1000,drop=0,user=,since=false,expires=true",
		"expiry|o|0", "ok", "conn|o", "err:propolis: NOT_FOUND",
		"expiry|nobody|5", "err:propolis: NOT_FOUND")
}

// TestClientServiceInflightWindow: a window set on a live connection that
// announced no limit holds deliveries beyond it until the client
// acknowledges; a larger window releases them.
func TestClientServiceInflightWindow(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")
	r, err := rawmqtt.DialV5(w.addr, "r", 65535)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_ = r.SetDeadline(time.Now().Add(poll.Timeout))
	if err := r.Subscribe("t/w", 1); err != nil {
		t.Fatal(err)
	}
	want(t, c, "window|r|2", "ok:2", "window|r|0", "err:propolis: INVALID_ARGUMENT",
		"window|nobody|2", "err:propolis: NOT_FOUND")
	for _, m := range []string{"1", "2", "3", "4", "5"} {
		send(t, c, "t/w", 1, m)
	}
	send(t, c, "t/w", 0, "marker")
	read := func() (payload string, id uint16) {
		t.Helper()
		for {
			typ, body, err := r.ReadPacket()
			if err != nil {
				t.Fatal(err)
			}
			if typ>>4 == 3 {
				_, id, p := r.ParsePublish(typ, body)
				return string(p), id
			}
		}
	}
	var ids []uint16
	for _, want := range []string{"1", "2", "marker"} {
		p, id := read()
		if p != want {
			t.Fatalf("got %q, want %q (a window of 2 holds 3 to 5 behind the QoS 0 marker)", p, want)
		}
		ids = append(ids, id)
	}
	r.Puback(ids[0])
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if p, _ := read(); p != "3" {
		t.Fatalf("after one PUBACK got %q, want 3", p)
	}
	want(t, c, "window|r|10", "ok:10")
	for _, want := range []string{"4", "5"} {
		if p, _ := read(); p != want {
			t.Fatalf("after a larger window got %q, want %q", p, want)
		}
	}
	if i, _ := w.srv.Client("r"); i.InflightWindow != 10 {
		t.Errorf("ClientInfo.InflightWindow = %d, want 10", i.InflightWindow)
	}

	// A client that announced a Receive Maximum of 3 gets at most 3.
	r3, err := rawmqtt.DialV5(w.addr, "r3", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	want(t, c, "window|r3|100", "ok:3", "window|r3|1", "ok:1")
	off := dial5(t, w.addr, "off", true, 600, nil)
	off.leave()
	w.awaitOffline(t, "off")
	want(t, c, "window|off|5", "err:propolis: NOT_FOUND")
}

// TestPublishService: a broker publish reaches subscribers with its
// properties, retained when asked; published from authorize_publish to
// the topic being authorized it does not call authorize_publish again.
func TestPublishService(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")
	sub := dial5(t, w.addr, "sub", true, 0, nil)
	sub.subscribe(t, "news/#", 1)
	sub.subscribe(t, "svc/#", 1)

	want(t, c, "pub|1|0|news/a|hello|60|k=v", "ok")
	m := sub.next(t)
	if m.Topic != "news/a" || string(m.Payload) != "hello" || m.QoS != 1 || m.Properties == nil ||
		m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry == 0 || *m.Properties.MessageExpiry > 60 ||
		m.Properties.User.Get("k") != "v" {
		t.Errorf("got %+v %+v", m, m.Properties)
	}

	// Retained: a later subscriber gets it.
	want(t, c, "pub|0|1|news/r|kept|0|", "ok")
	if m := sub.next(t); m.Topic != "news/r" {
		t.Errorf("got %s", m.Topic)
	}
	if r, ok := w.srv.Retained("news/r"); !ok || string(r.Payload) != "kept" {
		t.Errorf("retained: %+v %v", r, ok)
	}

	// To the topic being authorized: the broker's publish asks no
	// authorizer, so authorize_publish runs once, for the probe itself.
	calls := statusOf(t, w.h, "svcprobe").Calls
	want(t, c, "pub|1|0|svc/x|again|0|", "ok")
	if m := sub.next(t); m.Topic != "svc/x" || string(m.Payload) != "again" {
		t.Errorf("got %s %q", m.Topic, m.Payload)
	}
	if n := statusOf(t, w.h, "svcprobe").Calls - calls; n != 1 {
		t.Errorf("%d calls for one probe that published to svc/x, want 1", n)
	}
}

// TestPublishServiceBadInput: bad input from the guest is a status, never a
// trap, and publishes nothing.
func TestPublishServiceBadInput(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")
	sub := dial5(t, w.addr, "sub", true, 0, nil)
	sub.subscribe(t, "#", 1)
	want(t, c,
		"pub|7|0|a/b|x|0|", "err:propolis: INVALID_ARGUMENT", // QoS 7
		"pub|3|0|a/b|x|0|", "err:propolis: INVALID_ARGUMENT",
		"pub|0|0|a/+|x|0|", "err:propolis: INVALID_ARGUMENT", // wildcards
		"pub|0|0|a/#|x|0|", "err:propolis: INVALID_ARGUMENT",
		"pub|0|0|a/\xff\xfe|x|0|", "err:propolis: INVALID_ARGUMENT", // not UTF-8
		"pub|0|0||x|0|", "err:propolis: INVALID_ARGUMENT", // empty topic
		"pub|0|0|a/b|x|0|k=\xff", "err:propolis: INVALID_ARGUMENT", // a property not UTF-8
		"pubraw|ptr", "status:-1", // a pointer outside memory
		"pubraw|huge", "status:-7", // TOO_LARGE
		"pubraw|trunc", "status:-1",
		"pubraw|flags", "status:-1",
		"pubraw|reserved", "status:-1",
		"pubto|sub|7|0|a/b|x", "err:propolis: INVALID_ARGUMENT",
		"pubto|sub|1|0|a/+|x", "err:propolis: INVALID_ARGUMENT",
		"pubraw|", "status:0", // the same bytes, well formed: published
	)
	if m := sub.next(t); m.Topic != "a/b" {
		t.Errorf("first message %s %q: a refused publish went out", m.Topic, m.Payload)
	}
	// The instance survived every call: the extension still answers.
	want(t, c, "conn|sub", "ok:true")
}

// TestPublishToClient: only the named client gets the message, and only
// through a matching subscription.
func TestPublishToClient(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")
	a := dial5(t, w.addr, "a", true, 0, nil)
	b := dial5(t, w.addr, "b", true, 0, nil)
	a.subscribe(t, "to/+", 1)
	b.subscribe(t, "to/+", 1)
	want(t, c,
		"pubto|a|1|0|to/one|for a", "ok:true",
		"pubto|a|1|0|other|x", "ok:false", // no subscription matches
		"pubto|a|1|1|to/one|x", "err:propolis: INVALID_ARGUMENT", // retain
		"pubto|nobody|1|0|to/one|x", "err:propolis: NOT_FOUND",
	)
	if m := a.next(t); m.Topic != "to/one" || string(m.Payload) != "for a" || m.QoS != 1 {
		t.Errorf("a got %+v", m)
	}
	want(t, c, "pub|0|0|to/marker|m|0|", "ok")
	if m := b.next(t); m.Topic != "to/marker" {
		t.Errorf("b got %s %q: a message for a reached b", m.Topic, m.Payload)
	}
	if m := a.next(t); m.Topic != "to/marker" {
		t.Errorf("a got %s %q, want the marker", m.Topic, m.Payload)
	}

	// An offline persistent session queues it.
	o := dial5(t, w.addr, "o", false, 600, nil)
	o.subscribe(t, "to/#", 1)
	o.leave()
	w.awaitOffline(t, "o")
	want(t, c, "pubto|o|1|0|to/o|queued", "ok:true")
	back := dial5(t, w.addr, "o", false, 600, nil)
	if m := back.next(t); string(m.Payload) != "queued" {
		t.Errorf("got %q, want the queued message", m.Payload)
	}
}

// TestClientServiceOnItself: disconnecting the client being authorized from
// its own authorize_publish closes its connection without a deadlock; in
// authenticate, the connecting client is not connected yet.
func TestClientServiceOnItself(t *testing.T) {
	w, c := probeClient(t, clientsAndPublish, Options{}, "c1")
	self := dial5(t, w.addr, "self", true, 0, nil)
	ctx2, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	go func() {
		_, _ = self.Publish(ctx2, &paho.Publish{Topic: "svc/x", QoS: 1, Payload: []byte("disc|self|0x98|own call|1")})
	}()
	if d := self.serverDisconnect(t); d.ReasonCode != 0x98 || d.Properties == nil || d.Properties.ReasonString != "own call" {
		t.Errorf("DISCONNECT: %+v", d)
	}
	w.awaitGone(t, "self")
	inv := dial5(t, w.addr, "inv", false, 600, nil)
	go func() { _, _ = inv.Publish(ctx2, &paho.Publish{Topic: "svc/x", QoS: 1, Payload: []byte("inv|inv")}) }()
	if d := inv.serverDisconnect(t); d.ReasonCode != 0x98 {
		t.Errorf("DISCONNECT: %+v", d)
	}
	w.awaitGone(t, "inv")
	// The broker and the extension still serve.
	want(t, c, "conn|c1", "ok:true")

	// authenticate: the connecting client has no session yet.
	for _, tt := range []struct{ cmd, want string }{
		{"conn|newcomer", "err:propolis: NOT_FOUND"},
		{"disc|newcomer|0x98|x|0", "err:propolis: NOT_FOUND"},
		{"session|newcomer", "err:propolis: NOT_FOUND"},
	} {
		conn, err := net.DialTimeout("tcp", w.addr, poll.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		pc := paho.NewClient(paho.ClientConfig{ClientID: "newcomer", Conn: conn})
		ack, _ := pc.Connect(ctx(t), &paho.Connect{ClientID: "newcomer", CleanStart: true, Username: "svc", UsernameFlag: true,
			Password: []byte(tt.cmd), PasswordFlag: true})
		conn.Close()
		if ack == nil || ack.Properties == nil || ack.Properties.ReasonString != tt.want {
			t.Errorf("%s in authenticate: CONNACK %+v", tt.cmd, ack)
		}
	}
}
