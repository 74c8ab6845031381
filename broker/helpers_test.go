package broker_test

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// testConfig is the default configuration on a free loopback port with its
// data in dir.
func testConfig(dir string) *config.Config {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.MQTT.ConnectTimeout = config.Duration(2 * time.Second)
	return cfg
}

// testLogger writes to the test log when -v is given, else nowhere.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer runs a broker on cfg until the test ends and returns it with
// its tcp address.
func startServer(t testing.TB, cfg *config.Config, ext broker.Extensions) (*broker.Server, string) {
	t.Helper()
	s, err := broker.New(broker.Options{Config: cfg, Extensions: ext, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Addr(cfg.Listeners[0].Name)
}

// v3Options are paho 3.1.1 client options for addr.
func v3Options(addr, id string) *paho3.ClientOptions {
	return paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(poll.Timeout).SetWriteTimeout(poll.Timeout)
}

// v3Connect connects a 3.1.1 client and fails the test on error.
func v3Connect(t testing.TB, o *paho3.ClientOptions) paho3.Client {
	t.Helper()
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", o.ClientID, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// v5Dial, ctx5 and wait are the names the broker's tests use for
// brokertest.DialV5, brokertest.OpCtx and brokertest.WaitToken.
var (
	v5Dial = brokertest.DialV5
	ctx5   = brokertest.OpCtx
	wait   = brokertest.WaitToken
)

// recv collects messages from a paho 3.1.1 subscription.
type recv struct {
	ch chan paho3.Message
}

func newRecv() *recv { return &recv{ch: make(chan paho3.Message, 4096)} }

func (r *recv) handler(_ paho3.Client, m paho3.Message) { r.ch <- m }

// next returns the next message or fails after d (poll.Timeout when a
// message is expected).
func (r *recv) next(t testing.TB, d time.Duration) paho3.Message {
	t.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
		return nil
	}
}

// none fails if a message arrives within d: a short window, an absence
// check that cannot fail on a slow machine, only miss a late message.
func (r *recv) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-r.ch:
		t.Fatalf("unexpected message on %s: %q", m.Topic(), m.Payload())
	case <-time.After(d):
	}
}

// newPahoClient builds a paho 3.1.1 client without connecting.
func newPahoClient(o *paho3.ClientOptions) paho3.Client { return paho3.NewClient(o) }
