package brokertest

import (
	"context"
	"net"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// DialV5 opens a TCP connection to addr and wraps it in a paho MQTT 5
// client made from cfg (cfg.Conn is set to the connection). It sends no
// CONNECT: the test does, with the packet it needs. The connection is
// closed when the test ends; a failed dial fails the test, naming addr.
func DialV5(t testing.TB, addr string, cfg paho.ClientConfig) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	cfg.Conn = conn
	c := paho.NewClient(cfg)
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

// OpCtx is a context for one client operation (connect, publish,
// subscribe ...): it ends after poll.Timeout, or when the test ends.
func OpCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	t.Cleanup(cancel)
	return c
}

// WaitToken fails the test, naming what, if the paho MQTT 3.1.1 token
// tok does not complete within poll.Timeout or completes with an error.
func WaitToken(t testing.TB, what string, tok paho3.Token) {
	t.Helper()
	if !tok.WaitTimeout(poll.Timeout) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
