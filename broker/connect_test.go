package broker_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// connectBody is the body of a CONNECT: protocol name, level, flags,
// keepalive 30 s, an empty property list for level 5, client id, then
// user name and password when their flags (0x80, 0x40) are set.
func connectBody(name string, level, flags byte, id, user, password string) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	b := str(nil, name)
	b = append(b, level, flags, 0, 30)
	if level == 5 {
		b = append(b, 0) // property length
	}
	b = str(b, id)
	if flags&0x80 != 0 {
		b = str(b, user)
	}
	if flags&0x40 != 0 {
		b = str(b, password)
	}
	return b
}

// rawConnack sends a CONNECT body over a fresh connection and returns the
// answer: the CONNACK's first byte and body.
func rawConnack(t *testing.T, addr string, body []byte) (byte, []byte) {
	t.Helper()
	c, err := rawmqtt.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Drop() })
	if err := c.Send(0x10, body); err != nil {
		t.Fatalf("send connect: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	typ, ack, err := c.ReadPacket()
	if err != nil {
		t.Fatalf("read connack: %v", err)
	}
	return typ, append([]byte(nil), ack...)
}

// An empty password with the password flag set is legal in MQTT 3.1.1 and
// 5: the authenticator sees a present, empty password and the client is
// accepted.
func TestEmptyPasswordReachesAuthenticator(t *testing.T) {
	auth := &capture{}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: auth})
	for _, tc := range []struct {
		name  string
		level byte
	}{
		{"3.1.1", 4},
		{"5", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "empty-pw-" + tc.name
			typ, ack := rawConnack(t, addr, connectBody("MQTT", tc.level, 0xC2, id, "user", ""))
			if typ != 0x20 || len(ack) < 2 || ack[1] != 0 {
				t.Fatalf("CONNACK = %#x % x, want accepted (code 0)", typ, ack)
			}
			c := auth.seen()
			if c == nil || c.ClientID != id {
				t.Fatalf("authenticator saw %+v, want client %q", c, id)
			}
			if c.Password == nil || len(c.Password) != 0 || c.Username != "user" || !c.HasUsername {
				t.Fatalf("authenticator saw user %q (has %v) password %#v, want \"user\" and a present empty password",
					c.Username, c.HasUsername, c.Password)
			}
		})
	}
	// Without the flag the password stays absent.
	rawConnack(t, addr, connectBody("MQTT", 4, 0x82, "no-pw", "user", ""))
	if c := auth.seen(); c == nil || c.ClientID != "no-pw" || c.Password != nil {
		t.Fatalf("authenticator saw %+v, want client no-pw without a password", c)
	}
}

// Refusals mochi decides before the authenticator carry codes an MQTT
// 3.1.1 client knows (0x01-0x05), in a 3.1.1 CONNACK (no properties).
func TestV311RefusalCodes(t *testing.T) {
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: &capture{}})
	for _, tc := range []struct {
		name string
		body []byte
		want []byte // the CONNACK body
	}{
		{"3.1.1 empty client id, persistent session", connectBody("MQTT", 4, 0x00, "", "", ""), []byte{0, 0x02}},
		{"unknown protocol level 6", connectBody("MQTT", 6, 0x02, "c6", "", ""), []byte{0, 0x01}},
		{"unknown protocol level 3 for MQTT", connectBody("MQTT", 3, 0x02, "c3", "", ""), []byte{0, 0x01}},
		{"unknown protocol level 4 for MQIsdp", connectBody("MQIsdp", 4, 0x02, "c4", "", ""), []byte{0, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, ack := rawConnack(t, addr, tc.body)
			if typ != 0x20 || !bytes.Equal(ack, tc.want) {
				t.Fatalf("CONNACK = %#x % x, want 0x20 % x", typ, ack, tc.want)
			}
		})
	}
	// An MQTT 5 client whose protocol name does not go with its level gets
	// the MQTT 5 code, unsupported protocol version.
	typ, ack := rawConnack(t, addr, connectBody("MQIsdp", 5, 0x02, "c5", "", ""))
	if typ != 0x20 || len(ack) < 2 || ack[1] != 0x84 {
		t.Fatalf("CONNACK = %#x % x, want reason 0x84", typ, ack)
	}
}
