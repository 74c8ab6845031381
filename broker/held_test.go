package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// heldPublish is a PUBLISH read from the wire by a test of held deliveries.
type heldPublish struct {
	header  byte
	id      uint16
	payload string
	expiry  uint32 // Message Expiry Interval; 0 with hasExp false: none
	hasExp  bool
}

// readPublish reads the next packet from c, which must be a PUBLISH.
func readPublish(t *testing.T, c *conn5) heldPublish {
	t.Helper()
	typ, body := c.next()
	if typ>>4 != 3 {
		t.Fatalf("got packet %#x % x, want a PUBLISH", typ, body)
	}
	_, id, rest := rawmqtt.ParsePublish(typ, body)
	ps, payload, err := decodeProps(rest)
	if err != nil {
		t.Fatalf("PUBLISH % x: %v", body, err)
	}
	p := heldPublish{header: typ, id: id, payload: string(payload)}
	if v := ps[0x02]; len(v) == 1 {
		p.expiry, p.hasExp = v[0].(uint32), true
	}
	return p
}

// puback acknowledges packet id id as c's client.
func puback(c *conn5, id uint16) { c.send(0x40, binary.BigEndian.AppendUint16(nil, id)) }

// subscribeHeld subscribes c to topic at QoS 1 and reads the SUBACK.
func subscribeHeld(t *testing.T, c *conn5, topic string) {
	t.Helper()
	c.send(0x82, subscribe5(1, topic, 1))
	if typ, body := c.next(); typ != 0x90 || body[len(body)-1] != 1 {
		t.Fatalf("SUBACK: %#x % x", typ, body)
	}
}

// publishNow publishes m through the broker's Publisher service.
func publishNow(t *testing.T, s *broker.Server, m broker.Message) {
	t.Helper()
	if err := s.Publish(m); err != nil {
		t.Fatal(err)
	}
}

// untilMarker publishes a QoS 0 marker on topic and reads up to it: the
// QoS 1 deliveries published before it have been written towards the
// connection by then (mochi queues both kinds in one channel), and a held
// one does not arrive. Any QoS 1 PUBLISH read meanwhile fails the test.
func untilMarker(t *testing.T, s *broker.Server, c *conn5, topic string) {
	t.Helper()
	publishNow(t, s, broker.Message{Topic: topic, Payload: []byte("marker")})
	for {
		p := readPublish(t, c)
		if (p.header>>1)&3 != 0 {
			t.Fatalf("QoS 1 delivery %q (id %d) arrived; it should be held", p.payload, p.id)
		}
		if p.payload == "marker" {
			return
		}
	}
}

// TestHeldDeliveryExpiryCountsTimeHeld: a delivery held back by the
// client's Receive Maximum is sent with the Message Expiry Interval it has
// left when it is released, not the one it had when it was held ("the
// value sent MUST be the received value minus the time that the message
// has been waiting in the Server", MQTT 5 §3.3.2.3.3, [MQTT-3.3.2-6]); one
// whose interval ran out while it was held is not sent at all
// ([MQTT-3.3.2-5]) and leaves the session's queue. The broker's clock of
// held deliveries is the test's: no real time passes.
func TestHeldDeliveryExpiryCountsTimeHeld(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), fanInExtensions())
	base := time.Now()
	var passed atomic.Int64
	s.SetHeldClock(func() time.Time { return base.Add(time.Duration(passed.Load())) })

	sub, _ := dialWindow5(t, addr, "sub", true, 1)
	subscribeHeld(t, sub.conn5, "held/t")
	publishNow(t, s, broker.Message{Topic: "held/t", QoS: 1, Payload: []byte("a")})
	a := readPublish(t, sub.conn5)
	if a.payload != "a" || a.hasExp {
		t.Fatalf("first delivery %+v, want \"a\" without an expiry", a)
	}
	// b, c and d wait behind a (Receive Maximum 1).
	publishNow(t, s, broker.Message{Topic: "held/t", QoS: 1, Payload: []byte("b"), MessageExpiry: 7200})
	publishNow(t, s, broker.Message{Topic: "held/t", QoS: 1, Payload: []byte("c"), MessageExpiry: 3600})
	publishNow(t, s, broker.Message{Topic: "held/t", QoS: 1, Payload: []byte("d")})
	untilMarker(t, s, sub.conn5, "held/t")

	passed.Store(int64(1800*time.Second + 500*time.Millisecond))
	puback(sub.conn5, a.id)
	b := readPublish(t, sub.conn5)
	// mochi encoded 7200 or 7199 (a second may tick between the publish
	// and its encoding); 1800.5 s held leaves 5399.5 or 5398.5, rounded up.
	if b.payload != "b" || !b.hasExp || b.expiry < 5399 || b.expiry > 5400 {
		t.Fatalf("released delivery %+v, want \"b\" with a Message Expiry Interval of 5399-5400 s (7200 s less 1800.5 s held)", b)
	}
	if b.header&0x08 != 0 {
		t.Fatalf("released delivery %+v carries DUP; it was never sent before [MQTT-3.3.1-1]", b)
	}

	// c (3600 s) has been held 3800.5 s when b's PUBACK frees a slot: it is
	// dropped, and d goes out instead.
	passed.Store(int64(3800*time.Second + 500*time.Millisecond))
	puback(sub.conn5, b.id)
	d := readPublish(t, sub.conn5)
	if d.payload != "d" || d.hasExp {
		t.Fatalf("delivery after the expired one: %+v, want \"d\" without an expiry (\"c\" expired while held)", d)
	}
	// c left mochi's in-flight map (the session's queue) with it: only d,
	// unacknowledged, is queued.
	poll.Until(t, "the expired held delivery to leave the queue", func() bool {
		info, ok := s.Client("sub")
		return ok && info.Queued == 1
	})
	puback(sub.conn5, d.id)
	poll.Until(t, "the queue to empty", func() bool {
		info, ok := s.Client("sub")
		return ok && info.Queued == 0
	})
}

// TestReusedPacketIDWaitsForItsAcknowledgement: mochi's expiry sweep
// removes an expired message from its in-flight map even after it was sent
// and before the client acknowledged it; once mochi's packet ids wrap
// around (65,535 deliveries later), it gives that id to a new message. The
// broker must not send the new PUBLISH while the client still holds the
// old one with the same id: "the Packet Identifier becomes available for
// reuse" only once the acknowledgement is processed ([MQTT-2.2.1-3], MQTT 5
// §2.2.1). The new message is held until the client's PUBACK and then
// sent.
func TestReusedPacketIDWaitsForItsAcknowledgement(t *testing.T) {
	if testing.Short() {
		t.Skip("65,535 deliveries")
	}
	s, addr := startServer(t, testConfig(t.TempDir()), fanInExtensions())
	sub, _ := dialWindow5(t, addr, "sub", true, 5)
	subscribeHeld(t, sub.conn5, "wrap/t")

	// The old message: sent, never acknowledged, expiring in a second.
	publishNow(t, s, broker.Message{Topic: "wrap/t", QoS: 1, Payload: []byte("old"), MessageExpiry: 1})
	old := readPublish(t, sub.conn5)
	poll.Until(t, "mochi's expiry sweep to drop the unacknowledged message", func() bool {
		info, ok := s.Client("sub")
		return ok && info.Queued == 0
	})

	// Walk mochi's packet ids once around, acknowledging each delivery.
	const ids = 1<<16 - 1
	for i := 1; i < ids; i++ {
		publishNow(t, s, broker.Message{Topic: "wrap/t", QoS: 1, Payload: []byte(fmt.Sprint(i))})
		p := readPublish(t, sub.conn5)
		if p.id == old.id {
			t.Fatalf("delivery %d got packet id %d, which the client holds unacknowledged", i, p.id)
		}
		puback(sub.conn5, p.id)
	}

	// The next delivery gets the old message's id back from mochi.
	publishNow(t, s, broker.Message{Topic: "wrap/t", QoS: 1, Payload: []byte("new")})
	untilMarker(t, s, sub.conn5, "wrap/t")
	puback(sub.conn5, old.id)
	p := readPublish(t, sub.conn5)
	if p.payload != "new" || p.id != old.id {
		t.Fatalf("after the old message's PUBACK got %+v, want \"new\" with id %d", p, old.id)
	}
	puback(sub.conn5, p.id)
}

// gatedAuthorizer allows everything, but holds a PUBLISH to topic "gate"
// until release is closed, after telling entered.
type gatedAuthorizer struct {
	brokertest.AllowAll
	entered chan struct{}
	release chan struct{}
}

// Authenticate allows the client, authorizing it with a itself.
func (a gatedAuthorizer) Authenticate(context.Context, *broker.Connect) broker.AuthResult {
	return broker.AuthResult{Decision: broker.Allow, Client: a}
}

// AuthorizePublish allows p, after release is closed when its topic is
// "gate".
func (a gatedAuthorizer) AuthorizePublish(p *broker.Publish) broker.Verdict {
	if p.Topic == "gate" {
		a.entered <- struct{}{}
		<-a.release
	}
	return broker.Verdict{Decision: broker.Allow}
}

// disconnects tells the ids of the clients whose connection ended.
type disconnects chan string

// OnEvent implements broker.EventListener.
func (d disconnects) OnEvent(e *broker.Event) {
	if e.Kind == broker.EventDisconnect {
		d <- e.ClientID
	}
}

// TestPendingForgottenWhenPubackFails: a retained QoS 1 publish is stored
// as pending before its PUBACK; when the PUBACK cannot be written (the
// publisher was disconnected meanwhile), mochi never queues the message,
// and the broker forgets its pending key at the disconnect instead of
// keeping it for good. The record stays in the store for the next start.
func TestPendingForgottenWhenPubackFails(t *testing.T) {
	gate := gatedAuthorizer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	gone := make(disconnects, 4)
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: gate, Events: gone})
	pub := dialRaw(t, addr, "pub")
	if err := pub.Send(0x33, append(str16(nil, "gate"), 0, 1, 'x')); err != nil { // retained QoS 1, id 1
		t.Fatal(err)
	}
	select {
	case <-gate.entered:
	case <-time.After(poll.Timeout):
		t.Fatal("the PUBLISH never reached the authorizer")
	}
	if err := s.Disconnect("pub", 0x98, "test", false); err != nil {
		close(gate.release)
		t.Fatal(err)
	}
	close(gate.release)
	// The disconnect event comes after mochi failed to write the PUBACK and
	// stopped reading.
	select {
	case id := <-gone:
		if id != "pub" {
			t.Fatalf("disconnect of %q, want pub", id)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("the publisher was not disconnected")
	}
	poll.Until(t, "the pending key to be forgotten", func() bool { return s.PendingInMemory() == 0 })
}

// TestHeldDeliveryResentWithoutDUP: deliveries a connection held back for
// the client's Receive Maximum and never sent are resent at the next
// connection without DUP, since that is their first delivery ("The DUP flag
// MUST be set to 1 by the Client or Server when it attempts to re-deliver
// a PUBLISH packet", [MQTT-3.3.1-1]; DUP 0 means the first attempt,
// §3.3.1.1); the one that was sent is resent with DUP.
func TestHeldDeliveryResentWithoutDUP(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), fanInExtensions())
	sub, _ := dialWindow5(t, addr, "sub", false, 1)
	subscribeHeld(t, sub.conn5, "dup/t")
	for _, p := range []string{"a", "b", "c"} {
		publishNow(t, s, broker.Message{Topic: "dup/t", QoS: 1, Payload: []byte(p)})
	}
	if a := readPublish(t, sub.conn5); a.payload != "a" || a.header&0x08 != 0 {
		t.Fatalf("first delivery %+v, want \"a\" without DUP", a)
	}
	untilMarker(t, s, sub.conn5, "dup/t") // b and c are held
	_ = sub.Drop()
	poll.Until(t, "the session to be offline", func() bool {
		info, ok := s.Client("sub")
		return ok && !info.Connected
	})

	sub, present := dialWindow5(t, addr, "sub", false, 3)
	if !present {
		t.Fatal("session not present after reconnecting")
	}
	want := map[string]bool{"a": true, "b": false, "c": false} // payload: DUP
	for range 3 {
		p := readPublish(t, sub.conn5)
		dup, ok := want[p.payload]
		if !ok {
			t.Fatalf("unexpected delivery %+v", p)
		}
		if got := p.header&0x08 != 0; got != dup {
			t.Fatalf("resent %q with DUP %v, want %v (sent before: %v)", p.payload, got, dup, dup)
		}
		delete(want, p.payload)
		puback(sub.conn5, p.id)
	}
}

// TestHeldDeliveriesUseNoTopicAlias: while the broker counts a client's
// Receive Maximum it sends no outbound topic aliases. mochi gives a topic
// its alias in the first PUBLISH and sends later ones with the alias alone;
// a held first PUBLISH that expires, or a QoS 0 one overtaking it, would
// leave the client with an alias it never learned, a protocol error
// ("the receiver ... has not previously received a Topic Alias mapping",
// MQTT 5 §3.3.2.3.4).
func TestHeldDeliveriesUseNoTopicAlias(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), fanInExtensions())
	base := time.Now()
	var passed atomic.Int64
	s.SetHeldClock(func() time.Time { return base.Add(time.Duration(passed.Load())) })

	// Receive Maximum 1, Topic Alias Maximum 10.
	b := str16(nil, "MQTT")
	b = append(b, 5, 0x02, 0, 60)
	b = append(b, props([]byte{propReceiveMaximum, 0, 1}, []byte{0x22, 0, 10})...)
	c, _ := open5(t, addr, str16(b, "sub"))
	subscribeHeld(t, c, "alias/#")

	check := func(want string) {
		t.Helper()
		typ, body := c.next()
		if typ>>4 != 3 {
			t.Fatalf("got packet %#x % x, want a PUBLISH", typ, body)
		}
		topic, id, rest := rawmqtt.ParsePublish(typ, body)
		if (typ>>1)&3 == 0 {
			rest = body[2+len(topic):]
		}
		ps, payload, err := decodeProps(rest)
		if err != nil {
			t.Fatal(err)
		}
		if string(payload) != want || string(topic) != "alias/a" || len(ps[0x23]) != 0 {
			t.Fatalf("PUBLISH topic %q payload %q props %v; want %q on alias/a without a topic alias", topic, payload, ps, want)
		}
		if (typ>>1)&3 != 0 {
			puback(c, id)
		}
	}
	publishNow(t, s, broker.Message{Topic: "alias/a", QoS: 1, Payload: []byte("first")})
	publishNow(t, s, broker.Message{Topic: "alias/a", QoS: 1, Payload: []byte("expires"), MessageExpiry: 10})
	publishNow(t, s, broker.Message{Topic: "alias/a", QoS: 0, Payload: []byte("qos0")})
	publishNow(t, s, broker.Message{Topic: "alias/a", QoS: 1, Payload: []byte("last")})
	// first is sent; expires and last wait behind it; qos0 overtakes them.
	typ, body := c.next()
	topic, id, _ := rawmqtt.ParsePublish(typ, body)
	if typ>>4 != 3 || string(topic) != "alias/a" {
		t.Fatalf("first delivery %#x % x", typ, body)
	}
	check("qos0")
	passed.Store(int64(20 * time.Second)) // "expires" runs out while held
	puback(c, id)
	check("last")
}
