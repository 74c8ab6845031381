package broker_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

func TestDefaultDenyRefusesV311(t *testing.T) {
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{})
	c := paho3.NewClient(v3Options(addr, "v3-client"))
	tok := c.Connect()
	if !tok.WaitTimeout(poll.Timeout) {
		t.Fatal("connect: timed out")
	}
	ct := tok.(*paho3.ConnectToken)
	if ct.Error() == nil {
		t.Fatal("connect succeeded without a security extension")
	}
	if got := ct.ReturnCode(); got != 0x05 {
		t.Fatalf("CONNACK return code = %#x, want 0x05 (not authorized)", got)
	}
}

func TestDefaultDenyRefusesV5(t *testing.T) {
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{})
	c := v5Dial(t, addr, paho.ClientConfig{ClientID: "v5-client"})
	ack, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "v5-client", CleanStart: true, KeepAlive: 30})
	if err == nil {
		t.Fatal("connect succeeded without a security extension")
	}
	if ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("CONNACK = %+v (err %v), want reason 0x87", ack, err)
	}
	if ack.Properties == nil || ack.Properties.ReasonString != "no security extension is loaded" {
		t.Fatalf("CONNACK reason string = %+v", ack.Properties)
	}
}

func TestAuthenticatorRefusalCodes(t *testing.T) {
	rules := &brokertest.Rules{Refuse: map[string]byte{"bad": 0x86, "banned": 0x8A}}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules, Events: rules})

	for _, tc := range []struct {
		name, user string
		v5, v3     byte
	}{
		{"bad password", "bad", 0x86, 0x04},
		{"banned", "banned", 0x8A, 0x05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := v5Dial(t, addr, paho.ClientConfig{ClientID: "c5"})
			ack, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "c5", CleanStart: true, Username: tc.user, UsernameFlag: true})
			if err == nil || ack == nil || ack.ReasonCode != tc.v5 {
				t.Fatalf("v5 CONNACK = %+v, err %v; want %#x", ack, err, tc.v5)
			}
			o := v3Options(addr, "c3").SetUsername(tc.user)
			tok := paho3.NewClient(o).Connect()
			tok.WaitTimeout(poll.Timeout)
			if rc := tok.(*paho3.ConnectToken).ReturnCode(); rc != tc.v3 {
				t.Fatalf("v3 return code = %#x, want %#x", rc, tc.v3)
			}
		})
	}
	poll.Until(t, "4 auth_failed events", func() bool {
		failed := 0
		for _, e := range rules.Recorded() {
			if e.Kind == broker.EventAuthFailed {
				failed++
			}
		}
		return failed == 4
	})
}

func TestPublishSubscribeQoS(t *testing.T) {
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	r := newRecv()
	sub := v3Connect(t, v3Options(addr, "sub"))
	wait(t, "subscribe", sub.Subscribe("q/#", 2, r.handler))
	pub := v3Connect(t, v3Options(addr, "pub"))
	for qos := byte(0); qos <= 2; qos++ {
		wait(t, "publish", pub.Publish("q/x", qos, false, []byte{qos}))
		m := r.next(t, poll.Timeout)
		if m.Qos() != qos || m.Payload()[0] != qos {
			t.Fatalf("got qos %d payload %v, want qos %d", m.Qos(), m.Payload(), qos)
		}
	}
}

func TestRetainedMessageSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	s, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	pub := v3Connect(t, v3Options(addr, "pub"))
	wait(t, "publish retained", pub.Publish("status/a", 1, true, []byte("online")))
	wait(t, "publish retained", pub.Publish("status/b", 1, true, []byte("gone")))
	wait(t, "clear retained", pub.Publish("status/b", 1, true, []byte{}))
	pub.Disconnect(0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	_, addr = startServer(t, testConfig(dir), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	r := newRecv()
	sub := v3Connect(t, v3Options(addr, "sub"))
	wait(t, "subscribe", sub.Subscribe("status/#", 1, r.handler))
	m := r.next(t, poll.Timeout)
	if m.Topic() != "status/a" || string(m.Payload()) != "online" || !m.Retained() {
		t.Fatalf("got %s %q retained=%v", m.Topic(), m.Payload(), m.Retained())
	}
	r.none(t, 200*time.Millisecond)
}

// connectV5Session connects a v5 client with a session expiry and returns it
// with whether the broker had a session for it.
// expectQueuedAfterRestart reconnects the persistent session id and
// requires the session to be present and its first message to be want.
func expectQueuedAfterRestart(t *testing.T, addr, id, want string) {
	t.Helper()
	got := make(chan string, 4)
	_, present := connectV5Session(t, addr, id, 3600, func(p paho.PublishReceived) (bool, error) {
		got <- string(p.Packet.Payload)
		return true, nil
	})
	if !present {
		t.Fatalf("session %q was not restored", id)
	}
	select {
	case m := <-got:
		if m != want {
			t.Fatalf("queued message = %q, want %q", m, want)
		}
	case <-time.After(poll.Timeout):
		t.Fatalf("queued message for %q not delivered after restart", id)
	}
}

func connectV5Session(t *testing.T, addr, id string, expiry uint32, onPub func(paho.PublishReceived) (bool, error)) (*paho.Client, bool) {
	t.Helper()
	cfg := paho.ClientConfig{ClientID: id}
	if onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPub}
	}
	c := v5Dial(t, addr, cfg)
	ack, err := c.Connect(ctx5(t), &paho.Connect{ClientID: id, CleanStart: false, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c, ack.SessionPresent
}

func TestSessionExpiryAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	ext := broker.Extensions{Authenticator: brokertest.AllowAll{}}
	s, addr := startServer(t, testConfig(dir), ext)

	short, _ := connectV5Session(t, addr, "short", 1, nil)
	long, _ := connectV5Session(t, addr, "long", 3600, nil)
	for _, c := range []*paho.Client{short, long} {
		if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "news", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}
	// A message queued for "long" while it is offline.
	pub := v3Connect(t, v3Options(addr, "pub"))
	wait(t, "publish", pub.Publish("news", 1, false, []byte("while you were away")))
	pub.Disconnect(0)
	// Before the broker stops, the store must hold both sessions as offline
	// (their expiry counts from then) and the message queued for "long".
	var shortExpires int64 // unix second from which "short" is expired
	poll.Until(t, "both sessions offline and the message queued in the store", func() bool {
		snap, err := s.Store().Load()
		if err != nil {
			t.Fatal(err)
		}
		offline, queued := 0, false
		for _, sess := range snap.Sessions {
			if (sess.ClientID == "short" || sess.ClientID == "long") && sess.DisconnectedAt != 0 {
				offline++
			}
			if sess.ClientID == "short" {
				shortExpires = sess.DisconnectedAt + int64(sess.SessionExpiry)
			}
		}
		for _, m := range snap.Inflight {
			queued = queued || m.ClientID == "long"
		}
		return offline == 2 && queued
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// "short" expires while the broker is down: real time must pass, from
	// its stored disconnect time.
	poll.Until(t, "the session expiry of \"short\" to pass", func() bool { return time.Now().Unix() >= shortExpires })

	s2, addr := startServer(t, testConfig(dir), ext)
	expectQueuedAfterRestart(t, addr, "long", "while you were away")
	// Removed whole from the store, subscriptions included, before anyone
	// reconnected.
	snap, err := s2.Store().Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, sess := range snap.Sessions {
		if sess.ClientID == "short" {
			t.Fatal("expired session still stored")
		}
	}
	for _, sub := range snap.Subscriptions {
		if sub.ClientID == "short" {
			t.Fatalf("subscription of the expired session still stored: %+v", sub)
		}
	}
	_, present := connectV5Session(t, addr, "short", 1, nil)
	if present {
		t.Fatal("session \"short\" survived its expiry")
	}
}

func TestPublishAuthorization(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{
		"secret/": {Decision: broker.Deny, ReasonCode: 0x87},
		"kick/":   {Decision: broker.Disconnect, ReasonCode: 0x98, ReasonString: "go away"},
	}}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules})
	r := newRecv()
	watcher := v3Connect(t, v3Options(addr, "watcher"))
	wait(t, "subscribe", watcher.Subscribe("#", 1, r.handler))

	t.Run("v5 qos1 denied gets puback 0x87", func(t *testing.T) {
		c := v5Dial(t, addr, paho.ClientConfig{ClientID: "p5"})
		if _, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "p5", CleanStart: true}); err != nil {
			t.Fatal(err)
		}
		resp, err := c.Publish(ctx5(t), &paho.Publish{Topic: "secret/x", QoS: 1, Payload: []byte("no")})
		if resp == nil || resp.ReasonCode != 0x87 {
			t.Fatalf("publish response = %+v, err %v; want reason 0x87", resp, err)
		}
		resp, err = c.Publish(ctx5(t), &paho.Publish{Topic: "open/x", QoS: 1, Payload: []byte("yes")})
		if err != nil || resp.ReasonCode != 0 {
			t.Fatalf("allowed publish: %+v %v", resp, err)
		}
		if m := r.next(t, poll.Timeout); m.Topic() != "open/x" {
			t.Fatalf("watcher got %s", m.Topic())
		}
	})
	t.Run("v3 qos0 denied is dropped", func(t *testing.T) {
		c := v3Connect(t, v3Options(addr, "p3"))
		wait(t, "publish", c.Publish("secret/y", 0, false, []byte("no")))
		wait(t, "publish", c.Publish("open/y", 0, false, []byte("yes")))
		if m := r.next(t, poll.Timeout); m.Topic() != "open/y" {
			t.Fatalf("watcher got %s, want open/y only", m.Topic())
		}
		if !c.IsConnected() {
			t.Fatal("qos 0 denial disconnected the client")
		}
	})
	t.Run("v3 qos1 denied disconnects", func(t *testing.T) {
		lost := make(chan struct{})
		c := v3Connect(t, v3Options(addr, "p3b").SetConnectionLostHandler(func(paho3.Client, error) { close(lost) }))
		c.Publish("secret/z", 1, false, []byte("no"))
		select {
		case <-lost:
		case <-time.After(poll.Timeout):
			t.Fatal("client not disconnected")
		}
	})
	t.Run("v5 disconnect verdict", func(t *testing.T) {
		got := make(chan byte, 1)
		c := v5Dial(t, addr, paho.ClientConfig{ClientID: "k5", OnServerDisconnect: func(d *paho.Disconnect) { got <- d.ReasonCode }})
		if _, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "k5", CleanStart: true}); err != nil {
			t.Fatal(err)
		}
		_, _ = c.Publish(ctx5(t), &paho.Publish{Topic: "kick/me", QoS: 0, Payload: []byte("x")})
		select {
		case code := <-got:
			if code != 0x98 {
				t.Fatalf("disconnect reason = %#x, want 0x98", code)
			}
		case <-time.After(poll.Timeout):
			t.Fatal("no DISCONNECT from the server")
		}
	})
	r.none(t, 200*time.Millisecond)
}

func TestSubscribeAuthorization(t *testing.T) {
	rules := &brokertest.Rules{UserDenyPrefix: map[string][]string{"reader": {"secret/"}}}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules, Events: rules})
	c := v5Dial(t, addr, paho.ClientConfig{ClientID: "s5"})
	if _, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "s5", CleanStart: true, Username: "reader", UsernameFlag: true}); err != nil {
		t.Fatal(err)
	}
	ack, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "open/#", QoS: 1}, {Topic: "secret/#", QoS: 1},
	}})
	if ack == nil || len(ack.Reasons) != 2 || ack.Reasons[0] != 1 || ack.Reasons[1] != 0x87 {
		t.Fatalf("SUBACK = %+v (err %v), want [1 0x87]", ack, err)
	}

	// The refused filter really is not subscribed.
	pub := v3Connect(t, v3Options(addr, "p"))
	got := make(chan string, 4)
	c.AddOnPublishReceived(func(p paho.PublishReceived) (bool, error) { got <- p.Packet.Topic; return true, nil })
	wait(t, "publish", pub.Publish("secret/x", 1, false, []byte("hidden")))
	wait(t, "publish", pub.Publish("open/x", 1, false, []byte("visible")))
	if topic := <-got; topic != "open/x" {
		t.Fatalf("received %q through a refused subscription", topic)
	}

	v3 := v3Connect(t, v3Options(addr, "s3").SetUsername("reader"))
	tok := v3.Subscribe("secret/#", 1, nil)
	tok.WaitTimeout(poll.Timeout)
	if codes := tok.(*paho3.SubscribeToken).Result(); codes["secret/#"] != 0x80 {
		t.Fatalf("3.1.1 SUBACK code = %#x, want 0x80", codes["secret/#"])
	}
	poll.Until(t, "2 subscribe events", func() bool {
		n := 0
		for _, e := range rules.Recorded() {
			if e.Kind == broker.EventSubscribe {
				n++
			}
		}
		return n == 2
	})
}

func TestConnectTimeoutClosesSilentConnections(t *testing.T) {
	cfg := testConfig(t.TempDir())
	_, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(poll.Timeout))
	_, err = bufio.NewReader(conn).ReadByte()
	if err == nil {
		t.Fatal("read a byte from a connection that never sent CONNECT")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("broker kept a silent connection open for %v", time.Since(start))
	}
}

func TestShutdownDisconnectsWith0x8B(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	got := make(chan byte, 1)
	c := v5Dial(t, addr, paho.ClientConfig{ClientID: "x", OnServerDisconnect: func(d *paho.Disconnect) { got <- d.ReasonCode }})
	if _, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "x", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-got:
		if code != 0x8B {
			t.Fatalf("reason = %#x, want 0x8B", code)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("no DISCONNECT on shutdown")
	}
}

// TestResumedSessionIsReauthorized: a session made by one user and resumed
// by another keeps only what the new user may subscribe to.
func TestResumedSessionIsReauthorized(t *testing.T) {
	rules := &brokertest.Rules{UserDenyPrefix: map[string][]string{"mallory": {"secret/"}}}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules})

	alice := paho3.NewClient(v3Options(addr, "dev").SetCleanSession(false).SetUsername("alice"))
	wait(t, "alice connect", alice.Connect())
	wait(t, "alice subscribe", alice.Subscribe("secret/#", 1, nil))
	wait(t, "alice subscribe", alice.Subscribe("public/#", 1, nil))
	alice.Disconnect(100)

	pub := v3Connect(t, v3Options(addr, "pub"))
	wait(t, "publish", pub.Publish("secret/plans", 1, false, []byte("queued secret")))

	got := make(chan string, 8)
	o := v3Options(addr, "dev").SetCleanSession(false).SetUsername("mallory")
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { got <- m.Topic() })
	mallory := paho3.NewClient(o)
	wait(t, "mallory connect", mallory.Connect())
	defer mallory.Disconnect(0)
	wait(t, "publish", pub.Publish("secret/more", 1, false, []byte("live secret")))
	wait(t, "publish", pub.Publish("public/news", 1, false, []byte("news")))
	if topic := <-got; topic != "public/news" {
		t.Fatalf("mallory received %q from alice's session", topic)
	}
	select {
	case topic := <-got:
		t.Fatalf("mallory received %q", topic)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestInlineClientIDIsReserved(t *testing.T) {
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	tok := paho3.NewClient(v3Options(addr, "inline")).Connect()
	tok.WaitTimeout(poll.Timeout)
	if rc := tok.(*paho3.ConnectToken).ReturnCode(); rc != 0x02 {
		t.Fatalf("return code %#x, want 0x02 (identifier rejected)", rc)
	}
}

// TestAcknowledgedMessagesAreNotRedelivered: QoS 1 messages a persistent
// subscriber acknowledged are gone from its session after a restart.
func TestAcknowledgedMessagesAreNotRedelivered(t *testing.T) {
	dir := t.TempDir()
	s, addr := startServer(t, testConfig(dir), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	r := newRecv()
	sub := paho3.NewClient(v3Options(addr, "acker").SetCleanSession(false).SetDefaultPublishHandler(r.handler))
	wait(t, "connect", sub.Connect())
	wait(t, "subscribe", sub.Subscribe("acked/#", 1, nil))
	pub := v3Connect(t, v3Options(addr, "pub"))
	for i := 0; i < 5; i++ {
		wait(t, "publish", pub.Publish("acked/x", 1, false, []byte{byte(i)}))
		r.next(t, poll.Timeout)
	}
	poll.Until(t, "the PUBACKs to clear the acker's queue in the store", func() bool {
		snap, err := s.Store().Load()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range snap.Inflight {
			if m.ClientID == "acker" {
				return false
			}
		}
		return true
	})
	sub.Disconnect(100)
	pub.Disconnect(0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, addr = startServer(t, testConfig(dir), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	r2 := newRecv()
	sub2 := paho3.NewClient(v3Options(addr, "acker").SetCleanSession(false).SetDefaultPublishHandler(r2.handler))
	wait(t, "reconnect", sub2.Connect())
	defer sub2.Disconnect(0)
	r2.none(t, 500*time.Millisecond)
}
