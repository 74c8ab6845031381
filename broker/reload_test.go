package broker_test

import (
	"bufio"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// reloaded returns a copy of s's configuration changed by change.
func reloaded(s *broker.Server, change func(c *config.Config)) *config.Config {
	c := *s.Config()
	c.Listeners = append([]config.Listener(nil), c.Listeners...)
	change(&c)
	return &c
}

// TestReloadConnectTimeout: a new mqtt.connect_timeout applies to the
// connections accepted after the reload.
func TestReloadConnectTimeout(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MQTT.ConnectTimeout = config.Duration(5 * time.Minute)
	s, addr := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})

	changes, err := s.Reload(reloaded(s, func(c *config.Config) { c.MQTT.ConnectTimeout = config.Duration(100 * time.Millisecond) }))
	if err != nil || len(changes) != 1 || changes[0].Key != "mqtt.connect_timeout" || changes[0].Old != "5m" || changes[0].New != "100ms" {
		t.Fatalf("Reload = %+v, %v", changes, err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// With the old 5 minutes the read would time out at poll.Timeout.
	_ = conn.SetReadDeadline(time.Now().Add(poll.Timeout))
	_, err = bufio.NewReader(conn).ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection after the reload: read = %v, want it closed by the broker", err)
	}
}

// TestReloadMaxMessageExpiry: a new mqtt.max_message_expiry caps the
// messages published after the reload.
func TestReloadMaxMessageExpiry(t *testing.T) {
	s, _ := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	if err := s.PutRetained(broker.Message{Topic: "before", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(reloaded(s, func(c *config.Config) { c.MQTT.MaxMessageExpiry = config.Duration(10 * time.Minute) })); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRetained(broker.Message{Topic: "after", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Retained("before"); !ok || m.MessageExpiry != 0 {
		t.Errorf("retained before the reload: %+v, %v; want no expiry", m, ok)
	}
	if m, ok := s.Retained("after"); !ok || m.MessageExpiry == 0 || m.MessageExpiry > 600 {
		t.Errorf("retained after the reload: %+v, %v; want an expiry of at most 600s", m, ok)
	}
}

// TestReloadRefusedChangesNothing: a configuration changing a key that
// cannot change at runtime is refused whole, its live changes included.
func TestReloadRefusedChangesNothing(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	before := s.Config()
	changes, err := s.Reload(reloaded(s, func(c *config.Config) {
		c.Source = "propolis.yaml"
		c.MQTT.WriteTimeout = config.Duration(time.Second)
		c.MQTT.MaxClients = 5
		c.Listeners[0].Address = "127.0.0.1:1"
	}))
	want := `reload propolis.yaml: listeners[0].address cannot change while running (old "127.0.0.1:0", new "127.0.0.1:1"): its sockets are bound at start` + "\n" +
		`reload propolis.yaml: mqtt.max_clients cannot change while running (old 0, new 5): mochi's capabilities are fixed at start`
	if changes != nil || !errors.Is(err, config.ErrReloadRefused) || err.Error() != want {
		t.Fatalf("Reload = %+v, %v\nwant error:\n%s", changes, err, want)
	}
	if s.Config() != before {
		t.Fatal("a refused reload replaced the configuration")
	}
	c := v3Connect(t, v3Options(addr, "still-serving"))
	c.Disconnect(0)
}

// TestReloadWhileServing: reloads while clients connect and publish are
// safe (run with -race): readers see one configuration or the other.
func TestReloadWhileServing(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			_, err := s.Reload(reloaded(s, func(c *config.Config) {
				c.MQTT.MaxMessageExpiry = config.Duration(time.Duration(i%2) * time.Hour)
				c.MQTT.WriteTimeout = config.Duration(time.Duration(10+i%2) * time.Second)
				c.MQTT.ConnectTimeout = config.Duration(time.Duration(2+i%2) * time.Second)
			}))
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range 10 {
		c := v3Connect(t, v3Options(addr, "pub"+string(rune('a'+i))))
		for range 20 {
			wait(t, "publish", c.Publish("t", 1, false, []byte("x")))
		}
		c.Disconnect(0)
	}
	<-done
}

// TestReloadMaxKeepalive: a new mqtt.max_keepalive caps the keepalive of
// the connections accepted after the reload, and MQTT 5 clients are told
// it in the CONNACK.
func TestReloadMaxKeepalive(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	changes, err := s.Reload(reloaded(s, func(c *config.Config) { c.MQTT.MaxKeepalive = config.Duration(30 * time.Second) }))
	if err != nil || len(changes) != 1 || changes[0].Key != "mqtt.max_keepalive" {
		t.Fatalf("Reload = %+v, %v", changes, err)
	}
	_, ack := open5(t, addr, connect5Body("after-reload", 0, 600, props(), nil))
	if len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK % x, want accepted", ack)
	}
	p, _, err := decodeProps(ack[2:])
	if err != nil {
		t.Fatal(err)
	}
	if got := p[propServerKeepAlive]; len(got) != 1 || got[0] != uint32(30) {
		t.Fatalf("Server Keep Alive %v after the reload, want [30]", got)
	}
}

// TestReloadLogSettings: the broker applies a change of log.level or
// log.format through Options.ApplyLog, and reports it applied; a broker
// given no ApplyLog cannot change its logger and refuses the change,
// naming the file and the key, rather than report it applied.
func TestReloadLogSettings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		apply bool
	}{{"with ApplyLog", true}, {"without ApplyLog", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var applied []config.Log
			opts := broker.Options{Config: testConfig(t.TempDir()), Logger: testLogger(t)}
			if tc.apply {
				opts.ApplyLog = func(l config.Log) { applied = append(applied, l) }
			}
			s, err := broker.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			before := s.Config()
			next := reloaded(s, func(c *config.Config) { c.Source = "propolis.yaml"; c.Log.Level = "debug"; c.Log.Format = "json" })
			changes, err := s.Reload(next)
			if !tc.apply {
				want := `reload propolis.yaml: log.level cannot change while running (old "info", new "debug"): the broker was given no way to change its logger (broker.Options.ApplyLog)` + "\n" +
					`reload propolis.yaml: log.format cannot change while running (old "text", new "json"): the broker was given no way to change its logger (broker.Options.ApplyLog)`
				if changes != nil || !errors.Is(err, config.ErrReloadRefused) || err.Error() != want || s.Config() != before {
					t.Fatalf("Reload = %+v, %v\nwant error:\n%s", changes, err, want)
				}
				return
			}
			if err != nil || len(changes) != 2 || !changes[0].Live || !changes[1].Live || s.Config() != next {
				t.Fatalf("Reload = %+v, %v; want log.level and log.format applied", changes, err)
			}
			if len(applied) != 1 || applied[0] != next.Log {
				t.Fatalf("ApplyLog got %+v, want one call with %+v", applied, next.Log)
			}
			if _, err := s.Reload(reloaded(s, func(c *config.Config) { c.MQTT.MaxMessageExpiry = config.Duration(time.Hour) })); err != nil || len(applied) != 1 {
				t.Fatalf("Reload of no log key: %v, ApplyLog called %d times, want once in all", err, len(applied))
			}
		})
	}
}
