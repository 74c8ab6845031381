package broker_test

import (
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestKeepaliveTimeoutOverWebSocket: a client on a websocket listener
// that goes silent past 1.5 times its keepalive of 1 s is counted as a
// keepalive timeout, as on tcp (gorilla/websocket wraps the read
// deadline's error in one of its own).
func TestKeepaliveTimeoutOverWebSocket(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Durability.Mode = "none"
	cfg.Listeners = []config.Listener{
		{Name: "tcp", Type: "tcp", Address: "127.0.0.1:0"},
		{Name: "web", Type: "websocket", Address: "127.0.0.1:0", Path: "/mqtt"},
	}
	s, _ := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})

	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: poll.Timeout}
	ws, _, err := d.Dial("ws://"+s.Addr("web")+"/mqtt", nil)
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(poll.Timeout))
	c := &wsStream{ws: ws}
	id := "silent-ws"
	connect := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 1, 0, byte(len(id))}
	if _, err := c.Write(append(connect, id...)); err != nil {
		t.Fatalf("send CONNECT: %v", err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK: % x, %v", ack, err)
	}
	poll.Until(t, "a keepalive timeout counted", func() bool { return s.Counters().KeepaliveTimeouts == 1 })
	if got := s.Counters().Disconnects; got.Lost != 1 || got.Server != 0 {
		t.Errorf("Disconnects = %+v, want 1 lost", got)
	}
}

// TestMalformedPacketIsServerDisconnect pins what Counters documents: a
// malformed packet after the CONNACK ends the connection as the server's
// disconnect (mochi answers it with a reason code), not a lost one.
func TestMalformedPacketIsServerDisconnect(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Durability.Mode = "none"
	s, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})

	c := dialSmall(t, addr)
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	id := "garbled"
	connect := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, byte(len(id))}
	if _, err := c.Write(append(connect, id...)); err != nil {
		t.Fatalf("send CONNECT: %v", err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK: % x, %v", ack, err)
	}
	// A SUBSCRIBE with flags 0000 (they must be 0010) and no payload.
	if _, err := c.Write([]byte{0x80, 0}); err != nil {
		t.Fatalf("send malformed SUBSCRIBE: %v", err)
	}
	poll.Until(t, "the disconnect counted", func() bool {
		d := s.Counters().Disconnects
		return d.Client+d.Lost+d.Server+d.TakenOver == 1
	})
	if d := s.Counters().Disconnects; d.Server != 1 {
		t.Errorf("Disconnects = %+v, want 1 server", d)
	}
}
