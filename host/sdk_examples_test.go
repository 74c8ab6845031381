package host

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// sdkBuilds holds the SDK examples built during this test run.
var sdkBuilds = struct {
	sync.Mutex
	dir   string
	built map[string]string
}{built: map[string]string{}}

// sdkBuilt returns the cached build of key, or a path to build it to.
func sdkBuilt(t *testing.T, key string) (string, bool) {
	t.Helper()
	sdkBuilds.Lock()
	defer sdkBuilds.Unlock()
	if p, ok := sdkBuilds.built[key]; ok {
		return p, true
	}
	if sdkBuilds.dir == "" {
		d, err := os.MkdirTemp("", "propolis-sdk-examples")
		if err != nil {
			t.Fatal(err)
		}
		sdkBuilds.dir = d
	}
	return filepath.Join(sdkBuilds.dir, strings.ReplaceAll(key, "/", "-")+".wasm"), false
}

// sdkDone records a build.
func sdkDone(key, path string) {
	sdkBuilds.Lock()
	defer sdkBuilds.Unlock()
	sdkBuilds.built[key] = path
}

// buildCExample compiles sdk/c/examples/<id> with sdk/c/build.sh.
func buildCExample(t *testing.T, id string) string {
	t.Helper()
	srcs, _ := filepath.Glob(filepath.Join("..", "sdk", "c", "examples", id, "*.c"))
	return buildC(t, "c/"+id, srcs...)
}

// buildC compiles C sources with sdk/c/build.sh, once per test run.
func buildC(t *testing.T, key string, srcs ...string) string {
	t.Helper()
	out, ok := sdkBuilt(t, key)
	if ok {
		return out
	}
	script := filepath.Join("..", "sdk", "c", "build.sh")
	if out, err := exec.Command(script, "--check").CombinedOutput(); err != nil {
		t.Skipf("skipped the C SDK: clang with the wasm32-wasi target not found (install clang lld wasi-libc libclang-rt-dev-wasm32): %s", strings.TrimSpace(string(out)))
	}
	if b, err := exec.Command(script, append(append([]string{out}, srcs...), "-Werror")...).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", key, err, b)
	}
	sdkDone(key, out)
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

// TestMQTTSDKCTopicACLDenyFailsClosed: a deny rule whose {username} or
// {clientid} cannot be filled in for a client (a user name holding '/',
// none at all) still denies: its topic is widened to the levels before the
// placeholder and '#', so the allow rule after it cannot let the client
// reach what the deny rule was written to forbid.
func TestMQTTSDKCTopicACLDenyFailsClosed(t *testing.T) {
	wasm := buildCExample(t, "c-topic-acl")
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, ext, "c-topic-acl", wasm, 50, `abi: "1.2"
config:
  default: deny
  rules:
    - decision: deny
      topics: ["users/{username}/admin", "devices/{clientid}/config"]
    - topics: ["users/#", "devices/#", "open/#"]
`)
	addr, h := startBroker(t, ext)
	slash, _, err := v5(t, addr, "dev/1", "a/b", "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	anon, _, err := v5(t, addr, "anon", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := v5(t, addr, "bob-1", "bob", "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		c      *paho.Client
		topic  string
		code   byte
		reason string
	}{
		{"filled in: denied", bob, "users/bob/admin", 0x87, "rule 1 forbids publishing to users/bob/admin"},
		{"filled in: others allowed", bob, "users/bob/x", 0, ""},
		{"user name with a slash", slash, "users/a/b/admin", 0x87, "rule 1 forbids publishing to users/a/b/admin"},
		{"user name with a slash, widened", slash, "users/x", 0x87, "rule 1 forbids publishing to users/x"},
		{"client id with a slash", slash, "devices/dev/1/config", 0x87, "rule 1 forbids publishing to devices/dev/1/config"},
		{"no user name", anon, "users//admin", 0x87, "rule 1 forbids publishing to users//admin"},
		{"outside the deny rule", slash, "open/x", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.c.Publish(ctx(t), &paho.Publish{Topic: tc.topic, QoS: 1, Payload: []byte("v")})
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.ReasonCode != tc.code || (tc.reason != "" && resp.Properties.ReasonString != tc.reason) {
				t.Fatalf("got %#x %q, want %#x %q\n%s", resp.ReasonCode, resp.Properties.ReasonString, tc.code, tc.reason, testLogs(t, h))
			}
		})
	}
	ack, err := anon.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "users/+/admin", QoS: 0}, {Topic: "users//admin", QoS: 0}, {Topic: "open/#", QoS: 0}}})
	if ack == nil {
		t.Fatal(err)
	}
	if want := []byte{0x87, 0x87, 0}; string(ack.Reasons) != string(want) {
		t.Fatalf("SUBACK %x, want %x", ack.Reasons, want)
	}
}

// TestMQTTSDKCTopicACLDenyOverlaps: a deny rule refuses a SUBSCRIBE
// whose filter overlaps its topic (some topic matches both), though an
// allow rule after it covers the filter: "#" and "+/plans" would receive
// secret/plans. Filters apart from the deny rule's topic are granted, and
// a $share/<group>/ prefix is looked through.
func TestMQTTSDKCTopicACLDenyOverlaps(t *testing.T) {
	wasm := buildCExample(t, "c-topic-acl")
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, ext, "c-topic-acl", wasm, 50, `abi: "1.2"
config:
  default: deny
  rules:
    - decision: deny
      topics: ["secret/#"]
    - access: subscribe
      topics: ["#"]
`)
	addr, h := startBroker(t, ext)
	c, _, err := v5(t, addr, "reader", "u", "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	filters := []string{"#", "+/plans", "+/+", "$share/g/#", "secret/x", "public/#", "+/news/x", "public/+"}
	want := []byte{0x87, 0x87, 0x87, 0x87, 0x87, 0, 0x87, 0}
	var subs []paho.SubscribeOptions
	for _, f := range filters {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 0})
	}
	ack, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: subs})
	if ack == nil {
		t.Fatal(err)
	}
	if string(ack.Reasons) != string(want) {
		t.Fatalf("SUBACK %x for %q, want %x\n%s", ack.Reasons, filters, want, testLogs(t, h))
	}
}

// buildASExample compiles sdk/assemblyscript/examples/<id>/index.ts.
func buildASExample(t *testing.T, id string) string {
	t.Helper()
	return buildAS(t, "as/"+id, filepath.Join("examples", id, "index.ts"))
}

// buildAS compiles an AssemblyScript entry file (relative to
// sdk/assemblyscript) with the compiler npm ci installed there, once per
// test run.
func buildAS(t *testing.T, key, entry string) string {
	t.Helper()
	out, ok := sdkBuilt(t, key)
	if ok {
		return out
	}
	sdk := filepath.Join("..", "sdk", "assemblyscript")
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("skipped the AssemblyScript SDK: node not found (install nodejs, then npm ci in sdk/assemblyscript)")
	}
	if _, err := os.Stat(filepath.Join(sdk, "node_modules", ".bin", "asc")); err != nil {
		t.Skip("skipped the AssemblyScript SDK: sdk/assemblyscript/node_modules/.bin/asc not found (run npm ci in sdk/assemblyscript)")
	}
	cmd := exec.Command(filepath.Join("node_modules", ".bin", "asc"), entry, "--target", "release", "-o", out)
	cmd.Dir = sdk
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", key, err, b)
	}
	sdkDone(key, out)
	return out
}

// v5Props connects an MQTT 5 client sending user properties in its CONNECT.
func v5Props(t *testing.T, addr, id string, props paho.UserProperties) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ack, err := c.Connect(ctx(t), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, Properties: &paho.ConnectProperties{User: props}})
	return c, ack, err
}

// TestMQTTSDKASPropertyAuth: the AssemblyScript SDK's authenticator lets
// in MQTT 5 clients presenting a configured key, confined to their
// tenant's topics, and refuses the others.
func TestMQTTSDKASPropertyAuth(t *testing.T) {
	wasm := buildASExample(t, "as-property-auth")
	ext := t.TempDir()
	installSDKExample(t, ext, filepath.Join("..", "sdk", "assemblyscript", "examples", "as-property-auth"), "as-property-auth", wasm)
	addr, h := startBroker(t, ext)
	if !strings.Contains(testLogs(t, h).String(), "as-property-auth 1.0.0: 2 keys, property api-key, without it: deny") {
		t.Fatalf("no start-up line in the log:\n%s", testLogs(t, h).String())
	}
	// asconfig.json exports the start function as _initialize: no start
	// section, so the module runs with the host's interrupt check.
	if s := testLogs(t, h).String(); strings.Contains(s, "cannot add the interrupt check") {
		t.Fatalf("the AssemblyScript module was not instrumented:\n%s", s)
	}
	key := func(v string) paho.UserProperties {
		return paho.UserProperties{{Key: "site", Value: "x"}, {Key: "api-key", Value: v}}
	}

	acme, ack, err := v5Props(t, addr, "acme-1", key("9f2c4e7a1b6d3f80"))
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("acme key: %+v %v", ack, err)
	}
	if got := ack.Properties.User.Get("tenant"); got != "acme" {
		t.Fatalf("CONNACK tenant %q, want acme", got)
	}
	if resp, err := acme.Publish(ctx(t), &paho.Publish{Topic: "tenants/acme/t", QoS: 1, Payload: []byte("1")}); resp == nil || resp.ReasonCode != 0 {
		t.Fatalf("own tenant: %+v %v", resp, err)
	}
	if resp, _ := acme.Publish(ctx(t), &paho.Publish{Topic: "tenants/globex/t", QoS: 1, Payload: []byte("1")}); resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("other tenant: %+v", resp)
	}

	globex, ack, err := v5Props(t, addr, "globex-1", key("5e8a0c3d7f1b2a94"))
	if err != nil || ack.ReasonCode != 0 || ack.Properties.User.Get("tenant") != "globex" {
		t.Fatalf("globex key: %+v %v", ack, err)
	}
	if resp, _ := globex.Publish(ctx(t), &paho.Publish{Topic: "tenants/globex/t", QoS: 1, Payload: []byte("1")}); resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("read-only key published: %+v", resp)
	}
	sack, err := globex.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tenants/globex/#", QoS: 1}, {Topic: "tenants/#", QoS: 1}}})
	if sack == nil || string(sack.Reasons) != string([]byte{1, 0x87}) {
		t.Fatalf("SUBACK %+v %v", sack, err)
	}

	for _, tc := range []struct {
		name   string
		props  paho.UserProperties
		code   byte
		reason string
	}{
		{"unknown key", key("0000000000000000"), 0x86, "unknown api-key"},
		{"a key's prefix", key("9f2c4e7a1b6d3f8"), 0x86, "unknown api-key"},
		{"no key", paho.UserProperties{{Key: "site", Value: "x"}}, 0x8c, "the api-key user property is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ack, err := v5Props(t, addr, "c-"+strings.ReplaceAll(tc.name, " ", "-"), tc.props)
			if err == nil || ack == nil || ack.ReasonCode != tc.code || ack.Properties.ReasonString != tc.reason {
				t.Fatalf("got %+v %v, want %#x %q", ack, err, tc.code, tc.reason)
			}
		})
	}
	// MQTT 3.1.1 has no user properties: without_key deny refuses it (0x8C
	// becomes return code 5).
	if rc := v3ReturnCode(addr, "v3", "u", "p"); rc != 5 {
		t.Fatalf("3.1.1 client: return code %d, want 5", rc)
	}
}

// TestMQTTSDKASPropertyAuthBigConnect: a CONNECT near the broker's
// packet limit (1 MiB) with a huge api-key gets the example's answer (an
// unknown key), not a trap; and with memory too small for the record
// (limits.memory 512 KiB), propolis_buffer answers 0, so the host declines
// the record (0x80, counted as TooLarge, not as a failure) instead of the
// allocator trapping.
func TestMQTTSDKASPropertyAuthBigConnect(t *testing.T) {
	wasm := buildASExample(t, "as-property-auth")
	dir := filepath.Join("..", "sdk", "assemblyscript", "examples", "as-property-auth")
	// A property holds at most 65,535 bytes: 15 of 60,000 make a CONNECT of
	// about 900 KB.
	huge := paho.UserProperties{{Key: "api-key", Value: strings.Repeat("k", 60_000)}}
	for i := 0; i < 14; i++ {
		huge = append(huge, paho.UserProperty{Key: fmt.Sprintf("pad-%d", i), Value: strings.Repeat("p", 60_000)})
	}

	ext := t.TempDir()
	installSDKExample(t, ext, dir, "as-property-auth", wasm)
	addr, h := startBroker(t, ext)
	if _, ack, err := v5Props(t, addr, "huge", huge); err == nil || ack == nil || ack.ReasonCode != 0x86 || ack.Properties.ReasonString != "unknown api-key" {
		t.Fatalf("huge key with the shipped manifest: %+v %v\n%s", ack, err, testLogs(t, h))
	}
	if st := statusOf(t, h, "as-property-auth"); st.Errors != 0 || st.TooLarge != 0 {
		t.Fatalf("huge key: %d errors, %d too large; want none\n%s", st.Errors, st.TooLarge, testLogs(t, h))
	}

	small := t.TempDir()
	installSDKExample(t, small, dir, "as-property-auth", wasm)
	path := filepath.Join(small, "as-property-auth", ManifestFile)
	m, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(m), "memory: 32MiB") {
		t.Fatalf("manifest has no memory: 32MiB (%v)", err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(m), "memory: 32MiB", "memory: 512KiB", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, h = startBroker(t, small)
	_, ack, err := v5Props(t, addr, "huge", huge)
	if err == nil || ack == nil || ack.ReasonCode != 0x80 || ack.Properties.ReasonString != "extension as-property-auth cannot take a record this large" {
		t.Fatalf("huge key in 512 KiB: %+v %v\n%+v\n%s", ack, err, statusOf(t, h, "as-property-auth"), testLogs(t, h))
	}
	if st := statusOf(t, h, "as-property-auth"); st.Errors != 0 || st.TooLarge != 1 {
		t.Fatalf("huge key in 512 KiB: %d errors, %d too large; want 0 and 1\n%s", st.Errors, st.TooLarge, testLogs(t, h))
	}
	// The instance goes on answering.
	if _, ack, err := v5Props(t, addr, "acme", paho.UserProperties{{Key: "api-key", Value: "9f2c4e7a1b6d3f80"}}); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("acme key after: %+v %v", ack, err)
	}
}

// TestSDKExamplesRefuseBadConfig: each SDK example refuses to start on a
// bad config, with a reason naming the key.
func TestSDKExamplesRefuseBadConfig(t *testing.T) {
	for _, tc := range []struct {
		lang, id, dir string
		build         func(*testing.T, string) string
		from, to      string
		reason        string
	}{
		{"c", "c-topic-acl", filepath.Join("..", "sdk", "c", "examples", "c-topic-acl"), buildCExample,
			"max_qos: 1", "max_qos: 3", "refused to start: c-topic-acl: config rules[3].max_qos must be 0, 1 or 2"},
		{"c", "c-topic-acl", filepath.Join("..", "sdk", "c", "examples", "c-topic-acl"), buildCExample,
			"access: publish", "acess: publish", "refused to start: c-topic-acl: config rules[3] has the unknown key acess"},
		{"as", "as-property-auth", filepath.Join("..", "sdk", "assemblyscript", "examples", "as-property-auth"), buildASExample,
			"key: 5e8a0c3d7f1b2a94", "key: short", "refused to start: as-property-auth: config keys[2].key is shorter than 16 characters"},
		{"as", "as-property-auth", filepath.Join("..", "sdk", "assemblyscript", "examples", "as-property-auth"), buildASExample,
			"without_key: deny", "without_key: maybe", "refused to start: as-property-auth: config without_key must be next or deny"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			wasm := tc.build(t, tc.id)
			ext := t.TempDir()
			installSDKExample(t, ext, tc.dir, tc.id, wasm)
			path := filepath.Join(ext, tc.id, ManifestFile)
			m, err := os.ReadFile(path)
			if err != nil || !strings.Contains(string(m), tc.from) {
				t.Fatalf("manifest has no %q (%v)", tc.from, err)
			}
			if err := os.WriteFile(path, []byte(strings.Replace(string(m), tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			h, _ := newTestHost(t, ext)
			if st := statusOf(t, h, tc.id); st.State != StateFailed || st.Reason != tc.reason {
				t.Fatalf("state %s, reason %q; want failed with %q", st.State, st.Reason, tc.reason)
			}
		})
	}
}

// TestMQTTSDKCInterceptors: the C SDK's interceptor, event, tick and stop
// macros (sdk/c/test/interceptors.c) change real clients' packets.
func TestMQTTSDKCInterceptors(t *testing.T) {
	driveSDKInterceptors(t, buildC(t, "c/interceptors", filepath.Join("..", "sdk", "c", "test", "interceptors.c")), "c-sdk", "the C SDK test")
}

// TestMQTTSDKASInterceptors: the same with the AssemblyScript SDK
// (sdk/assemblyscript/test/interceptors.ts).
func TestMQTTSDKASInterceptors(t *testing.T) {
	driveSDKInterceptors(t, buildAS(t, "as/interceptors", filepath.Join("test", "interceptors.ts")), "as-sdk", "the AssemblyScript SDK test")
}

// driveSDKInterceptors runs the SDKs' interceptor test extension, which
// tags what it does with name and refuses a payload with "payload refused
// by " + who.
func driveSDKInterceptors(t *testing.T, wasm, name, who string) {
	ext := t.TempDir()
	installExtension(t, ext, name, wasm, 0, "tick: 100ms\n")
	addr, h := startBroker(t, ext)
	logs := testLogs(t, h)

	type msg struct {
		topic string
		props map[string]string
	}
	got := make(chan msg, 4)
	sub, ack, err := v5(t, addr, "sub", "", "", func(p paho.PublishReceived) {
		m := msg{p.Packet.Topic, map[string]string{}}
		for _, u := range p.Packet.Properties.User {
			m.props[u.Key] = u.Value
		}
		got <- m
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := ack.Properties.User.Get("via"); v != name {
		t.Fatalf("CONNACK via = %q, want %s", v, name)
	}
	sack, err := sub.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "modern/#", QoS: 2}}})
	if sack == nil || len(sack.Reasons) != 1 || sack.Reasons[0] != 1 {
		t.Fatalf("SUBACK %+v %v, want QoS capped at 1", sack, err)
	}
	pub, _, err := v5(t, addr, "pub", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pub.Publish(ctx(t), &paho.Publish{Topic: "legacy/a", QoS: 1, Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	if err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish: %+v %v", resp, err)
	}
	select {
	case m := <-got:
		if m.topic != "modern/a" || m.props["k"] != "v" || m.props["moved"] != "yes" || m.props["seen-by"] != "sub" {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("the moved message did not arrive")
	}
	resp, _ = pub.Publish(ctx(t), &paho.Publish{Topic: "legacy/b", QoS: 1, Payload: []byte("drop")})
	if resp == nil || resp.ReasonCode != 0x99 || resp.Properties.ReasonString != "payload refused by "+who {
		t.Fatalf("refused publish: %+v", resp)
	}
	if _, ack, err := v5(t, addr, "deny-me", "", "", nil); err == nil || ack == nil || ack.ReasonCode != 0x87 || ack.Properties.ReasonString != name+" test says no" {
		t.Fatalf("deny-me: %+v %v", ack, err)
	}
	poll.Until(t, "the event and tick lines", func() bool {
		s := logs.String()
		return strings.Contains(s, name+" event auth_succeeded client sub") && strings.Contains(s, name+" event auth_failed client deny-me") &&
			strings.Contains(s, name+" tick")
	})
	select {
	case m := <-got:
		t.Fatalf("the refused publish arrived: %+v", m)
	default:
	}
}
