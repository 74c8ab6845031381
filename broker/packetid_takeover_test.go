package broker_test

import (
	"bytes"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// dialExp connects v5 "pid-sub" with clean start 0 and the given expiry.
func dialExp(t *testing.T, addr string, expiry uint32) (*pidClient, bool) {
	t.Helper()
	b := str16(nil, "MQTT")
	b = append(b, 5, 0x00, 0, 30)
	if expiry > 0 {
		b = append(b, props([]byte{0x11, byte(expiry >> 24), byte(expiry >> 16), byte(expiry >> 8), byte(expiry)})...)
	} else {
		b = append(b, props()...)
	}
	b = str16(b, "pid-sub")
	c, ack := open5(t, addr, b)
	if len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK % x", ack)
	}
	return &pidClient{conn5: c, v5: true}, ack[0]&1 == 1
}

func setupExp(t *testing.T, expiry uint32) (string, *conn5, *pidClient) {
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	watcher := dial5(t, addr, "pid-watcher")
	watcher.send(0x82, subscribe5(1, "pid/self", 2))
	if typ, _ := watcher.next(); typ != 0x90 {
		t.Fatal("watcher suback")
	}
	sub, _ := dialExp(t, addr, expiry)
	sub.subscribe(7, "pid/out", 1)
	sub.answer("SUBSCRIBE", 0x90, 7)
	pub := dial5(t, addr, "pid-pub")
	pub.send(0x32, publish5("pid/out", 1, 9, props(), "delivery"))
	if typ, _ := pub.next(); typ != 0x40 {
		t.Fatal("pub puback")
	}
	h, body := sub.next()
	_, id, _ := rawmqtt.ParsePublish(h, body)
	if h&0xf0 != 0x30 || id != 1 || !bytes.HasSuffix(body, []byte("delivery")) {
		t.Fatalf("delivery % x", body)
	}
	sub.publish("pid/self", 2, 1, false, "own")
	sub.answer("PUBLISH 1", 0x50, 1)
	watched(t, watcher, "own")
	if got := sub.readUntilPong(); len(got) != 0 {
		t.Fatal(got)
	}
	return addr, watcher, sub
}

// TestPacketIDsTakeOverNonPersistent: a take-over of a live MQTT 5
// session with clean start 0 and Session Expiry 0 inherits the in-flight
// map (mochi's inheritClientSession), so it keeps the session's aliases
// too: the open QoS 2 flow's PUBREC is resent under the client's own id,
// and its PUBREL completes it.
func TestPacketIDsTakeOverNonPersistent(t *testing.T) {
	addr, _, old := setupExp(t, 0)
	_ = old
	again, present := dialExp(t, addr, 0)
	if !present {
		t.Fatal("session not present")
	}
	got := again.readUntilPong()
	t.Logf("resent at take-over: %v", got)
	for _, d := range got {
		if d.header&0xf0 == 0x50 && d.id != 1 {
			t.Errorf("PUBREC resent with id %d, the client never used it (want 1)", d.id)
		}
	}
	again.ack(0x62, 1)
	code := again.reply("PUBREL 1", 0x70, 1)
	if code != 0 {
		t.Errorf("PUBCOMP 1 code %#x, want 0 (flow lost)", code)
	}
}

// TestPacketIDsTakeOverOldConnectionExpires: an old connection with expiry
// 0 taken over by a persistent one ends with expire=true; that must not
// drop the aliases the new connection inherited, or the next reconnection
// would resend (and store) the PUBREC under the alias.
func TestPacketIDsTakeOverOldConnectionExpires(t *testing.T) {
	addr, _, old := setupExp(t, 0)
	again, present := dialExp(t, addr, 300)
	if !present {
		t.Fatal("session not present")
	}
	got := again.readUntilPong()
	t.Logf("resent at take-over: %v", got)
	_ = old.Drop()
	// let the old connection's OnDisconnect run
	if got := again.readUntilPong(); len(got) != 0 {
		t.Fatal(got)
	}
	_ = again.Drop()
	third, present := dialExp(t, addr, 300)
	if !present {
		t.Fatal("session not present (3rd)")
	}
	got = third.readUntilPong()
	t.Logf("resent at 3rd connection: %v", got)
	for _, d := range got {
		if d.header&0xf0 == 0x50 && d.id != 1 {
			t.Errorf("PUBREC resent with id %d, the client never used it (want 1)", d.id)
		}
	}
}

// TestPacketIDsTakeOverNonPersistentResentPublish: after a take-over
// without a persistent session, a client that never got its PUBREC
// resends the PUBLISH (DUP): it finds its alias and is not delivered a
// second time.
func TestPacketIDsTakeOverNonPersistentResentPublish(t *testing.T) {
	addr, watcher, _ := setupExp(t, 0)
	again, present := dialExp(t, addr, 0)
	if !present {
		t.Fatal("session not present")
	}
	again.publish("pid/self", 2, 1, true, "own")
	again.readUntilPong()
	again.publish("pid/self", 0, 0, false, "end")
	h, body := watcher.next()
	_, _, rest := rawmqtt.ParsePublish(h, body)
	_, p, _ := decodeProps(rest)
	if string(p) != "end" {
		t.Errorf("watcher got %q again, want only \"end\": QoS 2 message duplicated", p)
	}
}

// TestPacketIDsAliasNeverStored: the PUBREC of a renamed flow is never
// stored under its alias, so nothing under an id the client never used
// comes back after a restart.
func TestPacketIDsAliasNeverStored(t *testing.T) {
	cfg := testConfig(t.TempDir())
	srv, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	watcher := dial5(t, addr, "pid-watcher")
	watcher.send(0x82, subscribe5(1, "pid/self", 2))
	watcher.next()
	old, _ := dialExp(t, addr, 0)
	old.subscribe(7, "pid/out", 1)
	old.answer("SUBSCRIBE", 0x90, 7)
	pub := dial5(t, addr, "pid-pub")
	pub.send(0x32, publish5("pid/out", 1, 9, props(), "delivery"))
	pub.next()
	old.next()
	old.publish("pid/self", 2, 1, false, "own")
	old.answer("PUBLISH 1", 0x50, 1)
	again, _ := dialExp(t, addr, 300)
	again.readUntilPong()
	_ = old.Drop()
	again.readUntilPong()
	_ = again.Drop()
	third, _ := dialExp(t, addr, 300)
	t.Logf("3rd: %v", third.readUntilPong())
	third.readUntilPong()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	_, addr = startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	fourth, present := dialExp(t, addr, 300)
	got := fourth.readUntilPong()
	t.Logf("after restart (present %v): %v", present, got)
	for _, d := range got {
		if d.header&0xf0 == 0x50 && d.id != 1 {
			t.Errorf("stored PUBREC under alias %d restored", d.id)
		}
	}
	w2 := dial5(t, addr, "pid-watcher2")
	w2.send(0x82, subscribe5(1, "pid/self", 2))
	w2.next()
	fourth.publish("pid/self", 2, 65535, false, "new")
	t.Logf("answer to new PUBLISH 65535: code %#x", fourth.reply("PUBLISH 65535", 0x50, 65535))
	fourth.ack(0x62, 65535)
	fourth.reply("PUBREL", 0x70, 65535)
	fourth.publish("pid/self", 0, 0, false, "end")
	h, body := w2.next()
	_, _, rest := rawmqtt.ParsePublish(h, body)
	_, p, _ := decodeProps(rest)
	if string(p) != "new" {
		t.Errorf("watcher got %q, want \"new\": new QoS 2 message with id 65535 lost", p)
	}
}
