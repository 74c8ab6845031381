package broker_test

import (
	"bytes"
	"fmt"
	"sort"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// These tests prove that the packet ids a client chooses and those the
// broker chooses are separate spaces (MQTT 5, 2.2.1; MQTT 3.1.1, 2.3.1):
// a client's PUBLISH, SUBSCRIBE, UNSUBSCRIBE or PUBREL carrying the id of a
// delivery the broker has not finished with the client must be handled as
// the client's own flow, and the delivery must survive it (see
// packetid.go). mochi keeps both directions in one map keyed by the id.

// pidClient is a raw client of either protocol level, with a persistent
// session.
type pidClient struct {
	*conn5
	v5 bool
}

// pidDial connects id with a persistent session (MQTT 5: clean start 0,
// Session Expiry Interval 300 s; 3.1.1: clean session 0) and returns it
// with the CONNACK's session-present flag.
func pidDial(t *testing.T, addr, id string, v5 bool) (*pidClient, bool) {
	t.Helper()
	if !v5 {
		raw, present, err := rawmqtt.DialSession(addr, id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = raw.Drop() })
		return &pidClient{conn5: &conn5{Conn: raw, t: t}}, present
	}
	b := str16(nil, "MQTT")
	b = append(b, 5, 0x00, 0, 30) // clean start 0, keepalive 30 s
	b = append(b, props([]byte{0x11, 0, 0, 1, 44})...)
	b = str16(b, id)
	c, ack := open5(t, addr, b)
	if len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("%s: CONNACK % x, want accepted", id, ack)
	}
	return &pidClient{conn5: c, v5: true}, ack[0]&1 == 1
}

// withProps inserts an empty property list after the first n bytes of b
// on an MQTT 5 connection.
func (c *pidClient) withProps(b []byte, n int) []byte {
	if !c.v5 {
		return b
	}
	return append(append(append([]byte(nil), b[:n]...), 0), b[n:]...)
}

// publish sends a PUBLISH of topic at qos with packet id id (dup: DUP set).
func (c *pidClient) publish(topic string, qos byte, id uint16, dup bool, payload string) {
	b := str16(nil, topic)
	n := len(b)
	if qos > 0 {
		b = append(b, byte(id>>8), byte(id))
		n += 2
	}
	b = c.withProps(append(b, payload...), n)
	h := byte(0x30) | qos<<1
	if dup {
		h |= 0x08
	}
	c.send(h, b)
}

// subscribe sends a SUBSCRIBE of filter at qos with packet id id.
func (c *pidClient) subscribe(id uint16, filter string, qos byte) {
	c.send(0x82, append(str16(c.withProps([]byte{byte(id >> 8), byte(id)}, 2), filter), qos))
}

// unsubscribe sends an UNSUBSCRIBE of filter with packet id id.
func (c *pidClient) unsubscribe(id uint16, filter string) {
	c.send(0xa2, str16(c.withProps([]byte{byte(id >> 8), byte(id)}, 2), filter))
}

// ack sends an acknowledgement packet (header) for id with no reason code.
func (c *pidClient) ack(header byte, id uint16) {
	c.send(header, []byte{byte(id >> 8), byte(id)})
}

// answer reads the next packet and fails unless it has type typ (the high
// nibble of the first byte), packet id id, and a reason code below 0x80
// (the first one of a SUBACK or UNSUBACK); it returns the reason code
// (0 when the packet has none).
func (c *pidClient) answer(what string, typ byte, id uint16) byte {
	c.t.Helper()
	code := c.reply(what, typ, id)
	if code >= 0x80 {
		c.t.Fatalf("%s: reason code %#x, want success", what, code)
	}
	return code
}

// reply reads the next packet and fails unless it has type typ and
// packet id id; it returns the (first) reason code, 0 when there is none.
func (c *pidClient) reply(what string, typ byte, id uint16) byte {
	c.t.Helper()
	h, body := c.next()
	if h&0xf0 != typ || len(body) < 2 || uint16(body[0])<<8|uint16(body[1]) != id {
		c.t.Fatalf("%s: got packet %#x % x, want %#x with packet id %d", what, h, body, typ, id)
	}
	rest := body[2:]
	if c.v5 && (typ == 0x90 || typ == 0xb0) { // skip SUBACK and UNSUBACK properties
		_, after, err := decodeProps(rest)
		if err != nil {
			c.t.Fatalf("%s: %v in % x", what, err, body)
		}
		rest = after
	}
	if len(rest) > 0 && (typ == 0x90 || c.v5) {
		return rest[0]
	}
	return 0
}

// delivery is a PUBLISH read by readUntilPong.
type delivery struct {
	header  byte
	id      uint16
	payload string
}

// readUntilPong sends a PINGREQ and returns every packet read before the
// PINGRESP: the broker writes what a resumed session resends before it
// reads the PINGREQ. PUBLISH packets are parsed; other packets are kept as
// their first byte and packet id.
func (c *pidClient) readUntilPong() []delivery {
	c.t.Helper()
	c.send(0xc0, nil)
	var got []delivery
	for {
		h, body := c.next()
		switch {
		case h == 0xd0:
			return got
		case h&0xf0 == 0x30:
			_, id, rest := rawmqtt.ParsePublish(h, body)
			if c.v5 {
				_, after, err := decodeProps(rest)
				if err != nil {
					c.t.Fatalf("PUBLISH % x: %v", body, err)
				}
				rest = after
			}
			got = append(got, delivery{header: h, id: id, payload: string(rest)})
		default:
			got = append(got, delivery{header: h, id: uint16(body[0])<<8 | uint16(body[1])})
		}
	}
}

// pidSetup starts a broker with its store in a temporary directory, a
// watcher subscribed to "pid/self" (QoS 2) and a client "sub" with a
// persistent session subscribed to "pid/out" at qos, which has received
// one delivery with packet id 1 and not acknowledged it. It returns the
// broker's address, the watcher and sub.
func pidSetup(t *testing.T, v5 bool, qos byte) (string, *conn5, *pidClient) {
	t.Helper()
	_, addr, watcher, sub := pidSetupIn(t, testConfig(t.TempDir()), v5, qos)
	return addr, watcher, sub
}

// pidSetupIn is pidSetup on cfg, also returning the broker.
func pidSetupIn(t *testing.T, cfg *config.Config, v5 bool, qos byte) (*broker.Server, string, *conn5, *pidClient) {
	t.Helper()
	srv, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	watcher := dial5(t, addr, "pid-watcher")
	watcher.send(0x82, subscribe5(1, "pid/self", 2))
	if typ, _ := watcher.next(); typ != 0x90 {
		t.Fatalf("watcher got %#x, want SUBACK", typ)
	}
	sub, _ := pidDial(t, addr, "pid-sub", v5)
	sub.subscribe(7, "pid/out", qos)
	sub.answer("first SUBSCRIBE", 0x90, 7)
	pub := dial5(t, addr, "pid-pub")
	pub.send(0x30|qos<<1, publish5("pid/out", qos, 9, props(), "delivery"))
	if qos == 1 {
		if typ, _ := pub.next(); typ != 0x40 {
			t.Fatalf("publisher got %#x, want PUBACK", typ)
		}
	} else {
		if typ, _ := pub.next(); typ != 0x50 {
			t.Fatalf("publisher got %#x, want PUBREC", typ)
		}
		pub.send(0x62, []byte{0, 9})
		if typ, _ := pub.next(); typ != 0x70 {
			t.Fatalf("publisher got %#x, want PUBCOMP", typ)
		}
	}
	h, body := sub.next()
	_, id, _ := rawmqtt.ParsePublish(h, body)
	if h&0xf0 != 0x30 || id != 1 || !bytes.HasSuffix(body, []byte("delivery")) {
		t.Fatalf("sub got %#x % x, want the delivery with packet id 1", h, body)
	}
	return srv, addr, watcher, sub
}

// watched fails unless the watcher's next PUBLISH carries payload.
func watched(t *testing.T, w *conn5, payload string) {
	t.Helper()
	h, body := w.next()
	_, _, rest := rawmqtt.ParsePublish(h, body)
	_, got, err := decodeProps(rest)
	if h&0xf0 != 0x30 || err != nil || string(got) != payload {
		t.Fatalf("watcher got %#x %q (%v), want %q", h, got, err, payload)
	}
}

// resumed reconnects sub (without DISCONNECT) and fails unless the session was present and
// the packets resent before a PINGRESP are want (header high nibble and
// packet id, and for a PUBLISH its payload), in any order.
func resumed(t *testing.T, sub *pidClient, addr string, want ...delivery) *pidClient {
	t.Helper()
	// A round trip first, so that the broker has handled what sub sent
	// before the new connection takes the session over.
	if got := sub.readUntilPong(); len(got) != 0 {
		t.Fatalf("before reconnecting: got %v, want nothing", got)
	}
	_ = sub.Drop()
	again, present := pidDial(t, addr, "pid-sub", sub.v5)
	if !present {
		t.Fatal("reconnect: session not present")
	}
	got := again.readUntilPong()
	for i := range got {
		got[i].header &= 0xf0
	}
	sortDeliveries(got)
	sortDeliveries(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resent at reconnection: %v, want %v", got, want)
	}
	return again
}

// sortDeliveries orders d by header, then packet id.
func sortDeliveries(d []delivery) {
	sort.Slice(d, func(i, j int) bool {
		return d[i].header < d[j].header || d[i].header == d[j].header && d[i].id < d[j].id
	})
}

// forLevels runs f as a subtest for MQTT 3.1.1 and for MQTT 5.
func forLevels(t *testing.T, f func(t *testing.T, v5 bool)) {
	for _, v5 := range []bool{false, true} {
		name := "3.1.1"
		if v5 {
			name = "5"
		}
		t.Run(name, func(t *testing.T) { f(t, v5) })
	}
}

// A SUBSCRIBE and an UNSUBSCRIBE whose packet id is that of a delivery
// the client has not acknowledged are the client's own: they are
// answered with success (mochi answered 0x91, "packet identifier in use",
// which 3.1.1 does not even have), and the delivery is still resent.
func TestClientSubscribeReusesDeliveryPacketID(t *testing.T) {
	forLevels(t, func(t *testing.T, v5 bool) {
		addr, _, sub := pidSetup(t, v5, 1)
		sub.subscribe(1, "pid/other", 1)
		if code := sub.answer("SUBSCRIBE 1", 0x90, 1); code != 1 {
			t.Fatalf("SUBACK 1 granted QoS %d, want 1", code)
		}
		sub.unsubscribe(1, "pid/other")
		sub.answer("UNSUBSCRIBE 1", 0xb0, 1)
		sub = resumed(t, sub, addr, delivery{0x30, 1, "delivery"})
		sub.ack(0x40, 1)
		resumed(t, sub, addr)
	})
}

// A QoS 1 PUBLISH whose packet id is that of a delivery the client has
// not acknowledged is acknowledged with its own id and delivered, and the
// delivery is not lost: mochi took the client's PUBLISH as ending the
// delivery, which then was never resent.
func TestClientQoS1PublishReusesDeliveryPacketID(t *testing.T) {
	forLevels(t, func(t *testing.T, v5 bool) {
		addr, watcher, sub := pidSetup(t, v5, 1)
		sub.publish("pid/self", 1, 1, false, "own")
		sub.answer("PUBLISH 1", 0x40, 1)
		watched(t, watcher, "own")
		sub = resumed(t, sub, addr, delivery{0x30, 1, "delivery"})
		sub.ack(0x40, 1)
		resumed(t, sub, addr)
	})
}

// A QoS 2 PUBLISH whose packet id is that of a delivery the client has
// not acknowledged opens the client's own flow: its PUBREC, a resent
// PUBLISH (DUP), the PUBREC resent at a reconnection and the PUBREL all
// use the client's id; the message is delivered once; the delivery is
// resent until the client acknowledges it.
func TestClientQoS2PublishReusesDeliveryPacketID(t *testing.T) {
	forLevels(t, func(t *testing.T, v5 bool) {
		addr, watcher, sub := pidSetup(t, v5, 1)
		sub.publish("pid/self", 2, 1, false, "own")
		sub.answer("PUBLISH 1", 0x50, 1)
		sub.publish("pid/self", 2, 1, true, "own")
		sub.answer("resent PUBLISH 1", 0x50, 1)
		watched(t, watcher, "own")
		// Both flows are open: the delivery (PUBLISH 1) and the client's
		// (PUBREC 1).
		sub = resumed(t, sub, addr, delivery{0x30, 1, "delivery"}, delivery{0x50, 1, ""})
		sub.ack(0x62, 1)
		sub.answer("PUBREL 1", 0x70, 1)
		sub = resumed(t, sub, addr, delivery{0x30, 1, "delivery"})
		sub.ack(0x40, 1)
		sub = resumed(t, sub, addr)
		sub.publish("pid/self", 0, 0, false, "end")
		watched(t, watcher, "end") // "own" was delivered once
	})
}

// The same with a QoS 2 delivery whose PUBREL the broker sent: the
// client's own QoS 2 flow with that id leaves the broker's PUBREL open, and
// the client's PUBREL completes the client's flow, not the broker's.
func TestClientQoS2PublishReusesPubrelPacketID(t *testing.T) {
	forLevels(t, func(t *testing.T, v5 bool) {
		addr, watcher, sub := pidSetup(t, v5, 2)
		sub.ack(0x50, 1) // PUBREC for the delivery
		sub.answer("PUBREC 1", 0x60, 1)
		sub.publish("pid/self", 2, 1, false, "own")
		sub.answer("PUBLISH 1", 0x50, 1)
		watched(t, watcher, "own")
		sub.ack(0x62, 1)
		sub.answer("PUBREL 1", 0x70, 1)
		sub = resumed(t, sub, addr, delivery{0x60, 1, ""})
		sub.ack(0x70, 1) // PUBCOMP for the delivery
		resumed(t, sub, addr)
	})
}

// The client's packet ids that are the broker's aliases of the client's
// other flows are the client's own too: a QoS 2 PUBLISH with the id the
// broker gave the client's open flow 1 (65535, the first alias: aliases
// are searched downwards) is a new message, delivered, and both flows
// complete with their own ids.
func TestClientPacketIDEqualToAnAlias(t *testing.T) {
	forLevels(t, func(t *testing.T, v5 bool) {
		addr, watcher, sub := pidSetup(t, v5, 1)
		sub.publish("pid/self", 2, 1, false, "one")
		sub.answer("PUBLISH 1", 0x50, 1)
		watched(t, watcher, "one")
		sub.publish("pid/self", 2, 65535, false, "max")
		sub.answer("PUBLISH 65535", 0x50, 65535)
		watched(t, watcher, "max")
		sub.ack(0x62, 65535)
		sub.answer("PUBREL 65535", 0x70, 65535)
		sub.ack(0x62, 1)
		sub.answer("PUBREL 1", 0x70, 1)
		sub = resumed(t, sub, addr, delivery{0x30, 1, "delivery"})
		sub.ack(0x40, 1)
		resumed(t, sub, addr)
	})
}

// Across a restart, the delivery a client's own flows with its packet id
// did not disturb is resent from the store; the client's QoS 2 flow under
// that id, which the broker kept in memory only, is not: its PUBREL after
// the restart is answered with a PUBCOMP for its id (MQTT 5: 0x92, packet
// identifier not found) and ends neither the delivery nor anything else.
func TestClientPacketIDsAcrossRestart(t *testing.T) {
	forLevels(t, func(t *testing.T, v5 bool) {
		cfg := testConfig(t.TempDir())
		srv, _, watcher, sub := pidSetupIn(t, cfg, v5, 1)
		sub.publish("pid/self", 1, 1, false, "qos1")
		sub.answer("PUBLISH 1 at QoS 1", 0x40, 1)
		watched(t, watcher, "qos1")
		sub.publish("pid/self", 2, 1, false, "qos2")
		sub.answer("PUBLISH 1 at QoS 2", 0x50, 1)
		watched(t, watcher, "qos2")
		if got := sub.readUntilPong(); len(got) != 0 {
			t.Fatalf("before the restart: got %v, want nothing", got)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		_, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
		sub, present := pidDial(t, addr, "pid-sub", v5)
		if !present {
			t.Fatal("after the restart: session not present")
		}
		got := sub.readUntilPong()
		if len(got) != 1 || got[0].header&0xf0 != 0x30 || got[0].id != 1 || got[0].payload != "delivery" {
			t.Fatalf("resent after the restart: %v, want the delivery with packet id 1 alone", got)
		}
		sub.ack(0x62, 1)
		code := sub.reply("PUBREL 1", 0x70, 1)
		if v5 && code != 0x92 {
			t.Fatalf("PUBCOMP 1 after the restart: code %#x, want 0x92", code)
		}
		sub = resumed(t, sub, addr, delivery{0x30, 1, "delivery"})
		sub.ack(0x40, 1)
		resumed(t, sub, addr)
	})
}
