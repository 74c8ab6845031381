package broker_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// startLogged runs a broker logging at info into the returned buffer, with
// the security log's clock and summary timers stopped (no window ends, and
// no summary is written before Close, however slow the machine).
func startLogged(t *testing.T, ext broker.Extensions, tune ...func(*config.Config)) (*broker.Server, string, *lockedBuffer) {
	t.Helper()
	return startLoggedAt(t, slog.LevelInfo, ext, tune...)
}

// startLoggedAt is startLogged with the log at level.
func startLoggedAt(t *testing.T, level slog.Level, ext broker.Extensions, tune ...func(*config.Config)) (*broker.Server, string, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	cfg := testConfig(t.TempDir())
	for _, f := range tune {
		f(cfg)
	}
	s, err := broker.New(broker.Options{Config: cfg, Extensions: ext,
		Logger: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.SetSecurityLogClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s, s.Addr(cfg.Listeners[0].Name), out
}

// Refused CONNECTs are security events, logged at warn with client id,
// remote address, user name and reason; a flood of them is bounded: 10
// lines per 10 s, then one line counting the others ("more refused
// CONNECTs"), written at the end of the window or, as here, at shutdown.
func TestRefusedConnectsAreLoggedBounded(t *testing.T) {
	rules := &brokertest.Rules{Refuse: map[string]byte{"mallory": 0x86}}
	s, addr, out := startLogged(t, broker.Extensions{Authenticator: rules})
	const flood = 60
	for i := 0; i < flood; i++ {
		id := fmt.Sprintf("guess-%d", i)
		typ, ack := rawConnack(t, addr, connectBody("MQTT", 4, 0x82, id, "mallory", ""))
		if typ != 0x20 || len(ack) != 2 || ack[1] != 0x04 {
			t.Fatalf("CONNACK %#x % x, want 3.1.1 code 0x04", typ, ack)
		}
	}
	lines := out.lines(`msg="connect refused"`)
	if len(lines) != 10 {
		t.Fatalf("%d connect refused lines, want 10:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{"level=WARN", "client=guess-0", "remote=127.0.0.1:", "username=mallory", "code=0x04", `reason="refused by test rules"`} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("first line %q lacks %q", lines[0], want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	summary := out.lines(`msg="more refused CONNECTs"`)
	if len(summary) != 1 || !strings.Contains(summary[0], fmt.Sprintf("count=%d", flood-10)) || !strings.Contains(summary[0], "within=10s") {
		t.Fatalf("summary lines %q, want one with count=%d within=10s", summary, flood-10)
	}
	if all := out.lines("level="); len(all) > 30 {
		t.Fatalf("%d log lines for %d refused CONNECTs, want the log bounded:\n%s", len(all), flood, strings.Join(all, "\n"))
	}
}

// A client the broker disconnects for a refusal is logged at warn: here
// MQTT 3.1.1 clients publishing at QoS 1 where they may not, which cannot
// be told otherwise than by closing the connection (MQTT 3.1.1, 3.3.5:
// the server "MUST either make a positive acknowledgement ... or close the
// Network Connection" [MQTT-3.3.5-2]). Bounded like refused CONNECTs.
func TestRefusalDisconnectsAreLoggedBounded(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{"secret/": {Decision: broker.Deny, ReasonCode: 0x87, ReasonString: "not yours"}}}
	s, addr, out := startLogged(t, broker.Extensions{Authenticator: rules})
	const flood = 25
	for i := 0; i < flood; i++ {
		c, err := rawmqtt.Dial(addr, fmt.Sprintf("pusher-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		c.Publish("secret/plans", 1, 1, []byte("x"))
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(poll.Timeout))
		for {
			if _, _, err := c.ReadPacket(); err != nil {
				if isTimeout(err) {
					t.Fatal("client not disconnected")
				}
				break
			}
		}
		_ = c.Drop()
	}
	poll.Until(t, "10 disconnect lines", func() bool { return len(out.lines(`msg="client disconnected"`)) >= 10 })
	lines := out.lines(`msg="client disconnected"`)
	for _, want := range []string{"level=WARN", "client=pusher-0", "remote=127.0.0.1:", `cause="publish refused"`, "code=0x87", `reason="not yours"`, "topic=secret/plans"} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("first line %q lacks %q", lines[0], want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if lines := out.lines(`msg="client disconnected"`); len(lines) != 10 {
		t.Fatalf("%d disconnect lines, want 10", len(lines))
	}
	summary := out.lines(`msg="more clients disconnected"`)
	if len(summary) != 1 || !strings.Contains(summary[0], fmt.Sprintf("count=%d", flood-10)) {
		t.Fatalf("summary lines %q, want one with count=%d", summary, flood-10)
	}
}

// A refused SUBSCRIBE filter is logged at debug, as a refused PUBLISH is:
// the operator can see which filters were refused, and why.
func TestRefusedSubscribeIsLoggedAtDebug(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{"secret/": {Decision: broker.Deny, ReasonCode: 0x8F, ReasonString: "not here"}}}
	_, addr, out := startLoggedAt(t, slog.LevelDebug, broker.Extensions{Authenticator: rules})
	c, err := rawmqtt.Dial(addr, "subber")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Drop()
	if err := c.Subscribe("secret/#", 1); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("subscribe: %v, want it refused", err)
	}
	poll.Until(t, "the subscribe refused line", func() bool { return len(out.lines(`msg="subscribe refused"`)) == 1 })
	line := out.lines(`msg="subscribe refused"`)[0]
	for _, want := range []string{"level=DEBUG", "client=subber", "filter=secret/#", "decision=deny", "code=0x8f", `reason="not here"`} {
		if !strings.Contains(line, want) {
			t.Fatalf("line %q lacks %q", line, want)
		}
	}
}

// A CONNECT mochi refuses before the authenticator (here: the broker is
// full, mqtt.max_clients) is logged the same way, with the code the client
// gets (3.1.1: 0x03, server unavailable).
func TestMochiRefusalIsLogged(t *testing.T) {
	_, addr, out := startLogged(t, broker.Extensions{Authenticator: brokertest.AllowAll{}},
		func(c *config.Config) { c.MQTT.MaxClients = 1 })
	first, err := rawmqtt.Dial(addr, "first")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	typ, ack := rawConnack(t, addr, connectBody("MQTT", 4, 0x02, "second", "", ""))
	if typ != 0x20 || len(ack) != 2 || ack[1] != 0x03 {
		t.Fatalf("CONNACK %#x % x, want 3.1.1 code 0x03", typ, ack)
	}
	poll.Until(t, "the refusal logged", func() bool { return len(out.lines(`msg="connect refused"`)) == 1 })
	line := out.lines(`msg="connect refused"`)[0]
	for _, want := range []string{"level=WARN", "client=second", "code=0x03", `reason="server unavailable"`} {
		if !strings.Contains(line, want) {
			t.Fatalf("line %q lacks %q", line, want)
		}
	}
}
