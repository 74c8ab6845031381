package broker_test

import (
	"crypto/tls"
	"sync/atomic"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/overload"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
	"github.com/propolis-mqtt/propolis/internal/testpki"
)

// These tests carry the overload and client_limits tests to the TLS and
// WebSocket listeners and to sessions that outlive a connection.

// mustSubscribe subscribes c to f at QoS 0 and checks the grant or refusal.
func mustSubscribe(t *testing.T, c *brokertest.Conn, f string, wantOK bool) {
	t.Helper()
	err := c.Subscribe(f, 0)
	if wantOK && err != nil {
		t.Errorf("subscribe %q refused: %v", f, err)
	}
	if !wantOK && err == nil {
		t.Errorf("subscribe %q granted, want refused", f)
	}
}

// limitedListeners gives cfg a TCP, a TLS and a WebSocket listener, the
// last two with overload_protection prot.
func limitedListeners(t *testing.T, cfg *config.Config, prot bool) *testpki.PKI {
	pki := testpki.New(t)
	p := prot
	cfg.Listeners = []config.Listener{
		{Name: "tcp", Type: "tcp", Address: "127.0.0.1:0"},
		{Name: "secure", Type: "tls", Address: "127.0.0.1:0", TLS: &config.TLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey}, OverloadProtection: &p},
		{Name: "web", Type: "websocket", Address: "127.0.0.1:0", Path: "/mqtt", OverloadProtection: &p},
	}
	return pki
}

// limitedClient connects a paho 3.1.1 client with id to the "web" or
// "secure" listener of s.
func limitedClient(t *testing.T, s *broker.Server, pki *testpki.PKI, which, id string) paho3.Client {
	o := v3Options("", id)
	o.Servers = nil
	switch which {
	case "web":
		o.AddBroker("ws://" + s.Addr("web") + "/mqtt")
	case "secure":
		o.AddBroker("ssl://" + s.Addr("secure"))
		o.SetTLSConfig(&tls.Config{RootCAs: pki.CAPool, ServerName: "127.0.0.1"})
	}
	return v3Connect(t, o)
}

// TestClientLimitsOnTLSAndWebSocket: client_limits.bytes_rate slows a
// client on the TLS and WebSocket listeners as on TCP.
func TestClientLimitsOnTLSAndWebSocket(t *testing.T) {
	for _, which := range []string{"web", "secure"} {
		t.Run(which, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Overload.Enabled = false
			cfg.ClientLimits.BytesRate = 64 << 10
			pki := limitedListeners(t, cfg, true)
			s := startOverload(t, cfg, nil, broker.Extensions{})
			c := limitedClient(t, s, pki, which, "lim")
			start := time.Now()
			var toks []paho3.Token
			for range 96 {
				toks = append(toks, c.Publish("limits/t", 1, false, make([]byte, 1<<10)))
			}
			for _, tk := range toks {
				wait(t, "pub", tk)
			}
			took := time.Since(start)
			st := s.Overload().Throttling
			t.Logf("%s: 96 KiB in %v, hits %d, waited %v", which, took, st.Hit(overload.LimitBytesRate), st.Waited)
			// 64 KiB/s, a 6.5 KiB burst and one 2 KiB read ahead of its
			// payment: at least 1.4 s for 96 KiB and headers.
			if took < 1300*time.Millisecond || st.Hit(overload.LimitBytesRate) == 0 {
				t.Errorf("bytes_rate not applied on %s", which)
			}
		})
	}
}

// flood publishes 1 KiB QoS 0 messages from c until stop (at most 200,000).
func flood1K(t *testing.T, c paho3.Client, stop *atomic.Bool) {
	go func() {
		for i := 0; i < 200000 && !stop.Load(); i++ {
			tk := c.Publish("flood/x", 0, false, make([]byte, 1<<10))
			tk.WaitTimeout(time.Second)
		}
	}()
}

// TestProtectionOnTLSAndWebSocket: a listener's overload_protection is
// honoured on TLS and WebSocket listeners: under stress 10 a flooder is
// throttled there when it is on, never when it is off.
func TestProtectionOnTLSAndWebSocket(t *testing.T) {
	for _, prot := range []bool{false, true} {
		for _, which := range []string{"web", "secure"} {
			t.Run(map[bool]string{false: "off/", true: "on/"}[prot]+which, func(t *testing.T) {
				st := &stress{}
				st.level.Store(10)
				cfg := overloadConfig(t)
				pki := limitedListeners(t, cfg, prot)
				s := startOverload(t, cfg, st, broker.Extensions{})
				c := limitedClient(t, s, pki, which, "fl")
				var stop atomic.Bool
				defer stop.Store(true)
				flood1K(t, c, &stop)
				if prot {
					poll.Until(t, "throttled", func() bool { return s.Overload().Throttling.Throttled == 1 })
				} else {
					st.waitSamples(t, 20)
					if n := s.Overload().Throttling.Throttled; n != 0 {
						t.Errorf("%s protection off: %d throttled", which, n)
					}
				}
				t.Logf("prot=%v %s: throttled=%d waited=%v", prot, which, s.Overload().Throttling.Throttled, s.Overload().Throttling.Waited)
			})
		}
	}
}

// TestMaxSubscriptionsShared: shared subscriptions count, a repeated one
// does not count twice, an unsubscribe frees room.
func TestMaxSubscriptionsShared(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.ClientLimits.MaxSubscriptions = 2
	s := startOverload(t, cfg, nil, broker.Extensions{})
	c, err := brokertest.Dial(s.Addr("tcp"), "sh")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustSubscribe(t, c, "$share/g/x", true)
	mustSubscribe(t, c, "$share/g/x", true) // resubscribe: no double count
	mustSubscribe(t, c, "x", true)
	mustSubscribe(t, c, "$share/h/x", false)
	// unsubscribe decrements
	if err := c.Send(0xa2, []byte{0, 9, 0, 1, 'x'}); err != nil {
		t.Fatal(err)
	}
	_ = c.Flush()
	for {
		typ, _, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if typ == 0xb0 {
			break
		}
	}
	mustSubscribe(t, c, "$share/h/x", true)
}

// TestMaxSubscriptionsRestart: the limit holds for a session restored
// from the store.
func TestMaxSubscriptionsRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.ClientLimits.MaxSubscriptions = 2
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c, _, err := rawmqtt.DialSession(s.Addr("tcp"), "p")
	if err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, c, "a", true)
	mustSubscribe(t, c, "b", true)
	_ = c.Close()
	_ = s.Close()

	cfg2 := testConfig(dir)
	cfg2.ClientLimits.MaxSubscriptions = 2
	s2 := startOverload(t, cfg2, nil, broker.Extensions{})
	c, present, err := rawmqtt.DialSession(s2.Addr("tcp"), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !present {
		t.Fatal("the session was not restored")
	}
	mustSubscribe(t, c, "a", true)
	mustSubscribe(t, c, "c", false)
}
