package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// PUBACK, PUBREC, PUBREL and PUBCOMP carry their own reason code, reason
// string and user properties, never those of the packet they answer. A
// User Property of an acknowledgement is the sender's own "diagnostic or
// other information" (MQTT 5, 3.4.2.2.3 and the same clause of 3.5-3.7),
// and echoing the PUBLISH's could take the acknowledgement past the
// client's Maximum Packet Size, which the server MUST NOT do
// [MQTT-3.4.2-3] [MQTT-3.5.2-3] [MQTT-3.6.2-3] [MQTT-3.7.2-3]. The
// reason code and property length are omitted when the code is 0x00 and
// there are no properties (3.4.2.1), so each success is two bytes: the
// packet id. A refusal keeps its reason string.
func TestAcksCarryOnlyTheirOwnProperties(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{
		"secret/": {Decision: broker.Deny, ReasonCode: 0x87, ReasonString: "no secrets here"},
	}}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules})
	up := props(userProp("trace", "0123456789"))

	sub := dial5(t, addr, "acks-sub")
	sub.send(0x82, subscribe5(1, "q2/#", 2))
	if typ, body := sub.next(); typ != 0x90 || !bytes.Equal(body, []byte{0, 1, 0, 2}) {
		t.Fatalf("SUBACK %#x % x, want 0x90 00 01 00 02", typ, body)
	}

	pub := dial5(t, addr, "acks-pub")
	for _, step := range []struct {
		name       string
		header     byte
		body       []byte
		wantHeader byte
		wantBody   []byte
	}{
		{"PUBACK to a QoS 1 PUBLISH", 0x32, publish5("open/a", 1, 7, up, "x"), 0x40, []byte{0, 7}},
		{"PUBREC to a QoS 2 PUBLISH", 0x34, publish5("q2/b", 2, 8, up, "x"), 0x50, []byte{0, 8}},
		{"PUBCOMP to a PUBREL", 0x62, append([]byte{0, 8, 0}, up...), 0x70, []byte{0, 8}},
		{"PUBACK refusing a QoS 1 PUBLISH", 0x32, publish5("secret/c", 1, 9, up, "x"), 0x40,
			append([]byte{0, 9, 0x87}, props(str16([]byte{propReasonString}, "no secrets here"))...)},
		{"PUBREC refusing a QoS 2 PUBLISH", 0x34, publish5("secret/d", 2, 10, up, "x"), 0x50,
			append([]byte{0, 10, 0x87}, props(str16([]byte{propReasonString}, "no secrets here"))...)},
	} {
		t.Run(step.name, func(t *testing.T) {
			pub.send(step.header, step.body)
			if typ, body := pub.next(); typ != step.wantHeader || !bytes.Equal(body, step.wantBody) {
				t.Fatalf("answer %#x % x, want %#x % x", typ, body, step.wantHeader, step.wantBody)
			}
		})
	}

	// The QoS 2 message reaches the subscriber; its PUBREC (with a user
	// property) is answered by a PUBREL without one.
	t.Run("PUBREL to a PUBREC", func(t *testing.T) {
		typ, body := sub.next()
		if typ&0xf0 != 0x30 || (typ>>1)&3 != 2 {
			t.Fatalf("subscriber got %#x % x, want a QoS 2 PUBLISH", typ, body)
		}
		n := 2 + len("q2/b")
		id := body[n : n+2]
		sub.send(0x50, append(append([]byte(nil), id...), append([]byte{0}, up...)...))
		if typ, body := sub.next(); typ != 0x62 || !bytes.Equal(body, id) {
			t.Fatalf("answer %#x % x, want 0x62 % x", typ, body, id)
		}
		sub.send(0x70, id)
	})
}

// The reason string of an extension refusing a SUBSCRIBE reaches an MQTT 5
// client in the SUBACK ("a human readable string designed for
// diagnostics", MQTT 5, 3.9.2.1.2), as it does in the CONNACK and PUBACK;
// one SUBACK has one reason string, so distinct ones are joined. Neither
// the SUBACK nor the UNSUBACK echoes the client's user properties, which
// are the server's to send (3.9.2.1.3, 3.11.2.1.3), and never beyond the
// client's Maximum Packet Size [MQTT-3.9.2-2] [MQTT-3.11.2-2].
func TestSubackCarriesTheRefusalReason(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{
		"secret/": {Decision: broker.Deny, ReasonCode: 0x87, ReasonString: "secret topics are off limits"},
		"paid/":   {Decision: broker.Deny, ReasonCode: 0x97, ReasonString: "subscription quota used up"},
	}}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules})
	c := dial5(t, addr, "suback-reason")
	up := props(userProp("trace", "0123456789"))

	sub := append([]byte{0, 1}, up...)
	for _, f := range []string{"open/#", "secret/#", "paid/#", "secret/x"} {
		sub = append(str16(sub, f), 1)
	}
	c.send(0x82, sub)
	typ, body := c.next()
	want := append([]byte{0, 1}, props(str16([]byte{propReasonString}, "secret topics are off limits; subscription quota used up"))...)
	want = append(want, 1, 0x87, 0x97, 0x87)
	if typ != 0x90 || !bytes.Equal(body, want) {
		t.Fatalf("SUBACK %#x % x, want 0x90 % x", typ, body, want)
	}

	// A SUBACK without refusals carries no reason string.
	c.send(0x82, append(str16(append([]byte{0, 2}, up...), "open/more"), 1))
	if typ, body := c.next(); typ != 0x90 || !bytes.Equal(body, []byte{0, 2, 0, 1}) {
		t.Fatalf("SUBACK %#x % x, want 0x90 00 02 00 01", typ, body)
	}

	c.send(0xa2, str16(append([]byte{0, 3}, up...), "open/#"))
	if typ, body := c.next(); typ != 0xb0 || !bytes.Equal(body, []byte{0, 3, 0, 0}) {
		t.Fatalf("UNSUBACK %#x % x, want 0xb0 00 03 00 00", typ, body)
	}
}

// A client may have at most the broker's Receive Maximum QoS 1 and 2
// PUBLISH packets unanswered by a PUBACK or PUBCOMP [MQTT-3.3.4-7]; one
// more and "the Server uses a DISCONNECT packet with Reason Code 0x93
// (Receive Maximum exceeded)" (MQTT 5, 3.3.4; 4.9 Flow Control). QoS 1
// flows end with the PUBACK, so the test holds QoS 2 flows open by
// withholding the PUBRELs. The quota limits QoS 1 and 2 only: QoS 0
// publishes go on while it is used up (3.2.2.3.3: it "does not provide a
// mechanism to limit the QoS 0 publications"), and neither does the
// client's PUBREC for a QoS 2 message the broker sent it count against it
// (that flow is the other direction's, limited by the client's own
// Receive Maximum [MQTT-3.3.4-9]).
func TestReceiveMaximumExceededDisconnects(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MQTT.ReceiveMaximum = 2
	_, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	c, ack := open5(t, addr, connect5Body("recv-max", 0, 30, props(), nil))
	p, _, err := decodeProps(ack[2:])
	if err != nil || len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK % x (%v), want accepted", ack, err)
	}
	if got := p[propReceiveMaximum]; len(got) != 1 || got[0] != uint32(2) {
		t.Fatalf("CONNACK Receive Maximum %v, want 2", got)
	}

	// The client receives two QoS 2 messages and answers them with PUBRECs
	// only, leaving the broker's flows open.
	c.send(0x82, subscribe5(1, "to-me", 2))
	if typ, body := c.next(); typ != 0x90 || !bytes.Equal(body, []byte{0, 1, 0, 2}) {
		t.Fatalf("SUBACK %#x % x", typ, body)
	}
	other := dial5(t, addr, "recv-max-publisher")
	for i := uint16(1); i <= 2; i++ {
		other.send(0x34, publish5("to-me", 2, i, props(), "x"))
		if typ, _ := other.next(); typ != 0x50 {
			t.Fatalf("publisher got %#x, want PUBREC", typ)
		}
		other.send(0x62, []byte{0, byte(i)})
		if typ, _ := other.next(); typ != 0x70 {
			t.Fatalf("publisher got %#x, want PUBCOMP", typ)
		}
		typ, body := c.next()
		if typ&0xf0 != 0x30 {
			t.Fatalf("got %#x % x, want the QoS 2 PUBLISH", typ, body)
		}
		n := 2 + len("to-me")
		c.send(0x50, body[n:n+2])
		if typ, _ := c.next(); typ != 0x62 {
			t.Fatalf("got %#x, want PUBREL", typ)
		}
	}

	step := func(what string, header byte, body []byte, want byte) {
		t.Helper()
		c.send(header, body)
		if typ, got := c.next(); typ != want {
			t.Fatalf("%s: answer %#x % x, want %#x", what, typ, got, want)
		}
	}
	step("QoS 2 publish 1", 0x34, publish5("a", 2, 1, props(), "x"), 0x50)
	step("QoS 2 publish 2", 0x34, publish5("a", 2, 2, props(), "x"), 0x50)
	c.send(0x30, publish5("a", 0, 0, props(), "qos 0 is not limited"))
	step("PINGREQ after a QoS 0 publish at the limit", 0xc0, nil, 0xd0)
	step("PUBREL 1", 0x62, []byte{0, 1}, 0x70)
	step("QoS 2 publish 3, in the freed slot", 0x34, publish5("a", 2, 3, props(), "x"), 0x50)

	c.send(0x32, publish5("a", 1, 4, props(), "one too many"))
	got := c.closed()
	if len(got) != 1 || got[0][0] != 0xe0 || got[0][1] != 0x93 {
		t.Fatalf("before the connection ended: % x, want one DISCONNECT 0x93", got)
	}
}

// A client resending the PUBLISH of a QoS 2 flow still open (DUP set, no
// PUBREL sent yet) gets a PUBREC with a success code again: "Until it has
// received the corresponding PUBREL packet, the receiver MUST acknowledge
// any subsequent PUBLISH packet with the same Packet Identifier by sending
// a PUBREC" [MQTT-4.3.3-10]; mochi answered 0x91 (packet identifier in
// use), telling the client a delivered message had failed. The resend is
// not delivered again, and the flow stays open: it still counts against
// the Receive Maximum, so resending cannot open more flows than that.
func TestResentQoS2PublishIsAcknowledgedOnce(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MQTT.ReceiveMaximum = 2
	_, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	watcher := dial5(t, addr, "resend-watcher")
	watcher.send(0x82, subscribe5(1, "resend/#", 0))
	if typ, _ := watcher.next(); typ != 0x90 {
		t.Fatalf("watcher got %#x, want SUBACK", typ)
	}
	c := dial5(t, addr, "resender")

	// pubrec sends header and body and fails unless the answer is a
	// PUBREC for id with a success code and no properties.
	pubrec := func(what string, header byte, id uint16, payload string) {
		t.Helper()
		c.send(header, publish5("resend/a", 2, id, props(), payload))
		typ, body := c.next()
		if typ != 0x50 || len(body) < 2 || body[0] != byte(id>>8) || body[1] != byte(id) ||
			len(body) > 2 && (body[2] != 0 || len(body) > 3 && body[3] != 0) {
			t.Fatalf("%s: answer %#x % x, want PUBREC %d with success and no reason string", what, typ, body, id)
		}
	}
	pubrec("publish 1", 0x34, 1, "one")
	pubrec("resend 1", 0x3c, 1, "one")
	pubrec("resend 1 again", 0x3c, 1, "one")
	c.send(0x62, []byte{0, 1})
	if typ, body := c.next(); typ != 0x70 || body[0] != 0 || body[1] != 1 {
		t.Fatalf("answer to PUBREL 1: %#x % x, want PUBCOMP 1", typ, body)
	}
	pubrec("publish 2", 0x34, 2, "two")
	pubrec("resend 2", 0x3c, 2, "two")
	pubrec("publish 3", 0x34, 3, "three")
	pubrec("resend 3", 0x3c, 3, "three")
	c.send(0x30, publish5("resend/end", 0, 0, props(), "end"))

	// Each message reached the watcher once, then the marker.
	for _, want := range []string{"one", "two", "three", "end"} {
		typ, body := watcher.next()
		_, _, rest := rawmqtt.ParsePublish(typ, body)
		_, payload, err := decodeProps(rest)
		if typ&0xf0 != 0x30 || err != nil || string(payload) != want {
			t.Fatalf("watcher got %#x %q (%v), want %q: each message once", typ, payload, err, want)
		}
	}

	// Flows 2 and 3 are still open: a new one is one too many.
	c.send(0x34, publish5("resend/a", 2, 4, props(), "four"))
	got := c.closed()
	if len(got) != 1 || got[0][0] != 0xe0 || got[0][1] != 0x93 {
		t.Fatalf("before the connection ended: % x, want one DISCONNECT 0x93", got)
	}
}

// A will with an empty payload is legal: the Will Payload field MUST be
// present when the Will Flag is set [MQTT-3.1.2-9], and is Binary Data,
// which may be zero bytes long (MQTT 5, 3.1.3.4 and 1.5.6; MQTT 3.1.1,
// 3.1.3.4 "a two byte length followed by the payload"). Such a CONNECT is
// accepted, the authenticator sees the empty payload, and the will is
// published, empty, when the connection is lost [MQTT-3.1.2-8].
func TestEmptyWillPayloadIsAcceptedAndPublished(t *testing.T) {
	auth := &capture{}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: auth})
	watcher := dial5(t, addr, "will-watcher")
	watcher.send(0x82, subscribe5(1, "wills/#", 0))
	if typ, _ := watcher.next(); typ != 0x90 {
		t.Fatalf("watcher got %#x, want SUBACK", typ)
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"311", append(str16(str16(append(str16(nil, "MQTT"), 4, 0x06, 0, 30), "will-311"), "wills/311"), 0, 0)},
		{"5", connect5Body("will-5", 0x04, 30, props(), append(str16(props(), "wills/5"), 0, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ack := open5(t, addr, tc.body)
			if len(ack) < 2 || ack[1] != 0 {
				t.Fatalf("CONNACK % x, want accepted", ack)
			}
			seen := auth.seen()
			if seen == nil || seen.Will == nil || seen.Will.Payload == nil || len(seen.Will.Payload) != 0 {
				t.Fatalf("authenticator saw %+v, want a will with an empty payload", seen)
			}
			_ = c.Drop()
			typ, body := watcher.next()
			topic, _, rest := rawmqtt.ParsePublish(typ, body) // QoS 0: no packet id
			_, payload, err := decodeProps(rest)
			if typ&0xf0 != 0x30 || string(topic) != "wills/"+tc.name || err != nil || len(payload) != 0 {
				t.Fatalf("watcher got %#x topic %q payload % x (%v), want the will on wills/%s, empty", typ, topic, payload, err, tc.name)
			}
		})
	}
}

// $SYS/broker/version names Propolis and the version it was given
// (Options.Version, from `propolis serve`), not mochi's; it is retained,
// so a subscriber gets it at once.
func TestSysVersionIsPropolis(t *testing.T) {
	s, err := broker.New(broker.Options{Config: testConfig(t.TempDir()), Version: "1.2.3-test",
		Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial5(t, s.Addr("tcp"), "sys-reader")
	c.send(0x82, subscribe5(1, "$SYS/broker/version", 0))
	if typ, _ := c.next(); typ != 0x90 {
		t.Fatalf("got %#x, want SUBACK", typ)
	}
	typ, body := c.next()
	topic, _, rest := rawmqtt.ParsePublish(typ, body)
	_, payload, err := decodeProps(rest)
	if typ&0xf0 != 0x30 || string(topic) != "$SYS/broker/version" || err != nil || string(payload) != "propolis 1.2.3-test" {
		t.Fatalf("got %#x %q %q (%v), want $SYS/broker/version \"propolis 1.2.3-test\"", typ, topic, payload, err)
	}
}

// mqtt.max_keepalive caps the keepalive: a client asking for more, or for
// none (0), is given the maximum. An MQTT 5 client is told in the
// CONNACK's Server Keep Alive, which it MUST then use [MQTT-3.2.2-21]; the
// property is absent when the client's own keepalive stands. An MQTT 3.1.1
// client cannot be told and is held to the maximum all the same (3.1.1,
// 3.1.2.10: the server may disconnect an inactive client "at any time,
// regardless of the Keep Alive value provided by that Client"). Each is
// disconnected after one and a half times its keepalive without a packet
// [MQTT-3.1.2-22] (3.1.1: [MQTT-3.1.2-24]); here 1 s, so within 1.5 s.
func TestMaxKeepalive(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MQTT.MaxKeepalive = config.Duration(time.Second)
	_, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	for _, tc := range []struct {
		name  string
		level byte
		asked uint16
		want  []any // Server Keep Alive in the CONNACK; nil: absent
	}{
		{"5 asks for none", 5, 0, []any{uint32(1)}},
		{"5 asks for more", 5, 600, []any{uint32(1)}},
		{"5 asks for the maximum", 5, 1, nil},
		{"3.1.1 asks for none", 4, 0, nil},
		{"3.1.1 asks for more", 4, 600, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := strings.ReplaceAll(tc.name, " ", "-")
			body := connect5Body(id, 0, tc.asked, props(), nil)
			if tc.level == 4 {
				body = str16(append(str16(nil, "MQTT"), 4, 0x02, byte(tc.asked>>8), byte(tc.asked)), id)
			}
			c, ack := open5(t, addr, body)
			if len(ack) < 2 || ack[1] != 0 {
				t.Fatalf("CONNACK % x, want accepted", ack)
			}
			if tc.level == 5 {
				p, _, err := decodeProps(ack[2:])
				if err != nil {
					t.Fatal(err)
				}
				if got := p[propServerKeepAlive]; !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("Server Keep Alive %v, want %v", got, tc.want)
				}
			} else if len(ack) != 2 {
				t.Fatalf("3.1.1 CONNACK % x, want two bytes", ack)
			}
			c.closed() // silent: disconnected after 1.5 s
		})
	}
}

// keepaliveAuth allows every client and sets its keepalive.
type keepaliveAuth struct {
	brokertest.AllowAll
	keepalive uint16
}

func (a keepaliveAuth) Authenticate(ctx context.Context, c *broker.Connect) broker.AuthResult {
	r := a.AllowAll.Authenticate(ctx, c)
	r.Settings.Keepalive = &a.keepalive
	return r
}

// A keepalive an authenticator sets (ClientSettings.Keepalive) is capped
// at mqtt.max_keepalive like the client's own, 0 included, and told to
// the MQTT 5 client [MQTT-3.2.2-21].
func TestExtensionKeepaliveIsCapped(t *testing.T) {
	for _, set := range []uint16{0, 600, 30} {
		t.Run(fmt.Sprint(set), func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.MQTT.MaxKeepalive = config.Duration(60 * time.Second)
			_, addr := startServer(t, cfg, broker.Extensions{Authenticator: keepaliveAuth{keepalive: set}})
			_, ack := open5(t, addr, connect5Body("ext-keepalive", 0, 10, props(), nil))
			p, _, err := decodeProps(ack[2:])
			if err != nil || ack[1] != 0 {
				t.Fatalf("CONNACK % x (%v), want accepted", ack, err)
			}
			want := uint32(min(set, 60))
			if set == 0 {
				want = 60
			}
			if got := p[propServerKeepAlive]; !reflect.DeepEqual(got, []any{want}) {
				t.Fatalf("Server Keep Alive %v, want %d", got, want)
			}
		})
	}
}
