package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// These tests load the Rust SDK's example (sdk/rust/examples/rate-cap),
// built from the repository with sdk/rust/build.sh, into a real broker and
// drive it with MQTT 5 clients over loopback. Without a rustc that has the
// wasm32-wasi standard library they are skipped, saying so (.ci/run
// installs it).

// rustExample builds the Rust SDK's examples once per test run and returns
// the .wasm of example id.
func rustExample(t testing.TB, id string) string {
	t.Helper()
	find := exec.Command(filepath.Join("..", "sdk", "rust", "build.sh"), "-find")
	if out, err := find.CombinedOutput(); err != nil {
		t.Skipf("Rust SDK not built: %s", strings.TrimSpace(string(out)))
	}
	guestCache.Lock()
	defer guestCache.Unlock()
	key := "sdk/rust/" + id
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
	cmd := exec.Command(filepath.Join("..", "sdk", "rust", "build.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the Rust SDK's examples: %v\n%s", err, b)
	}
	p := filepath.Join(out, id, id+".wasm")
	guestCache.built[key] = p
	return p
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
