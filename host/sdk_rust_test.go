package host

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/load"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// These tests load the Rust SDK's example (sdk/rust/examples/rate-cap),
// built from the repository with sdk/rust/build.sh, into a real broker and
// drive it with MQTT 5 clients over loopback. Without a rustc that has the
// wasm32-wasi standard library they are skipped, saying so (.ci/run
// installs it).

// rustBuild runs sdk/rust/build.sh with args once per test run (key names
// the result), skipping the test when no rustc with the wasm32-wasi
// standard library is installed, and returns the path at rel in the
// guest cache.
func rustBuild(t testing.TB, key, rel string, args func(out string) []string) string {
	t.Helper()
	script := filepath.Join("..", "sdk", "rust", "build.sh")
	if out, err := exec.Command(script, "-find").CombinedOutput(); err != nil {
		t.Skipf("Rust SDK not built: %s", strings.TrimSpace(string(out)))
	}
	guestCache.Lock()
	defer guestCache.Unlock()
	if p, ok := guestCache.built[key]; ok {
		return p
	}
	if guestCache.dir == "" {
		d, err := os.MkdirTemp("", "propolis-guests")
		if err != nil {
			t.Fatal(err)
		}
		guestCache.dir = d
	}
	out := filepath.Join(guestCache.dir, "rust")
	if b, err := exec.Command(script, args(out)...).CombinedOutput(); err != nil {
		t.Fatalf("build %s with the Rust SDK: %v\n%s", key, err, b)
	}
	p := filepath.Join(out, rel)
	guestCache.built[key] = p
	return p
}

// rustExample builds the Rust SDK's examples and returns the .wasm of
// example id.
func rustExample(t testing.TB, id string) string {
	return rustBuild(t, "sdk/rust/examples/"+id, filepath.Join(id, id+".wasm"), func(out string) []string { return []string{out} })
}

// rustGuest builds the Rust SDK's test guest sdk/rust/testdata/name and
// returns its .wasm.
func rustGuest(t testing.TB, name string) string {
	src, err := filepath.Abs(filepath.Join("..", "sdk", "rust", "testdata", name, "src", "lib.rs"))
	if err != nil {
		t.Fatal(err)
	}
	return rustBuild(t, "sdk/rust/testdata/"+name, "testdata-"+name+".wasm", func(out string) []string {
		return []string{"-guest", src, filepath.Join(out, "testdata-"+name+".wasm")}
	})
}

// publishCodes publishes n QoS 1 messages to topic and returns the PUBACK
// reason codes and reason strings.
func publishCodes(t *testing.T, c *paho.Client, topic string, n int) ([]byte, []string) {
	t.Helper()
	var codes []byte
	var reasons []string
	for i := 0; i < n; i++ {
		r, err := c.Publish(ctx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte{byte(i)}})
		if r == nil {
			t.Fatalf("publish %d to %s: no PUBACK: %v", i, topic, err)
		}
		reason := ""
		if r.Properties != nil {
			reason = r.Properties.ReasonString
		}
		codes = append(codes, r.ReasonCode)
		reasons = append(reasons, reason)
	}
	return codes, reasons
}

// TestRustSDKRateCap: the Rust example caps each connection at its burst
// (the refill, one publish per 100 s, cannot add a token during the test),
// refuses the rest with 0x96 and its reason string, counts each
// connection apart, on topics outside its filters counts nothing, and
// delivers only what it let through. The bucket is a connection
// attribute, so the cap holds across the pool's instances.
func TestRustSDKRateCap(t *testing.T) {
	wasm := rustExample(t, "rate-cap")
	extDir := t.TempDir()
	installExtension(t, extDir, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, extDir, "rate-cap", wasm, 10,
		"services: [connection_attributes]\nlimits:\n  pool_size: 4\nconfig:\n  rate: 0.01\n  burst: 3\n  topics: [\"capped/#\"]\n")
	w := startWired(t, extDir, Options{})
	if st := statusOf(t, w.h, "rate-cap"); st.State != StateRunning {
		t.Fatalf("rate-cap %s: %s\n%s", st.State, st.Reason, w.logs)
	}

	got := make(chan string, 64)
	sub, _, err := v5(t, w.addr, "watcher", "", "", func(p paho.PublishReceived) { got <- p.Packet.Topic })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "capped/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	a, _, err := v5(t, w.addr, "client-a", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	codes, reasons := publishCodes(t, a, "capped/a", 6)
	want := []byte{0, 0, 0, 0x96, 0x96, 0x96}
	if string(codes) != string(want) {
		t.Fatalf("client-a PUBACK codes %x, want %x (reasons %q)\n%s", codes, want, reasons, w.logs)
	}
	if reasons[3] != "publish rate above 0.01 per second (burst 3)" {
		t.Fatalf("refusal reason %q", reasons[3])
	}

	// Another connection has its own bucket.
	b, _, err := v5(t, w.addr, "client-b", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if codes, _ := publishCodes(t, b, "capped/b", 4); string(codes) != string([]byte{0, 0, 0, 0x96}) {
		t.Fatalf("client-b PUBACK codes %x", codes)
	}
	// Topics outside the extension's filters are not counted (no call).
	if codes, _ := publishCodes(t, a, "free/a", 5); string(codes) != string([]byte{0, 0, 0, 0, 0}) {
		t.Fatalf("uncapped topic PUBACK codes %x", codes)
	}

	// Only the six publishes let through reach the subscriber.
	counts := map[string]int{}
	deadline := time.After(poll.Timeout)
	for n := 0; n < 6; n++ {
		select {
		case topic := <-got:
			counts[topic]++
		case <-deadline:
			t.Fatalf("delivered %v, want 3 of each client", counts)
		}
	}
	if counts["capped/a"] != 3 || counts["capped/b"] != 3 {
		t.Fatalf("delivered %v, want 3 of each client", counts)
	}
	// A publish after those: if a refused one had been delivered, it would
	// arrive before this one.
	if codes, _ := publishCodes(t, sub, "capped/w", 1); codes[0] != 0 {
		t.Fatalf("watcher's publish refused: %x", codes)
	}
	select {
	case topic := <-got:
		if topic != "capped/w" {
			t.Fatalf("delivered %s, want capped/w (a refused publish was delivered)", topic)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("watcher's own publish not delivered")
	}
}

// TestRustSDKRateCapRefills: a refused connection publishes again once
// its bucket refilled (5 per second, burst 1), in real time.
func TestRustSDKRateCapRefills(t *testing.T) {
	wasm := rustExample(t, "rate-cap")
	extDir := t.TempDir()
	installExtension(t, extDir, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, extDir, "rate-cap", wasm, 10, "services: [connection_attributes]\nconfig:\n  rate: 5\n  burst: 1\n  code: 0x97\n")
	w := startWired(t, extDir, Options{})
	c, _, err := v5(t, w.addr, "c", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for i := 0; i < 50 && !refused; i++ { // bounded: burst 1 refuses the second publish within 200 ms
		codes, _ := publishCodes(t, c, "t", 1)
		refused = codes[0] == 0x97
	}
	if !refused {
		t.Fatalf("50 publishes at once, none refused\n%s", w.logs)
	}
	poll.Until(t, "a publish allowed after the refill", func() bool {
		codes, _ := publishCodes(t, c, "t", 1)
		return codes[0] == 0
	})
}

// TestRustSDKRateCapServiceBudget: a flood that spends the extension's
// service budget (4 calls per second here) is still capped: a PUBLISH whose
// bucket read is RATE_LIMITED is refused with the cap's code, never let
// through (the cap turned off under a flood before).
func TestRustSDKRateCapServiceBudget(t *testing.T) {
	wasm := rustExample(t, "rate-cap")
	extDir := t.TempDir()
	installExtension(t, extDir, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, extDir, "rate-cap", wasm, 10,
		"services: [connection_attributes]\nlimits:\n  service_rate: 4\n  service_burst: 4\nconfig:\n  rate: 0.01\n  burst: 1\n")
	w := startWired(t, extDir, Options{})
	c, _, err := v5(t, w.addr, "flood", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	codes, reasons := publishCodes(t, c, "t", 30)
	if codes[0] != 0 {
		t.Fatalf("first publish refused: %x %q\n%s", codes[0], reasons[0], w.logs)
	}
	for i, code := range codes[1:] {
		if code != 0x96 {
			t.Fatalf("publish %d of a flood answered %#x (%q), want 0x96; all: %x\n%s", i+1, code, reasons[i+1], codes, w.logs)
		}
	}
	if !strings.Contains(w.logs.String(), "RATE_LIMITED") {
		t.Fatalf("the flood never reached the service budget (test proves nothing)\n%s", w.logs)
	}
}

// TestRustSDKRateCapConfig: a config the example cannot use refuses its
// start, and the reason names the key.
func TestRustSDKRateCapConfig(t *testing.T) {
	wasm := rustExample(t, "rate-cap")
	for _, tc := range []struct{ name, config, want string }{
		{"unknown key", "  rat: 5\n", "config.rat: unknown key (known: rate, burst, topics, code, disconnect, fail_open)"},
		{"rate out of range", "  rate: 0\n", "config.rate: 0 out of range 0.001-1000000 publishes per second"},
		{"bad filter", "  topics: [\"a/#/b\"]\n", `config.topics: "a/#/b": propolis: INVALID_ARGUMENT`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extDir := t.TempDir()
			installExtension(t, extDir, "rate-cap", wasm, 0, "services: [connection_attributes]\nconfig:\n"+tc.config)
			w := startWired(t, extDir, Options{})
			if st := statusOf(t, w.h, "rate-cap"); st.State != StateFailed || !strings.Contains(st.Reason, tc.want) {
				t.Fatalf("state %s, reason %q; want failed with %q", st.State, st.Reason, tc.want)
			}
		})
	}
}

// TestRustSDKProbe runs the Rust SDK's test guest (sdk/rust/testdata/probe)
// in a real broker and checks, from MQTT 5 clients, what each callback it
// implements answers or changes: authenticate (a refusal with its code and
// reason; an acceptance with a CONNACK property and permissions),
// authorize_subscribe, every interceptor (intercept_connect,
// intercept_connack, intercept_subscribe, intercept_publish_inbound and
// intercept_publish_outbound under their filters and client pattern,
// intercept_disconnect), on_event with the publish service, and tick with
// the storage service.
func TestRustSDKProbe(t *testing.T) {
	wasm := rustGuest(t, "probe")
	ext := t.TempDir()
	installExtension(t, ext, "probe", wasm, 0, "services: [publish, storage]\ntick: 100ms\n")
	_, addr, h := startBrokerIn(t, ext, filepath.Join(t.TempDir(), "data"))
	if st := statusOf(t, h, "probe"); st.State != StateRunning {
		t.Fatalf("probe %s: %s", st.State, st.Reason)
	}

	if _, ack, err := v5(t, addr, "refused", "bad", "x", nil); err == nil || ack == nil || ack.ReasonCode != 0x86 ||
		ack.Properties == nil || ack.Properties.ReasonString != "bad user name or password" {
		t.Fatalf("user bad: CONNACK %+v, %v; want 0x86 with its reason", ack, err)
	}
	// intercept_connect renames anon to guest before authenticate.
	if _, ack, err := v5(t, addr, "anon-1", "anon", "x", nil); err != nil {
		t.Fatalf("user anon (renamed guest by intercept_connect): CONNACK %+v, %v", ack, err)
	}

	in := &inbox{}
	c, ack, err := v5(t, addr, "good", "alice", "x", in.add)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Properties.User.Get("sdk") != "rust" || ack.Properties.User.Get("intercepted") != "yes" {
		t.Fatalf("CONNACK user properties %+v, want sdk=rust and intercepted=yes", ack.Properties.User)
	}
	sub, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "secret/x", QoS: 1}, {Topic: "modern/#", QoS: 1}, {Topic: "probe/events/#", QoS: 0}, {Topic: "capped/#", QoS: 2},
		{Topic: "probe/tick", QoS: 0}}})
	if sub == nil { // err also says that a filter was refused
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	if want := []byte{0x87, 1, 0, 1, 0}; string(sub.Reasons) != string(want) {
		t.Fatalf("SUBACK %x, want %x", sub.Reasons, want)
	}
	plain := &inbox{}
	p, _, err := v5(t, addr, "plain-1", "carol", "x", plain.add)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "modern/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	// The permissions from authenticate: publishing under forbidden/ is
	// refused by the host, without a Wasm call.
	if r, _ := c.Publish(ctx(t), &paho.Publish{Topic: "forbidden/x", QoS: 1, Payload: []byte("x")}); r == nil || r.ReasonCode != 0x87 {
		t.Fatalf("forbidden/x: PUBACK %+v, want 0x87", r)
	}
	// The inbound interceptor: prevention, then a rewrite.
	r, _ := c.Publish(ctx(t), &paho.Publish{Topic: "legacy/b", QoS: 1, Payload: []byte("drop")})
	if r == nil || r.ReasonCode != 0x99 || r.Properties == nil || r.Properties.ReasonString != "dropped" {
		t.Fatalf("legacy/b drop: PUBACK %+v, want 0x99 dropped", r)
	}
	if r, err := c.Publish(ctx(t), &paho.Publish{Topic: "legacy/a", QoS: 1, Payload: []byte("hi"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}}); err != nil || r.ReasonCode != 0 {
		t.Fatalf("legacy/a: PUBACK %+v, %v", r, err)
	}
	// The outbound interceptor strips the properties of plain-1's copy only.
	if got := plain.wait(t, 0); got.Topic != "modern/a" || string(got.Payload) != "hi" || got.Properties != nil && len(got.Properties.User) != 0 {
		t.Fatalf("plain-1 got %s %q %+v, want modern/a without user properties", got.Topic, got.Payload, got.Properties)
	}
	// A client that says goodbye: intercept_disconnect gives its DISCONNECT
	// a reason string, which its disconnect event reports.
	l, _, err := v5(t, addr, "leaver", "dave", "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	var moved *paho.Publish
	events := map[string]bool{}
	ticks := map[string]bool{}
	poll.Until(t, "the rewritten message, the leaver's events and two ticks", func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		for _, p := range in.got {
			switch {
			case strings.HasPrefix(p.Topic, "modern/"):
				moved = p
			case p.Topic == "probe/events/leaver":
				events[string(p.Payload)] = true
			case p.Topic == "probe/tick":
				ticks[string(p.Payload)] = true
			}
		}
		return moved != nil && events["connection_start"] && events["auth_succeeded"] && events["disconnect:said goodbye"] && len(ticks) >= 2
	})
	if moved.Topic != "modern/a" || string(moved.Payload) != "hi" || userProperty(moved, "k") != "v" || userProperty(moved, "via") != "rust" {
		t.Fatalf("rewritten message %s %q %+v", moved.Topic, moved.Payload, moved.Properties)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, p := range in.got {
		if p.Topic == "legacy/b" || p.Topic == "modern/b" || p.Topic == "forbidden/x" {
			t.Fatalf("a refused or prevented message was delivered: %s", p.Topic)
		}
	}
}

// BenchmarkRustSDKRateCap measures what the Rust rate-cap costs the broker
// per PUBLISH, as BenchmarkBrokerPublishGuard does for the Go
// publish-guard: one publisher, one subscriber, QoS 0 and 1, durability
// "none", with allow-all alone, with the Go publish-guard added (one Wasm
// call per message), and with rate-cap added at a cap no client reaches
// (one Wasm call and two connection attribute calls per message). The
// service rate is raised so that the host's limiter never answers
// RATE_LIMITED. Read cpu-µs/msg on a busy machine.
func BenchmarkRustSDKRateCap(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, tc := range []struct{ name, ext string }{{"allow-all", ""}, {"go-publish-guard", "publish-guard"}, {"rust-rate-cap", "rate-cap"}} {
			b.Run(fmt.Sprintf("qos%d/%s", qos, tc.name), func(b *testing.B) {
				extDir := b.TempDir()
				installExtension(b, extDir, "allow-all", example(b, "allow-all"), 0, "")
				switch tc.ext {
				case "publish-guard":
					installExtension(b, extDir, "publish-guard", example(b, "publish-guard"), 10, "limits:\n  call_deadline: 1m\n")
				case "rate-cap":
					installExtension(b, extDir, "rate-cap", rustExample(b, "rate-cap"), 10,
						"services: [connection_attributes]\nlimits:\n  call_deadline: 1m\n  service_rate: 1000000\n  service_burst: 1000000\n"+
							"config:\n  rate: 1000000\n  burst: 1000000\n  fail_open: false\n")
				}
				w := startWiredWith(b, extDir, Options{ServiceRate: 1000000, ServiceBurst: 1000000}, func(c *config.Config) {
					c.Durability.Mode = "none"
				})
				const payload = 64
				b.SetBytes(payload)
				b.ResetTimer()
				cpu := cpuTime()
				res, err := load.Flow{Addr: w.addr, Name: "bench", Topic: "bench/cap/t", Publishers: 1, Subscribers: 1,
					Messages: b.N, QoS: qos, PayloadSize: payload, InFlight: 256, StallAfter: 30 * time.Second}.Run()
				cpu = cpuTime() - cpu
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if res.Lost != 0 {
					b.Fatalf("%d of %d messages lost", res.Lost, b.N)
				}
				b.ReportMetric(res.Rate(), "msgs/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-µs/msg")
			})
		}
	}
}
