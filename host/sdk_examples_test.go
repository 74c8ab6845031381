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

// These tests load the examples of the C and AssemblyScript SDKs (sdk/c,
// sdk/assemblyscript), built from the repository with their own
// toolchains, with their own manifests, and drive them with real MQTT
// clients. A machine without the toolchain skips them, saying which.

// installSDKExample copies the example folder's manifest and the built
// module into extDir/<id>/ (named as the manifest's module says).
func installSDKExample(t *testing.T, extDir, exampleDir, id, wasm string) {
	t.Helper()
	dir := filepath.Join(extDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(exampleDir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".wasm"), bin, 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildCExample compiles sdk/c/examples/<id> with sdk/c/build.sh.
func buildCExample(t *testing.T, id string) string {
	t.Helper()
	script := filepath.Join("..", "sdk", "c", "build.sh")
	if out, err := exec.Command(script, "--check").CombinedOutput(); err != nil {
		t.Skipf("skipped the C SDK: clang with the wasm32-wasi target not found (install clang lld wasi-libc libclang-rt-dev-wasm32): %s", strings.TrimSpace(string(out)))
	}
	srcs, _ := filepath.Glob(filepath.Join("..", "sdk", "c", "examples", id, "*.c"))
	out := filepath.Join(t.TempDir(), id+".wasm")
	if b, err := exec.Command(script, append([]string{out}, srcs...)...).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", id, err, b)
	}
	return out
}

// TestMQTTSDKCTopicACL: the C SDK's topic ACL, behind allow-all, applies
// its manifest's rules to publishes and subscriptions of MQTT 5 clients.
func TestMQTTSDKCTopicACL(t *testing.T) {
	wasm := buildCExample(t, "c-topic-acl")
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installSDKExample(t, ext, filepath.Join("..", "sdk", "c", "examples", "c-topic-acl"), "c-topic-acl", wasm)
	addr, h := startBroker(t, ext)
	if !strings.Contains(testLogs(t, h).String(), "c-topic-acl 1.0.0: 5 rules, default deny") {
		t.Fatalf("no start-up line in the log:\n%s", testLogs(t, h).String())
	}

	got := make(chan string, 16)
	alice, _, err := v5(t, addr, "app-1", "alice", "pw", func(p paho.PublishReceived) { got <- p.Packet.Topic + "=" + string(p.Packet.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	sensor, _, err := v5(t, addr, "sensor-1", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := v5(t, addr, "ops", "admin", "pw", nil)
	if err != nil {
		t.Fatal(err)
	}

	ack, err := alice.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/#", QoS: 1}, {Topic: "secret/#", QoS: 0}, {Topic: "$share/g/devices/+/t", QoS: 0},
		{Topic: "#", QoS: 0}, {Topic: "inbox/alice/#", QoS: 1}, {Topic: "inbox/+/x", QoS: 0},
	}})
	if ack == nil {
		t.Fatal(err)
	}
	if want := []byte{1, 0x87, 0, 0x87, 1, 0x87}; string(ack.Reasons) != string(want) {
		t.Fatalf("SUBACK %x, want %x", ack.Reasons, want)
	}

	for _, tc := range []struct {
		name   string
		c      *paho.Client
		p      paho.Publish
		code   byte
		reason string
	}{
		{"sensor's own tree", sensor, paho.Publish{Topic: "devices/sensor-1/t", QoS: 1}, 0, ""},
		{"sensor above max_qos", sensor, paho.Publish{Topic: "devices/sensor-1/t", QoS: 2}, 0x87, "no rule allows publishing to devices/sensor-1/t"},
		{"another sensor's tree", sensor, paho.Publish{Topic: "devices/sensor-2/t", QoS: 1}, 0x87, "no rule allows publishing to devices/sensor-2/t"},
		{"own inbox", alice, paho.Publish{Topic: "inbox/alice/x", QoS: 1}, 0, ""},
		{"someone else's inbox", alice, paho.Publish{Topic: "inbox/bob/x", QoS: 1}, 0x87, "no rule allows publishing to inbox/bob/x"},
		{"secret", alice, paho.Publish{Topic: "secret/plans", QoS: 1}, 0x87, "rule 2 forbids publishing to secret/plans"},
		{"admin's secret", admin, paho.Publish{Topic: "secret/plans", QoS: 1}, 0, ""},
		{"no username, no inbox", sensor, paho.Publish{Topic: "inbox//x", QoS: 1}, 0x87, "no rule allows publishing to inbox//x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Payload = []byte("v")
			resp, err := tc.c.Publish(ctx(t), &tc.p)
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.ReasonCode != tc.code || (tc.reason != "" && resp.Properties.ReasonString != tc.reason) {
				t.Fatalf("got %#x %q, want %#x %q", resp.ReasonCode, resp.Properties.ReasonString, tc.code, tc.reason)
			}
		})
	}
	// alice, subscribed to devices/# and her inbox, got what was allowed
	// and nothing that was refused.
	want := map[string]bool{"devices/sensor-1/t=v": true, "inbox/alice/x=v": true}
	deadline := time.After(poll.Timeout)
	for len(want) > 0 {
		select {
		case m := <-got:
			if !want[m] {
				t.Fatalf("alice got %s", m)
			}
			delete(want, m)
		case <-deadline:
			t.Fatalf("alice did not get %v", want)
		}
	}
}
