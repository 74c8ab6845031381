package broker_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// connectSmall connects an MQTT 5 client with a Maximum Packet Size of
// 200 and a Session Expiry of 3600 s (clean start when clean) and returns
// it with its CONNACK's reason code and session-present flag.
func connectSmall(t *testing.T, addr, id string, clean bool) (*rawmqtt.Conn, byte, bool) {
	t.Helper()
	c, err := rawmqtt.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Drop() })
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, flags, 0, 0,
		10, 0x11, 0, 0, 0x0E, 0x10, 0x27, 0, 0, 0, 200,
		0, byte(len(id))}
	if err := c.Send(0x10, append(body, id...)); err != nil {
		t.Fatal(err)
	}
	h, ack, err := c.ReadPacket()
	if err != nil || h != 0x20 || len(ack) < 2 {
		t.Fatalf("%s: CONNACK %#x % x, %v", id, h, ack, err)
	}
	return c, ack[1], ack[0]&1 == 1
}

// TestResendOfTooLargeMessage: a persistent MQTT 5 session with a Maximum
// Packet Size of 200 gets a 500-byte QoS 1 message while offline. Its
// reconnections are counted as accepted and, if they end, as disconnects
// (accepted - disconnects = connected), the message counts as too large
// once, not at every resend, and the server discards it as MQTT-3.1.2-25
// says, so that the client can resume its session.
func TestResendOfTooLargeMessage(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Durability.Mode = "none"
	s, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})

	c, code, _ := connectSmall(t, addr, "small", true)
	if code != 0 {
		t.Fatalf("first CONNECT refused: %#x", code)
	}
	if err := c.Send(0x82, []byte{0, 1, 0, 0, 5, 'b', 'i', 'g', '/', '#', 1}); err != nil {
		t.Fatal(err)
	}
	if h, _, err := c.ReadPacket(); err != nil || h != 0x90 {
		t.Fatalf("SUBACK: %#x, %v", h, err)
	}
	_ = c.Drop()
	poll.Until(t, "small's connection ended", func() bool { return s.Levels().ClientsConnected == 0 })

	pub := dialRaw(t, addr, "pub")
	pub.Publish("big/x", 1, 1, bytes.Repeat([]byte{'x'}, 500))
	expect(t, pub, "PUBACK", 0x40, 1)
	poll.Until(t, "the message queued in small's session", func() bool { return s.Levels().QueuedMessages == 1 })

	for i := range 2 {
		c, code, present := connectSmall(t, addr, "small", false)
		if code != 0 || !present {
			t.Fatalf("reconnection %d: code %#x, session present %v", i, code, present)
		}
		// The client resumes: a PINGREQ is answered.
		if err := c.Send(0xC0, nil); err != nil {
			t.Fatal(err)
		}
		for {
			h, _, err := c.ReadPacket()
			if err != nil {
				t.Fatalf("reconnection %d ended before PINGRESP: %v", i, err)
			}
			if h == 0xD0 {
				break
			}
			if h&0xF0 == 0x30 {
				t.Fatalf("reconnection %d: got the PUBLISH above its Maximum Packet Size", i)
			}
		}
		_ = c.Drop()
		poll.Until(t, "small offline", func() bool { info, ok := s.Client("small"); return ok && !info.Connected })
	}
	poll.Until(t, "accepted - disconnects = connected", func() bool {
		ct := s.Counters()
		d := ct.Disconnects
		return int64(ct.ConnectsAccepted-d.Client-d.Lost-d.Server-d.TakenOver) == s.Levels().ClientsConnected
	})
	if n := s.Counters().Dropped.TooLarge; n != 1 {
		t.Errorf("Dropped.TooLarge = %d, want 1", n)
	}
	if q := s.Levels().QueuedMessages; q != 0 {
		t.Errorf("QueuedMessages = %d, want 0 (the too-large message discarded)", q)
	}
}
