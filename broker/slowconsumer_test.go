package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
	"github.com/propolis-mqtt/propolis/internal/testpki"
)

// slowConfig is testConfig for the slow-consumer tests: no fsync (the tests
// publish thousands of messages) and room for every QoS 1 copy a stuck
// subscriber is owed.
func slowConfig(t *testing.T, writeTimeout time.Duration, maxBuffer config.ByteSize) *config.Config {
	cfg := testConfig(t.TempDir())
	cfg.Durability.Mode = "none"
	cfg.MQTT.MaxQueuedMessages = 65535
	cfg.MQTT.WriteTimeout = config.Duration(writeTimeout)
	cfg.MQTT.MaxOutboundBuffer = maxBuffer
	return cfg
}

// dialStuck connects an MQTT 3.1.1 client with keepalive 0 and a small
// socket receive buffer, subscribes it to t/# at QoS 1, and returns its
// connection, which the test never reads again: the subscriber of the
// issue's reproduction. clean chooses a clean or persistent session.
func dialStuck(t *testing.T, addr, id string, clean bool) net.Conn {
	t.Helper()
	c := dialSmall(t, addr)
	subscribeStuck(t, c, id, clean)
	return c
}

// dialSmall dials addr with a 4 KiB socket receive buffer and closes the
// connection when the test ends.
func dialSmall(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatalf("set receive buffer: %v", err)
	}
	return c
}

// subscribeStuck sends CONNECT (keepalive 0) and SUBSCRIBE t/# QoS 1 on c
// and reads their acknowledgements; after it, c is never read.
func subscribeStuck(t *testing.T, c io.ReadWriter, id string, clean bool) {
	t.Helper()
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	connect := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 0, 0, byte(len(id))}
	connect = append(connect, id...)
	subscribe := []byte{0x82, 8, 0, 1, 0, 3, 't', '/', '#', 1}
	ack := make([]byte, 5)
	if _, err := c.Write(connect); err != nil {
		t.Fatalf("send CONNECT: %v", err)
	}
	if _, err := io.ReadFull(c, ack[:4]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK: % x, %v", ack[:4], err)
	}
	if _, err := c.Write(subscribe); err != nil {
		t.Fatalf("send SUBSCRIBE: %v", err)
	}
	if _, err := io.ReadFull(c, ack); err != nil || !bytes.Equal(ack, []byte{0x90, 3, 0, 1, 1}) {
		t.Fatalf("SUBACK: % x, %v", ack, err)
	}
}

// wsStream is a client's MQTT byte stream over a WebSocket: each Write
// one binary message, reads across messages.
type wsStream struct {
	ws *websocket.Conn
	r  io.Reader
}

func (w *wsStream) Write(p []byte) (int, error) {
	return len(p), w.ws.WriteMessage(websocket.BinaryMessage, p)
}

func (w *wsStream) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			_, r, err := w.ws.NextReader()
			if err != nil {
				return 0, err
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if errors.Is(err, io.EOF) {
			w.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// dialRaw connects a raw client and closes it when the test ends.
func dialRaw(t *testing.T, addr, id string) *rawmqtt.Conn {
	t.Helper()
	c, err := rawmqtt.Dial(addr, id)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// expect reads packets until one whose first byte is typ and, for a PUBACK,
// whose packet id is id; it fails the test after poll.Timeout.
func expect(t *testing.T, c *rawmqtt.Conn, what string, typ byte, id uint16) {
	t.Helper()
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: send: %v", what, err)
	}
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	for {
		got, body, err := c.ReadPacket()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got == typ && (typ != 0x40 || len(body) >= 2 && uint16(body[0])<<8|uint16(body[1]) == id) {
			return
		}
	}
}

// payload is a 1 KiB message body starting with its sequence number.
func payload(seq int) []byte {
	p := bytes.Repeat([]byte{'.'}, 1024)
	copy(p, fmt.Sprintf("%08d", seq))
	return p
}

// TestSlowConsumerDoesNotStallPublishers is the reproduction: S
// subscribes to t/# at QoS 1 and never reads. A publishes 8 MiB to t/x, far
// beyond what S's socket buffers hold (the broker used to stop answering
// A after about 2.7 MiB), QoS 0 and 1 mixed, each QoS 1 message waiting for
// its PUBACK. The write timeout is an hour, so it is not a deadline that
// keeps A going; S stays connected throughout. Then B publishes once and
// pings, and gets both answers.
func TestSlowConsumerDoesNotStallPublishers(t *testing.T) {
	s, addr := startServer(t, slowConfig(t, time.Hour, 64<<20), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	dialStuck(t, addr, "s", true)
	a := dialRaw(t, addr, "a")

	const pairs = 4096 // QoS 0 + QoS 1, 1 KiB each: 8 MiB towards S
	for i := range pairs {
		id := uint16(i%65535 + 1)
		a.Publish("t/x", 0, 0, payload(2*i))
		a.Publish("t/x", 1, id, payload(2*i+1))
		expect(t, a, fmt.Sprintf("PUBACK %d of %d for A", i+1, pairs), 0x40, id)
	}

	b := dialRaw(t, addr, "b")
	b.Publish("t/x", 1, 7, payload(0))
	expect(t, b, "PUBACK for B", 0x40, 7)
	b.Pingreq()
	expect(t, b, "PINGRESP for B", 0xd0, 0)

	// mochi sends the PUBACK before it delivers the message.
	poll.Until(t, "every QoS 1 message unacknowledged in S's session", func() bool {
		info, _ := s.Client("s")
		return info.Queued == pairs+1
	})
	if info, _ := s.Client("s"); !info.Connected {
		t.Errorf("S disconnected, want it connected (stuck)")
	}
	if n := s.Counters().SlowConsumerDisconnects; n != 0 {
		t.Errorf("SlowConsumerDisconnects = %d, want 0", n)
	}
}

// TestSlowConsumerDisconnectedKeepsSession: with a short write timeout (5 s:
// the reconnected subscriber must never pause that long while it reads), a
// persistent subscriber that stops reading is disconnected (counted as a
// slow consumer) while A goes on publishing; its session keeps every QoS 1
// message, including those published while it is offline, and delivers
// them when it reconnects and reads.
func TestSlowConsumerDisconnectedKeepsSession(t *testing.T) {
	rules := &brokertest.Rules{}
	s, addr := startServer(t, slowConfig(t, 5*time.Second, 1<<30), broker.Extensions{Authenticator: rules, Events: rules})
	stuck := dialStuck(t, addr, "stuck", false)
	a := dialRaw(t, addr, "a")

	sent := 0
	publish := func() {
		id := uint16(sent%65535 + 1)
		a.Publish("t/x", 1, id, payload(sent))
		expect(t, a, fmt.Sprintf("PUBACK for message %d", sent), 0x40, id)
		sent++
	}
	// 20 MiB: far more than the socket buffers between the broker and the
	// stuck subscriber hold, so a write to it blocks. It is found slow
	// mqtt.write_timeout after that, which a fast machine may not reach
	// while publishing: then the test waits for it.
	for sent < 20000 && s.Counters().SlowConsumerDisconnects == 0 {
		publish()
	}
	poll.Until(t, "stuck subscriber counted as a slow consumer", func() bool {
		return s.Counters().SlowConsumerDisconnects > 0
	})
	poll.Until(t, "stuck subscriber offline", func() bool {
		info, ok := s.Client("stuck")
		return ok && !info.Connected
	})
	var gone broker.Event
	poll.Until(t, "disconnect event of the stuck subscriber", func() bool {
		for _, e := range rules.Recorded() {
			if e.Kind == broker.EventDisconnect && e.ClientID == "stuck" {
				gone = e
				return true
			}
		}
		return false
	})
	if gone.Disconnect != broker.DisconnectLost || !strings.HasPrefix(gone.ReasonString, "slow consumer: ") {
		t.Errorf("disconnect event: %v %q, want lost, \"slow consumer: ...\"", gone.Disconnect, gone.ReasonString)
	}
	for range 10 { // queued while offline
		publish()
	}
	// mochi sends the PUBACK before it delivers the message.
	poll.Until(t, "every message in the offline session", func() bool {
		info, _ := s.Client("stuck")
		return info.Queued == sent
	})
	_ = stuck.Close()

	c, present, err := rawmqtt.DialSession(addr, "stuck")
	if err != nil || !present {
		t.Fatalf("reconnect: present %v, %v", present, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	seen := make([]bool, sent)
	missing := sent
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	for missing > 0 {
		typ, body, err := c.ReadPacket()
		if err != nil {
			var first []int
			for i, ok := range seen {
				if !ok && len(first) < 5 {
					first = append(first, i)
				}
			}
			t.Fatalf("reading the queue, %d of %d messages missing (first %v): %v", missing, sent, first, err)
		}
		if typ&0xf0 != 0x30 {
			continue
		}
		_, id, p := rawmqtt.ParsePublish(typ, body)
		var seq int
		if _, err := fmt.Sscanf(string(p[:8]), "%08d", &seq); err != nil || seq >= sent {
			t.Fatalf("unexpected payload %q", p[:8])
		}
		if !seen[seq] {
			seen[seq] = true
			missing--
		}
		c.Puback(id)
		if c.Buffered() == 0 {
			_ = c.Flush()
		}
	}
	if n := s.Counters().SlowConsumerDisconnects; n != 1 {
		t.Errorf("SlowConsumerDisconnects = %d, want 1", n)
	}
}

// TestSlowConsumerOverTLSAndWebSocket: stuck subscribers on a tls and a
// websocket listener are disconnected by the write timeout while a tcp
// publisher keeps getting its PUBACKs.
func TestSlowConsumerOverTLSAndWebSocket(t *testing.T) {
	pki := testpki.New(t)
	cfg := slowConfig(t, 200*time.Millisecond, 1<<30)
	cfg.Listeners = []config.Listener{
		{Name: "tcp", Type: "tcp", Address: "127.0.0.1:0"},
		{Name: "secure", Type: "tls", Address: "127.0.0.1:0", TLS: &config.TLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey}},
		{Name: "web", Type: "websocket", Address: "127.0.0.1:0", Path: "/mqtt"},
	}
	s, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})

	tc := tls.Client(dialSmall(t, s.Addr("secure")), &tls.Config{RootCAs: pki.CAPool, ServerName: "127.0.0.1"})
	_ = tc.SetDeadline(time.Now().Add(poll.Timeout))
	subscribeStuck(t, tc, "stuck-tls", true)

	d := websocket.Dialer{
		Subprotocols:     []string{"mqtt"},
		HandshakeTimeout: poll.Timeout,
		NetDialContext:   func(context.Context, string, string) (net.Conn, error) { return dialSmall(t, s.Addr("web")), nil },
	}
	ws, _, err := d.Dial("ws://"+s.Addr("web")+"/mqtt", nil)
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(poll.Timeout))
	subscribeStuck(t, &wsStream{ws: ws}, "stuck-ws", true)

	a := dialRaw(t, addr, "a")
	for sent := 0; s.Counters().SlowConsumerDisconnects < 2; sent++ {
		if sent == 60000 {
			tlsInfo, _ := s.Client("stuck-tls")
			wsInfo, _ := s.Client("stuck-ws")
			t.Fatalf("%d slow consumers disconnected after %d messages, want 2 (connected: tls %v, websocket %v)",
				s.Counters().SlowConsumerDisconnects, sent, tlsInfo.Connected, wsInfo.Connected)
		}
		id := uint16(sent%65535 + 1)
		a.Publish("t/x", 1, id, payload(sent))
		expect(t, a, fmt.Sprintf("PUBACK for message %d", sent), 0x40, id)
	}
	for _, id := range []string{"stuck-tls", "stuck-ws"} {
		poll.Until(t, id+" disconnected", func() bool {
			info, ok := s.Client(id)
			return !ok || !info.Connected
		})
	}
}
