package broker_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// This file tests the interceptors (intercept.go) with a Go implementation
// of broker.Interceptors (the broker cannot load Wasm; the host's tests run
// real modules), over real connections: every change is read off the wire.

// testInterceptors runs, at each point, the function the test set (none:
// the point is not active) and counts the calls. Functions may be set at
// any time, also while clients are connected.
type testInterceptors struct {
	mu         sync.Mutex
	connect    func(*broker.Connect)
	connack    func(broker.Peer, *broker.Connack)
	publish    func(broker.Peer, *broker.Message) broker.Prevented
	delivery   func(broker.Peer, string, *broker.Message) broker.Prevented
	subscribe  func(broker.Peer, *broker.Subscription) broker.Prevented
	disconnect func(broker.Peer, *broker.DisconnectPacket)
	calls      [6]atomic.Int64 // per InterceptPoint
}

var _ broker.Interceptors = (*testInterceptors)(nil)

func (ti *testInterceptors) set(f func(ti *testInterceptors)) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	f(ti)
}

func (ti *testInterceptors) Active() broker.InterceptPoints {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	var s broker.InterceptPoints
	for p, on := range []bool{ti.connect != nil, ti.connack != nil, ti.publish != nil, ti.delivery != nil, ti.subscribe != nil, ti.disconnect != nil} {
		if on {
			s |= 1 << p
		}
	}
	return s
}

func (ti *testInterceptors) InterceptConnect(_ context.Context, c *broker.Connect) {
	ti.calls[broker.InterceptConnect].Add(1)
	ti.mu.Lock()
	f := ti.connect
	ti.mu.Unlock()
	if f != nil {
		f(c)
	}
}

func (ti *testInterceptors) InterceptConnack(cl broker.Peer, a *broker.Connack) {
	ti.calls[broker.InterceptConnack].Add(1)
	ti.mu.Lock()
	f := ti.connack
	ti.mu.Unlock()
	if f != nil {
		f(cl, a)
	}
}

func (ti *testInterceptors) InterceptPublish(cl broker.Peer, m *broker.Message) broker.Prevented {
	ti.calls[broker.InterceptPublishInbound].Add(1)
	ti.mu.Lock()
	f := ti.publish
	ti.mu.Unlock()
	if f == nil {
		return broker.Prevented{}
	}
	return f(cl, m)
}

func (ti *testInterceptors) InterceptDelivery(cl broker.Peer, publisher string, m *broker.Message) broker.Prevented {
	ti.calls[broker.InterceptPublishOutbound].Add(1)
	ti.mu.Lock()
	f := ti.delivery
	ti.mu.Unlock()
	if f == nil {
		return broker.Prevented{}
	}
	return f(cl, publisher, m)
}

// WantsDelivery sends every delivery to InterceptDelivery, which counts it.
func (ti *testInterceptors) WantsDelivery(string, string) bool { return true }

func (ti *testInterceptors) InterceptSubscribe(cl broker.Peer, s *broker.Subscription) broker.Prevented {
	ti.calls[broker.InterceptSubscribe].Add(1)
	ti.mu.Lock()
	f := ti.subscribe
	ti.mu.Unlock()
	if f == nil {
		return broker.Prevented{}
	}
	return f(cl, s)
}

func (ti *testInterceptors) InterceptDisconnect(cl broker.Peer, d *broker.DisconnectPacket) {
	ti.calls[broker.InterceptDisconnect].Add(1)
	ti.mu.Lock()
	f := ti.disconnect
	ti.mu.Unlock()
	if f != nil {
		f(cl, d)
	}
}

// icBroker is a broker with test interceptors and the rule-based security
// of brokertest (allows all unless told otherwise, records events).
type icBroker struct {
	*broker.Server
	t     *testing.T
	addr  string
	ic    *testInterceptors
	rules *brokertest.Rules
	auth  *connectRecorder
}

func startIC(t *testing.T, rules *brokertest.Rules) *icBroker {
	t.Helper()
	if rules == nil {
		rules = &brokertest.Rules{}
	}
	b := &icBroker{t: t, ic: &testInterceptors{}, rules: rules}
	b.auth = &connectRecorder{Rules: rules, seen: make(chan recordedConnect, 16)}
	b.Server, b.addr = startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: b.auth, Events: rules, Interceptors: b.ic})
	b.auth.srv.Store(b.Server)
	return b
}

// recordedConnect is what the Authenticator saw of a CONNECT.
type recordedConnect struct {
	c    broker.Connect
	will broker.WillInfo
	attr string // the connection attribute "seen", "" when none
}

// connectRecorder records each CONNECT it authenticates, then lets Rules
// decide.
type connectRecorder struct {
	*brokertest.Rules
	srv  atomic.Pointer[broker.Server]
	seen chan recordedConnect
}

func (r *connectRecorder) Authenticate(ctx context.Context, c *broker.Connect) broker.AuthResult {
	rec := recordedConnect{c: *c}
	if c.Will != nil {
		rec.will = *c.Will
	}
	if v, ok, _ := r.srv.Load().ConnectionAttribute(c.Conn, "seen"); ok {
		rec.attr = string(v)
	}
	r.seen <- rec
	return r.Rules.Authenticate(ctx, c)
}

// publish5Packet is a decoded MQTT 5 PUBLISH.
type publish5Packet struct {
	topic   string
	qos     byte
	retain  bool
	dup     bool
	id      uint16
	props   properties
	payload string
}

// readPublish5 reads the next packet of c, which must be a PUBLISH.
func (c *conn5) readPublish5() publish5Packet {
	c.t.Helper()
	typ, body := c.next()
	if typ>>4 != 3 {
		c.t.Fatalf("got packet %#x % x, want a PUBLISH", typ, body)
	}
	p := publish5Packet{qos: typ >> 1 & 3, retain: typ&1 == 1, dup: typ&8 != 0}
	l := int(binary.BigEndian.Uint16(body))
	p.topic, body = string(body[2:2+l]), body[2+l:]
	if p.qos > 0 {
		p.id, body = binary.BigEndian.Uint16(body), body[2:]
	}
	var err error
	if p.props, body, err = decodeProps(body); err != nil {
		c.t.Fatal(err)
	}
	p.payload = string(body)
	return p
}

// expect reads the next packet and fails unless it is typ with body want.
func (c *conn5) expect(what string, typ byte, want []byte) {
	c.t.Helper()
	gt, body := c.next()
	if gt != typ || !bytes.Equal(body, want) {
		c.t.Fatalf("%s: got %#x % x, want %#x % x", what, gt, body, typ, want)
	}
}

// ackReason reads a PUBACK/PUBREC (typ) and returns its id, code and
// reason string.
func (c *conn5) ackReason(typ byte) (uint16, byte, string) {
	c.t.Helper()
	gt, body := c.next()
	if gt != typ || len(body) < 2 {
		c.t.Fatalf("got %#x % x, want %#x", gt, body, typ)
	}
	id := binary.BigEndian.Uint16(body)
	if len(body) == 2 {
		return id, 0, ""
	}
	code := body[2]
	reason := ""
	if len(body) > 3 {
		p, _, err := decodeProps(body[3:])
		if err != nil {
			c.t.Fatal(err)
		}
		if r := p[propReasonString]; len(r) > 0 {
			reason = r[0].(string)
		}
	}
	return id, code, reason
}

// subscribe sends a SUBSCRIBE of one filter with options byte opts (QoS in
// its low bits) and returns the SUBACK's reason codes.
func (c *conn5) subscribe(id uint16, filter string, opts byte) []byte {
	c.t.Helper()
	b := []byte{byte(id >> 8), byte(id), 0}
	b = append(str16(b, filter), opts)
	c.send(0x82, b)
	typ, ack := c.next()
	if typ != 0x90 {
		c.t.Fatalf("got %#x % x, want a SUBACK", typ, ack)
	}
	_, rest, err := decodeProps(ack[2:])
	if err != nil {
		c.t.Fatal(err)
	}
	return rest
}

// ping sends PINGREQ and reads PINGRESP as the next packet.
func (c *conn5) ping() {
	c.t.Helper()
	c.send(0xC0, nil)
	c.expect("PINGRESP", 0xD0, []byte{})
}

// dial5Session connects an MQTT 5 client with a session expiry, clean
// start or not, and returns it with the CONNACK's session-present flag.
func dial5Session(t *testing.T, addr, id string, clean bool, expiry uint32, extra ...[]byte) (*conn5, bool) {
	t.Helper()
	ps := append([][]byte{{0x11, byte(expiry >> 24), byte(expiry >> 16), byte(expiry >> 8), byte(expiry)}}, extra...)
	flags := byte(0)
	body := connect5Body(id, flags, 30, props(ps...), nil)
	if !clean {
		body[7] &^= 0x02 // clear clean start (set by connect5Body)
	}
	c, ack := open5(t, addr, body)
	if len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK % x, want accepted", ack)
	}
	return c, ack[0]&1 == 1
}

// v3Raw connects an MQTT 3.1.1 client with raw packets.
func v3Raw(t *testing.T, addr, id string) *conn5 {
	t.Helper()
	raw, err := rawmqtt.Dial(addr, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Drop() })
	return &conn5{Conn: raw, t: t}
}

// publish3 is the body of an MQTT 3.1.1 PUBLISH.
func publish3(topic string, id uint16, qos byte, payload string) []byte {
	b := str16(nil, topic)
	if qos > 0 {
		b = append(b, byte(id>>8), byte(id))
	}
	return append(b, payload...)
}

// TestInterceptConnectFields: every CONNECT field an interceptor changes is
// what the authenticator sees and what the broker acts on (client id,
// will), and what it writes into the connection's attributes stays for
// authentication.
func TestInterceptConnectFields(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.connect = func(c *broker.Connect) {
			if c.ClientID != "orig" {
				if c.Will != nil && c.Will.Topic == "will/v3" {
					c.Will.Topic = "" // remove the will
				}
				return
			}
			if err := b.PutConnectionAttribute(c.Conn, "seen", []byte("by-interceptor")); err != nil {
				t.Errorf("put attribute: %v", err)
			}
			c.ClientID, c.Username, c.HasUsername, c.Password = "renamed", "u2", true, []byte("p2")
			c.Keepalive, c.SessionExpiry, c.ReceiveMaximum = 45, 300, 7
			c.UserProperties = append(c.UserProperties, broker.UserProperty{Key: "k", Value: "v"})
			c.Will = &broker.WillInfo{Topic: "will/changed", Payload: []byte("gone"), QoS: 1, Delay: 0}
		}
	})
	watcher := dial5(t, b.addr, "watcher")
	if codes := watcher.subscribe(1, "will/#", 1); !bytes.Equal(codes, []byte{1}) {
		t.Fatalf("SUBACK %x", codes)
	}
	<-b.auth.seen // the watcher's

	// MQTT 5: will (delay 9 s) on will/orig, user name u1, password p1, user property a=1.
	will := append(props([]byte{0x18, 0, 0, 0, 9}), str16(nil, "will/orig")...)
	will = str16(will, "orig-will")
	extra := str16(str16(will, "u1"), "p1")
	c, ack := open5(t, b.addr, connect5Body("orig", 0x04|0x08|0x80|0x40, 30, props(userProp("a", "1")), extra))
	if len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK % x", ack)
	}
	rec := <-b.auth.seen
	want := broker.Connect{ClientID: "renamed", Username: "u2", HasUsername: true, Password: []byte("p2"), ProtocolVersion: 5,
		CleanStart: true, Keepalive: 45, SessionExpiry: 300, ReceiveMaximum: 7,
		UserProperties: []broker.UserProperty{{Key: "a", Value: "1"}, {Key: "k", Value: "v"}}}
	got := rec.c
	if got.ClientID != want.ClientID || got.Username != want.Username || !got.HasUsername || string(got.Password) != "p2" ||
		got.Keepalive != want.Keepalive || got.SessionExpiry != want.SessionExpiry || got.ReceiveMaximum != want.ReceiveMaximum ||
		!slices.Equal(got.UserProperties, want.UserProperties) {
		t.Fatalf("authenticator saw %+v, want %+v", got, want)
	}
	if got.Listener == "" || got.RemoteAddr == "" {
		t.Fatalf("authenticator saw listener %q, address %q", got.Listener, got.RemoteAddr)
	}
	if w := rec.will; w.Topic != "will/changed" || string(w.Payload) != "gone" || w.QoS != 1 || w.Retain || w.Delay != 0 {
		t.Fatalf("authenticator saw will %+v", w)
	}
	if rec.attr != "by-interceptor" {
		t.Fatalf("connection attribute seen by the authenticator: %q", rec.attr)
	}
	info, ok := b.Client("renamed")
	if !ok || !info.Connected || info.Username != "u2" || info.SessionExpiry != 300 {
		t.Fatalf("client renamed: %+v %v", info, ok)
	}
	_ = c.Drop() // the will goes out now, on the changed topic
	p := watcher.readPublish5()
	if p.topic != "will/changed" || p.payload != "gone" {
		t.Fatalf("will %+v", p)
	}

	// MQTT 3.1.1: the interceptor removes the will.
	raw, err := rawmqtt.DialWill(b.addr, "v3", "will/v3", "x")
	if err != nil {
		t.Fatal(err)
	}
	if rec := <-b.auth.seen; rec.c.Will != nil {
		t.Fatalf("3.1.1 will kept: %+v", rec.will)
	}
	_ = raw.Drop()
	poll.Until(t, "v3 disconnected", func() bool {
		info, ok := b.Client("v3")
		return !ok || !info.Connected
	})
	other := dial5(t, b.addr, "other")
	other.send(0x30, publish5("will/marker", 0, 0, props(), "m"))
	if p := watcher.readPublish5(); p.topic != "will/marker" {
		t.Fatalf("removed will published: %+v", p)
	}
}

// TestInterceptConnack: MQTT 5 CONNACKs, accepting and refusing, carry the
// interceptor's user properties and reason string; a 3.1.1 CONNACK has no
// properties and is unchanged.
func TestInterceptConnack(t *testing.T) {
	b := startIC(t, &brokertest.Rules{Refuse: map[string]byte{"bad": 0x86}})
	b.ic.set(func(ti *testInterceptors) {
		ti.connack = func(cl broker.Peer, a *broker.Connack) {
			a.UserProperties = append(a.UserProperties, broker.UserProperty{Key: "srv", Value: cl.ID})
			if a.ReasonCode >= 0x80 {
				a.ReasonString = "go away"
			} else {
				a.ReasonString = "welcome"
			}
		}
	})
	_, ack := open5(t, b.addr, connect5Body("good", 0, 30, props(), nil))
	p, _, err := decodeProps(ack[2:])
	if err != nil || ack[1] != 0 {
		t.Fatalf("CONNACK % x: %v", ack, err)
	}
	if fmt.Sprint(p[propUserProperty]) != "[[srv good]]" || fmt.Sprint(p[propReasonString]) != "[welcome]" {
		t.Fatalf("accepting CONNACK properties %v", p)
	}
	_ = <-b.auth.seen

	_, ack = open5(t, b.addr, connect5Body("refused", 0x80, 30, props(), str16(nil, "bad")))
	p, _, err = decodeProps(ack[2:])
	if err != nil || ack[1] != 0x86 {
		t.Fatalf("refusing CONNACK % x: %v", ack, err)
	}
	if fmt.Sprint(p[propUserProperty]) != "[[srv refused]]" || fmt.Sprint(p[propReasonString]) != "[go away]" {
		t.Fatalf("refusing CONNACK properties %v", p)
	}
	_ = <-b.auth.seen

	before := b.ic.calls[broker.InterceptConnack].Load()
	v3Raw(t, b.addr, "v3") // rawmqtt checks the CONNACK: 0x20 02 00 00
	_ = <-b.auth.seen
	if n := b.ic.calls[broker.InterceptConnack].Load(); n != before+1 {
		t.Fatalf("3.1.1 CONNACK: %d interceptor calls, want 1", n-before)
	}
}

// changeAll changes every field of an inbound PUBLISH an interceptor may.
func changeAll(m *broker.Message) {
	m.Topic = "out/" + m.Topic[len("in/"):]
	m.Payload = bytes.ToUpper(m.Payload)
	m.Retain = true
	m.MessageExpiry = 100
	m.ContentType = "text/plain"
	m.PayloadFormat = 1
	m.ResponseTopic = "resp/t"
	m.CorrelationData = []byte("corr")
	m.UserProperties = append(m.UserProperties, broker.UserProperty{Key: "added", Value: "yes"})
}

// TestInterceptPublishInboundFields: every field an inbound interceptor
// changes reaches subscribers (and the retained message) as changed, from
// MQTT 5 and 3.1.1 publishers.
func TestInterceptPublishInboundFields(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.publish = func(cl broker.Peer, m *broker.Message) broker.Prevented {
			changeAll(m)
			return broker.Prevented{}
		}
	})
	sub := dial5(t, b.addr, "sub")
	sub.subscribe(1, "out/#", 1)

	check := func(p publish5Packet, topic, payload string, retain bool, user string) {
		t.Helper()
		exp := p.props[0x02]
		if p.topic != topic || p.payload != payload || p.retain != retain ||
			fmt.Sprint(p.props[0x01]) != "[1]" || len(exp) != 1 || exp[0].(uint32) > 100 || exp[0].(uint32) < 90 ||
			fmt.Sprint(p.props[0x03]) != "[text/plain]" || fmt.Sprint(p.props[0x08]) != "[resp/t]" ||
			fmt.Sprint(p.props[0x09]) != "[corr]" || fmt.Sprint(p.props[propUserProperty]) != user {
			t.Fatalf("got %+v", p)
		}
	}
	pub := dial5(t, b.addr, "pub")
	pub.send(0x32, publish5("in/5", 1, 7, props(userProp("a", "1")), "hello"))
	if id, code, _ := pub.ackReason(0x40); id != 7 || code != 0 {
		t.Fatalf("PUBACK %d %#x", id, code)
	}
	check(sub.readPublish5(), "out/5", "HELLO", false, "[[a 1] [added yes]]")

	v3 := v3Raw(t, b.addr, "pub3")
	v3.send(0x32, publish3("in/3", 8, 1, "abc"))
	v3.expect("PUBACK", 0x40, []byte{0, 8})
	check(sub.readPublish5(), "out/3", "ABC", false, "[[added yes]]")

	late := dial5(t, b.addr, "late")
	late.subscribe(1, "out/5", 1)
	check(late.readPublish5(), "out/5", "HELLO", true, "[[a 1] [added yes]]")
}

// TestInterceptPublishPrevented: a prevented PUBLISH is not delivered; an
// MQTT 5 publisher gets the reason code and string in its PUBACK or PUBREC
// (0x83 when the interceptor named none); a 3.1.1 publisher gets success
// acknowledgements, a full QoS 2 flow, and stays connected.
func TestInterceptPublishPrevented(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.publish = func(cl broker.Peer, m *broker.Message) broker.Prevented {
			switch m.Topic {
			case "stop/coded":
				return broker.Prevented{Stop: true, ReasonCode: 0x99, ReasonString: "schema", Extension: "test"}
			case "stop/plain":
				return broker.Prevented{Stop: true}
			}
			return broker.Prevented{}
		}
	})
	sub := dial5(t, b.addr, "sub")
	sub.subscribe(1, "#", 2)

	pub := dial5(t, b.addr, "pub")
	pub.send(0x30, publish5("stop/coded", 0, 0, props(), "q0"))
	pub.send(0x33, publish5("stop/coded", 1, 1, props(), "q1")) // retained
	if id, code, reason := pub.ackReason(0x40); id != 1 || code != 0x99 || reason != "schema" {
		t.Fatalf("PUBACK %d %#x %q", id, code, reason)
	}
	pub.send(0x34, publish5("stop/coded", 2, 2, props(), "q2"))
	if id, code, reason := pub.ackReason(0x50); id != 2 || code != 0x99 || reason != "schema" {
		t.Fatalf("PUBREC %d %#x %q", id, code, reason)
	}
	pub.send(0x32, publish5("stop/plain", 1, 3, props(), "q1"))
	if id, code, _ := pub.ackReason(0x40); id != 3 || code != 0x83 {
		t.Fatalf("PUBACK %d %#x, want 0x83", id, code)
	}

	v3 := v3Raw(t, b.addr, "pub3")
	v3.send(0x30, publish3("stop/coded", 0, 0, "q0"))
	v3.send(0x32, publish3("stop/coded", 4, 1, "q1"))
	v3.expect("PUBACK", 0x40, []byte{0, 4})
	v3.send(0x34, publish3("stop/coded", 5, 2, "q2"))
	v3.expect("PUBREC", 0x50, []byte{0, 5})
	v3.send(0x62, []byte{0, 5})
	v3.expect("PUBCOMP", 0x70, []byte{0, 5})
	v3.ping()

	pub.send(0x30, publish5("go/on", 0, 0, props(), "after"))
	if p := sub.readPublish5(); p.topic != "go/on" {
		t.Fatalf("prevented message delivered: %+v", p)
	}
	if _, ok := b.Retained("stop/coded"); ok {
		t.Fatal("prevented message retained")
	}
}

// TestInterceptPublishQoSDown: a QoS lowered by an interceptor keeps the
// publisher's flow of the QoS it sent (PUBACK; PUBREC, PUBREL, PUBCOMP)
// while subscribers get the new QoS, and the publisher stays its origin
// (No Local).
func TestInterceptPublishQoSDown(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.publish = func(cl broker.Peer, m *broker.Message) broker.Prevented {
			switch m.Topic {
			case "down/2to0", "down/1to0":
				m.QoS = 0
			case "down/2to1":
				m.QoS = 1
			}
			return broker.Prevented{}
		}
	})
	sub := dial5(t, b.addr, "sub")
	sub.subscribe(1, "down/#", 2)
	for _, v5 := range []bool{true, false} {
		var pub *conn5
		if v5 {
			pub = dial5(t, b.addr, "pub5")
			if codes := pub.subscribe(1, "down/#", 2|0x04); !bytes.Equal(codes, []byte{2}) { // No Local
				t.Fatalf("SUBACK %x", codes)
			}
		} else {
			pub = v3Raw(t, b.addr, "pub3")
		}
		body := func(topic string, qos byte, id uint16) []byte {
			if v5 {
				return publish5(topic, qos, id, props(), topic)
			}
			return publish3(topic, id, qos, topic)
		}
		ack := func(id uint16) []byte { return []byte{0, byte(id)} }

		pub.send(0x34, body("down/2to0", 2, 1))
		pub.expect("PUBREC", 0x50, ack(1))
		pub.send(0x62, ack(1))
		pub.expect("PUBCOMP", 0x70, ack(1))
		if p := sub.readPublish5(); p.topic != "down/2to0" || p.qos != 0 {
			t.Fatalf("2->0 delivered %+v", p)
		}

		pub.send(0x32, body("down/1to0", 1, 2))
		pub.expect("PUBACK", 0x40, ack(2))
		if p := sub.readPublish5(); p.topic != "down/1to0" || p.qos != 0 {
			t.Fatalf("1->0 delivered %+v", p)
		}

		pub.send(0x34, body("down/2to1", 2, 3))
		pub.expect("PUBREC", 0x50, ack(3))
		pub.send(0x34|0x08, body("down/2to1", 2, 3)) // resent before PUBREL: not delivered again
		pub.expect("PUBREC again", 0x50, ack(3))
		pub.send(0x62, ack(3))
		pub.expect("PUBCOMP", 0x70, ack(3))
		p := sub.readPublish5()
		if p.topic != "down/2to1" || p.qos != 1 {
			t.Fatalf("2->1 delivered %+v", p)
		}
		sub.send(0x40, []byte{byte(p.id >> 8), byte(p.id)})

		other := dial5(t, b.addr, fmt.Sprint("other", v5))
		other.send(0x30, publish5("down/marker", 0, 0, props(), "m"))
		if p := sub.readPublish5(); p.topic != "down/marker" {
			t.Fatalf("delivered twice: %+v", p)
		}
		if v5 {
			// No Local: its own messages never came back; the marker
			// (queued after them) is the first PUBLISH it gets.
			if p := pub.readPublish5(); p.topic != "down/marker" {
				t.Fatalf("publisher got its own message: %+v", p)
			}
		}
	}
}

// TestInterceptRewriteCannotBypassPermissions: a topic rewritten to one the
// publisher may not publish to is refused like the PUBLISH as sent would
// be (MQTT 5: PUBACK 0x87, also when the QoS was lowered; 3.1.1:
// disconnected), and not delivered.
func TestInterceptRewriteCannotBypassPermissions(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{"secret/": {Decision: broker.Deny, ReasonCode: 0x87, ReasonString: "secret"}}}
	b := startIC(t, rules)
	b.ic.set(func(ti *testInterceptors) {
		ti.publish = func(cl broker.Peer, m *broker.Message) broker.Prevented {
			if m.Topic == "open/x" || m.Topic == "open/down" {
				if m.Topic == "open/down" {
					m.QoS = 0
				}
				m.Topic = "secret/x"
			}
			return broker.Prevented{}
		}
	})
	sub := dial5(t, b.addr, "sub")
	sub.subscribe(1, "#", 1)
	pub := dial5(t, b.addr, "pub")
	pub.send(0x32, publish5("open/x", 1, 1, props(), "p"))
	if id, code, reason := pub.ackReason(0x40); id != 1 || code != 0x87 || reason != "secret" {
		t.Fatalf("PUBACK %d %#x %q", id, code, reason)
	}
	pub.send(0x32, publish5("open/down", 1, 2, props(), "p"))
	if id, code, _ := pub.ackReason(0x40); id != 2 || code != 0x87 {
		t.Fatalf("PUBACK %d %#x", id, code)
	}
	v3 := v3Raw(t, b.addr, "pub3")
	v3.send(0x32, publish3("open/x", 3, 1, "p"))
	for _, p := range v3.closed() {
		if p[0]>>4 == 4 {
			t.Fatalf("3.1.1 publisher got a PUBACK % x", p)
		}
	}
	pub.send(0x30, publish5("open/y", 0, 0, props(), "after"))
	if p := sub.readPublish5(); p.topic != "open/y" {
		t.Fatalf("rewritten message delivered: %+v", p)
	}
}

// TestInterceptDelivery: an outbound interceptor changes topic, payload and
// user properties for one subscriber only, is told the publisher, runs for
// resends, and a prevented QoS 1 delivery is finished at once: the
// subscriber (Receive Maximum 1) gets the next message, and nothing is
// resent at its reconnection.
func TestInterceptDelivery(t *testing.T) {
	b := startIC(t, nil)
	var publishers sync.Map
	var toC atomic.Int64
	b.ic.set(func(ti *testInterceptors) {
		ti.delivery = func(cl broker.Peer, publisher string, m *broker.Message) broker.Prevented {
			publishers.Store(publisher, true)
			switch cl.ID {
			case "a":
				m.Topic, m.Payload = "d/for-a", []byte("A")
				m.UserProperties = append(m.UserProperties, broker.UserProperty{Key: "to", Value: "a"})
			case "c":
				toC.Add(1)
				if bytes.HasPrefix(m.Payload, []byte("drop")) {
					return broker.Prevented{Stop: true, Extension: "test"}
				}
				if string(m.Payload) == "resend-me" {
					m.Payload = []byte("changed")
				}
			}
			return broker.Prevented{}
		}
	})
	a, bb := dial5(t, b.addr, "a"), dial5(t, b.addr, "b")
	a.subscribe(1, "d/#", 1)
	bb.subscribe(1, "d/#", 1)
	c, _ := dial5Session(t, b.addr, "c", true, 3600, []byte{propReceiveMaximum, 0, 1})
	c.subscribe(1, "d/#", 1)

	pub := dial5(t, b.addr, "pub")
	pub.send(0x30, publish5("d/1", 0, 0, props(userProp("k", "v")), "x"))
	if p := a.readPublish5(); p.topic != "d/for-a" || p.payload != "A" || fmt.Sprint(p.props[propUserProperty]) != "[[k v] [to a]]" {
		t.Fatalf("a got %+v", p)
	}
	if p := bb.readPublish5(); p.topic != "d/1" || p.payload != "x" || fmt.Sprint(p.props[propUserProperty]) != "[[k v]]" {
		t.Fatalf("b got %+v", p)
	}
	if p := c.readPublish5(); p.payload != "x" {
		t.Fatalf("c got %+v", p)
	}
	if _, ok := publishers.Load("pub"); !ok {
		t.Fatal("interceptor not told the publisher")
	}

	for i, payload := range []string{"drop1", "drop2", "drop3", "keep"} {
		pub.send(0x32, publish5("d/q", 1, uint16(10+i), props(), payload))
		pub.ackReason(0x40)
	}
	p := c.readPublish5()
	if p.payload != "keep" || p.qos != 1 {
		t.Fatalf("c got %+v, want keep", p)
	}
	c.send(0x40, []byte{byte(p.id >> 8), byte(p.id)})
	pub.send(0x32, publish5("d/q", 1, 20, props(), "resend-me"))
	pub.ackReason(0x40)
	if p := c.readPublish5(); p.payload != "changed" {
		t.Fatalf("c got %+v", p)
	}
	calls := toC.Load()
	_ = c.Drop() // "changed" unacknowledged: resent at the reconnection

	poll.Until(t, "c offline", func() bool { info, ok := b.Client("c"); return ok && !info.Connected })
	c, present := dial5Session(t, b.addr, "c", false, 3600)
	if !present {
		t.Fatal("session not resumed")
	}
	if p := c.readPublish5(); p.payload != "changed" || !p.dup {
		t.Fatalf("resend %+v", p)
	}
	c.ping()
	if n := toC.Load(); n != calls+1 {
		t.Fatalf("%d deliveries intercepted at the reconnection, want 1 (prevented ones were finished)", n-calls)
	}
}

// TestInterceptSubscribe: a SUBSCRIBE interceptor changes a filter's QoS
// and options (here No Local), removes one with its reason code (0x80 for
// 3.1.1), and authorization still runs on the filters it left.
func TestInterceptSubscribe(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{"secret/": {Decision: broker.Deny, ReasonCode: 0x87}}}
	b := startIC(t, rules)
	b.ic.set(func(ti *testInterceptors) {
		ti.subscribe = func(cl broker.Peer, s *broker.Subscription) broker.Prevented {
			switch s.Filter {
			case "s/a":
				s.QoS, s.Options.NoLocal = 1, true
			case "s/b":
				return broker.Prevented{Stop: true, ReasonCode: 0xA2, ReasonString: "no b"}
			}
			return broker.Prevented{}
		}
	})
	c := dial5(t, b.addr, "c")
	body := []byte{0, 1, 0}
	for _, f := range []string{"s/a", "s/b", "secret/c"} {
		body = append(str16(body, f), 2)
	}
	c.send(0x82, body)
	typ, ack := c.next()
	p, codes, err := decodeProps(ack[2:])
	if typ != 0x90 || err != nil || !bytes.Equal(codes, []byte{1, 0xA2, 0x87}) || fmt.Sprint(p[propReasonString]) != "[no b]" {
		t.Fatalf("SUBACK %#x % x (%v)", typ, ack, err)
	}
	pub := dial5(t, b.addr, "pub")
	pub.send(0x30, publish5("s/b", 0, 0, props(), "b"))
	pub.send(0x34, publish5("s/a", 2, 1, props(), "a"))
	pub.ackReason(0x50)
	if p := c.readPublish5(); p.topic != "s/a" || p.qos != 1 {
		t.Fatalf("got %+v, want s/a at QoS 1", p)
	}
	c.send(0x30, publish5("s/a", 0, 0, props(), "own")) // No Local
	c.ping()
	pub.send(0x30, publish5("s/a", 0, 0, props(), "marker"))
	if p := c.readPublish5(); p.payload != "marker" {
		t.Fatalf("got %+v, want the marker (No Local)", p)
	}

	v3 := v3Raw(t, b.addr, "v3")
	v3.send(0x82, append(str16([]byte{0, 2}, "s/b"), 1))
	v3.expect("SUBACK", 0x90, []byte{0, 2, 0x80})
}

// TestInterceptDisconnect: the client's DISCONNECT reaches the disconnect
// event as changed; the broker's DISCONNECT to an MQTT 5 client carries the
// interceptor's reason string and user properties.
func TestInterceptDisconnect(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.disconnect = func(cl broker.Peer, d *broker.DisconnectPacket) {
			if d.Outbound {
				d.ReasonString = "server says " + d.ReasonString
			} else {
				d.ReasonString = "client said " + d.ReasonString
			}
			d.UserProperties = append(d.UserProperties, broker.UserProperty{Key: "by", Value: "interceptor"})
		}
	})
	c := dial5(t, b.addr, "leaver")
	c.send(0xE0, append([]byte{0}, props([]byte(append([]byte{propReasonString}, str16(nil, "bye")...)))...))
	poll.Until(t, "disconnect event", func() bool {
		for _, e := range b.rules.Recorded() {
			if e.Kind == broker.EventDisconnect && e.ClientID == "leaver" {
				if e.ReasonString != "client said bye" {
					t.Fatalf("event reason %q", e.ReasonString)
				}
				return true
			}
		}
		return false
	})

	k := dial5(t, b.addr, "kicked")
	go func() { _ = b.Disconnect("kicked", 0x98, "admin", false) }()
	got := k.closed()
	if len(got) != 1 || got[0][0] != 0xE0 || got[0][1] != 0x98 {
		t.Fatalf("got % x, want a DISCONNECT 0x98", got)
	}
	p, _, err := decodeProps(got[0][2:])
	if err != nil || fmt.Sprint(p[propReasonString]) != "[server says admin]" || fmt.Sprint(p[propUserProperty]) != "[[by interceptor]]" {
		t.Fatalf("DISCONNECT properties %v (%v)", p, err)
	}
}

// TestInterceptorsStartLater: clients connected before any interceptor is
// active are intercepted from their next packet on.
func TestInterceptorsStartLater(t *testing.T) {
	b := startIC(t, nil)
	sub := dial5(t, b.addr, "sub")
	sub.subscribe(1, "late/#", 0)
	pub := dial5(t, b.addr, "pub")
	pub.send(0x30, publish5("late/1", 0, 0, props(), "before"))
	if p := sub.readPublish5(); p.payload != "before" {
		t.Fatalf("got %+v", p)
	}
	b.ic.set(func(ti *testInterceptors) {
		ti.publish = func(cl broker.Peer, m *broker.Message) broker.Prevented {
			m.Payload = []byte("inbound")
			return broker.Prevented{}
		}
		ti.delivery = func(cl broker.Peer, _ string, m *broker.Message) broker.Prevented {
			m.Payload = append(m.Payload, "+outbound"...)
			return broker.Prevented{}
		}
	})
	pub.send(0x30, publish5("late/1", 0, 0, props(), "after"))
	if p := sub.readPublish5(); p.payload != "inbound+outbound" {
		t.Fatalf("got %+v", p)
	}
}

// TestInterceptedMessagesSurviveRestart: the retained message and the
// message queued for an offline persistent session are stored as the
// inbound interceptors changed them, and delivered so after a restart
// (without interceptors).
func TestInterceptedMessagesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ic := &testInterceptors{}
	ic.set(func(ti *testInterceptors) {
		ti.publish = func(cl broker.Peer, m *broker.Message) broker.Prevented {
			if m.Topic == "down/q" {
				m.QoS = 1
				return broker.Prevented{}
			}
			changeAll(m)
			return broker.Prevented{}
		}
	})
	rules := &brokertest.Rules{}
	cfg := testConfig(dir)
	s, addr := startServer(t, cfg, broker.Extensions{Authenticator: rules, Interceptors: ic})
	q, _ := dial5Session(t, addr, "q", true, 3600)
	q.subscribe(1, "out/#", 1)
	q.subscribe(2, "down/#", 2)
	q.send(0xE0, []byte{0})
	poll.Until(t, "q offline", func() bool { info, ok := s.Client("q"); return ok && !info.Connected })
	pub := dial5(t, addr, "pub")
	pub.send(0x32, publish5("in/r", 1, 1, props(userProp("a", "1")), "stored"))
	if _, code, _ := pub.ackReason(0x40); code != 0 {
		t.Fatalf("PUBACK %#x", code)
	}
	pub.send(0x34, publish5("down/q", 2, 2, props(), "lowered"))
	pub.expect("PUBREC", 0x50, []byte{0, 2})
	pub.send(0x62, []byte{0, 2})
	pub.expect("PUBCOMP", 0x70, []byte{0, 2})
	snap, err := s.Store().Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pending) != 0 || len(snap.Inflight) != 2 {
		t.Fatalf("stored %d pending, %d queued; want 0 and 2", len(snap.Pending), len(snap.Inflight))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cfg = testConfig(dir)
	_, addr = startServer(t, cfg, broker.Extensions{Authenticator: rules})
	check := func(p publish5Packet, retain bool) {
		t.Helper()
		if p.topic != "out/r" || p.payload != "STORED" || p.retain != retain || fmt.Sprint(p.props[0x03]) != "[text/plain]" ||
			fmt.Sprint(p.props[0x08]) != "[resp/t]" || fmt.Sprint(p.props[0x09]) != "[corr]" ||
			fmt.Sprint(p.props[propUserProperty]) != "[[a 1] [added yes]]" || fmt.Sprint(p.props[0x01]) != "[1]" {
			t.Fatalf("got %+v", p)
		}
	}
	q, present := dial5Session(t, addr, "q", false, 3600)
	if !present {
		t.Fatal("session lost")
	}
	check(q.readPublish5(), false)
	if p := q.readPublish5(); p.topic != "down/q" || p.qos != 1 || p.payload != "lowered" {
		t.Fatalf("got %+v, want down/q at QoS 1", p)
	}
	late := dial5(t, addr, "late")
	late.subscribe(1, "out/#", 1)
	check(late.readPublish5(), true)
}

// TestInterceptDeliveryBurst: deliveries prevented in a burst, which mochi
// writes several to a socket write, leave exactly the others, in order.
func TestInterceptDeliveryBurst(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.delivery = func(cl broker.Peer, _ string, m *broker.Message) broker.Prevented {
			var n int
			if _, err := fmt.Sscanf(string(m.Payload), "%d", &n); err == nil && n%2 == 1 {
				return broker.Prevented{Stop: true}
			}
			return broker.Prevented{}
		}
	})
	sub := dial5(t, b.addr, "sub")
	sub.subscribe(1, "burst", 1)
	pub, err := rawmqtt.Dial(b.addr, "pub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Drop() })
	const n = 600
	for i := range n { // one buffer: the broker reads many at once
		pub.Publish("burst", byte(i/2%2), uint16(i+1), []byte(fmt.Sprint(i)))
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for want := 0; want < n; want += 2 {
		p := sub.readPublish5()
		if p.payload != fmt.Sprint(want) {
			t.Fatalf("got %q, want %d", p.payload, want)
		}
		if p.qos == 1 {
			sub.send(0x40, []byte{byte(p.id >> 8), byte(p.id)})
		}
	}
	sub.ping()
}

// TestInterceptorFailureLeavesPacket: an interceptor that panics, or
// answers a topic that is not a topic name or a raised QoS, leaves the
// PUBLISH as it was; the client stays connected.
func TestInterceptorFailureLeavesPacket(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.publish = func(cl broker.Peer, m *broker.Message) broker.Prevented {
			orig := m.Topic
			m.Payload = []byte("changed")
			switch orig {
			case "fail/panic":
				panic("interceptor bug")
			case "fail/wildcard":
				m.Topic = "fail/+"
			case "fail/qos":
				m.QoS = 2
			}
			return broker.Prevented{}
		}
		ti.delivery = func(cl broker.Peer, _ string, m *broker.Message) broker.Prevented {
			if m.Topic == "fail/panic" {
				m.Topic = "elsewhere"
				panic("interceptor bug")
			}
			return broker.Prevented{}
		}
	})
	sub := dial5(t, b.addr, "sub")
	sub.subscribe(1, "fail/#", 1)
	pub := dial5(t, b.addr, "pub")
	for i, topic := range []string{"fail/panic", "fail/wildcard", "fail/qos"} {
		pub.send(0x32, publish5(topic, 1, uint16(i+1), props(), "orig"))
		if id, code, _ := pub.ackReason(0x40); id != uint16(i+1) || code != 0 {
			t.Fatalf("%s: PUBACK %d %#x", topic, id, code)
		}
		p := sub.readPublish5()
		if p.topic != topic || p.payload != "orig" || p.qos != 1 {
			t.Fatalf("%s: got %+v, want it unchanged", topic, p)
		}
		sub.send(0x40, []byte{byte(p.id >> 8), byte(p.id)})
	}
	pub.ping()
	sub.ping()
}

// TestDisconnectEventWithoutInterceptors: with no interceptor active, a
// client's DISCONNECT reason string does not reach the disconnect event,
// which stays what 1.0 and 1.1 modules always got (ABI.md section 8,
// "Interception").
func TestDisconnectEventWithoutInterceptors(t *testing.T) {
	b := startIC(t, nil)
	c := dial5(t, b.addr, "leaver")
	c.send(0xE0, append([]byte{0}, props([]byte(append([]byte{propReasonString}, str16(nil, "client-controlled text")...)))...))
	poll.Until(t, "disconnect event", func() bool {
		for _, e := range b.rules.Recorded() {
			if e.Kind == broker.EventDisconnect && e.ClientID == "leaver" {
				if e.ReasonString != "" {
					t.Fatalf("no interceptor active, yet the disconnect event has reason %q", e.ReasonString)
				}
				return true
			}
		}
		return false
	})
}

// TestAssignedClientIDFromInterceptor: an MQTT 5 client that sent no
// client id, given one by an interceptor, learns it from the CONNACK's
// Assigned Client Identifier [MQTT-3.2.2-16].
func TestAssignedClientIDFromInterceptor(t *testing.T) {
	b := startIC(t, nil)
	b.ic.set(func(ti *testInterceptors) {
		ti.connect = func(c *broker.Connect) {
			if c.ClientID == "" {
				c.ClientID = "dev-7"
			}
		}
	})
	_, ack := open5(t, b.addr, connect5Body("", 0, 30, props(), nil))
	p, _, err := decodeProps(ack[2:])
	if err != nil {
		t.Fatal(err)
	}
	if got := p[0x12]; len(got) != 1 || got[0] != "dev-7" {
		t.Fatalf("CONNACK % x: Assigned Client Identifier %v, want dev-7", ack, got)
	}
}

// TestDowngradedRetainedStoredBeforeAck: a retained PUBLISH whose QoS an
// interceptor lowered is acknowledged only once its retained copy is in the
// store, as any PUBLISH is: a broker killed right after the publisher got
// its PUBACK or PUBREC still has it at the next start.
func TestDowngradedRetainedStoredBeforeAck(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sent, to  byte
		ack, body byte
	}{
		{"QoS 2 to 1", 2, 1, 0x50, 0},
		{"QoS 1 to 0", 1, 0, 0x40, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ic := &testInterceptors{}
			ic.set(func(ti *testInterceptors) {
				ti.publish = func(_ broker.Peer, m *broker.Message) broker.Prevented {
					m.QoS = tc.to
					return broker.Prevented{}
				}
			})
			s, addr := startServer(t, testConfig(dir), broker.Extensions{Authenticator: &brokertest.Rules{}, Interceptors: ic})
			pub := dial5(t, addr, "pub")
			pub.send(0x31|tc.sent<<1, publish5("r/x", tc.sent, 1, props(), "retained-value")) // retain
			pub.expect("acknowledgement", tc.ack, []byte{0, 1})
			snap, err := s.Store().Load()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range snap.Retained {
				if r.Topic == "r/x" {
					return
				}
			}
			t.Fatalf("acknowledged, but no retained message for r/x in the store (%d retained)", len(snap.Retained))
		})
	}
}
