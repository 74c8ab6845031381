package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// wasmFixture is the path of a committed WAT-built module.
func wasmFixture(name string) string {
	return filepath.Join("..", "testdata", "wasm", name+".wasm")
}

// installExtension creates extensions/<id>/ with a manifest and a copy of
// the module at wasmPath. extra is appended to the manifest.
func installExtension(t testing.TB, extDir, id, wasmPath string, priority int, extra string) string {
	t.Helper()
	dir := filepath.Join(extDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ext.wasm"), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := fmt.Sprintf("id: %s\nname: %s\nversion: 1.0.0\npriority: %d\nmodule: ext.wasm\n%s", id, id, priority, extra)
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// logBuffer captures log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newTestHost loads extDir and closes the host when the test ends.
func newTestHost(t testing.TB, extDir string) (*Host, *logBuffer) {
	t.Helper()
	return newTestHostWith(t, extDir, Options{})
}

// newTestHostWith is newTestHost with opts: its directory, cache, version
// and logger are set here, the rest (service caps, ...) taken from opts.
func newTestHostWith(t testing.TB, extDir string, opts Options) (*Host, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	var w io.Writer = logs
	opts.Dir, opts.CacheDir, opts.BrokerVersion = extDir, filepath.Join(os.TempDir(), "propolis-test-wasm-cache"), "test"
	opts.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	hostLogs.Store(h, logs)
	return h, logs
}

// hostLogs maps each test host to its captured log.
var hostLogs sync.Map

// testLogs returns the captured log of a host made by newTestHost.
func testLogs(t testing.TB, h *Host) *logBuffer {
	t.Helper()
	v, ok := hostLogs.Load(h)
	if !ok {
		t.Fatal("host not made by newTestHost")
	}
	return v.(*logBuffer)
}

func statusOf(t testing.TB, h *Host, id string) Status {
	t.Helper()
	for _, s := range h.Status() {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no status for %q in %+v", id, h.Status())
	return Status{}
}

func connect(user, pass string) *broker.Connect {
	return &broker.Connect{ClientID: "c1", Username: user, Password: []byte(pass), ProtocolVersion: 5, Listener: "tcp", RemoteAddr: "127.0.0.1:1"}
}

// TestWATExtension: a module written from ABI.md alone, with no SDK, works.
func TestWATExtension(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	h, _ := newTestHost(t, ext)
	if got := h.SecurityExtensions(); len(got) != 1 || got[0] != "wat-auth" {
		t.Fatalf("SecurityExtensions = %v", got)
	}
	res := h.Authenticate(context.Background(), connect("wat", "secret"))
	if res.Decision != broker.Allow || res.Client == nil {
		t.Fatalf("wat/secret: %+v", res)
	}
	if res.Settings.SessionExpiry == nil || *res.Settings.SessionExpiry != 120 {
		t.Fatalf("session expiry = %v", res.Settings.SessionExpiry)
	}
	if len(res.ConnackUserProperties) != 1 || res.ConnackUserProperties[0] != (broker.UserProperty{Key: "via", Value: "wat"}) {
		t.Fatalf("connack properties = %+v", res.ConnackUserProperties)
	}
	deny := h.Authenticate(context.Background(), connect("wat", "wrong"))
	if deny.Decision != broker.Deny || deny.ReasonCode != 0x86 || deny.ReasonString != "bad user name or password" {
		t.Fatalf("wat/wrong: %+v", deny)
	}
	for _, tc := range []struct {
		topic string
		want  broker.Verdict
	}{
		{"readonly/x", broker.Verdict{Decision: broker.Deny, ReasonCode: 0x87, ReasonString: "topic is read-only"}},
		{"kick", broker.Verdict{Decision: broker.Disconnect, ReasonCode: 0x98}},
		{"anything/else", broker.Verdict{Decision: broker.Allow}},
	} {
		if got := res.Client.AuthorizePublish(&broker.Publish{Topic: tc.topic, QoS: 1, Payload: []byte("p")}); got != tc.want {
			t.Errorf("publish %q: %+v, want %+v", tc.topic, got, tc.want)
		}
	}
}

// TestLoadRefusesBadModules: each module the ABI check must refuse is marked
// failed with an error naming the function, and the rest keep running.
func TestLoadRefusesBadModules(t *testing.T) {
	ext := t.TempDir()
	cases := map[string]string{
		"no-marker":      "export propolis_abi_v1: missing",
		"bad-import":     "import propolis_v1.add_permission: got (i32)->i32, want (i32,i32)->i32",
		"unknown-import": "import propolis_v1.teleport: no such host function",
		"future-minor":   "module is built for ABI 1.7, this broker runs up to " + abi.Version,
		"bad-export":     "export propolis_authenticate: got (i32,i32)->i32, want (i32)->i32",
		"refuse-start":   "refused to start: missing license key",
		"start-trap":     "propolis_start",
		"bad-buffer":     "propolis_buffer(4096) returned 0x7ffffff0, outside memory",
	}
	for id := range cases {
		installExtension(t, ext, id, wasmFixture("error/"+strings.ReplaceAll(id, "-", "_")), 0, "")
	}
	// A manifest that asks for a newer ABI than the module's marker says
	// it was built for (wat_auth answers 0).
	cases["manifest-newer"] = `module is built for ABI 1.0, older than the manifest's abi "1.4": rebuild the module against a 1.4 SDK, or lower abi to "1.0"`
	installExtension(t, ext, "manifest-newer", wasmFixture("ok/wat_auth"), 0, "abi: \"1.4\"\n")
	installExtension(t, ext, "good", wasmFixture("ok/wat_auth"), 0, "")
	h, _ := newTestHost(t, ext)
	for id, want := range cases {
		t.Run(id, func(t *testing.T) {
			st := statusOf(t, h, id)
			if st.State != StateFailed || !strings.Contains(st.Reason, want) {
				t.Fatalf("state %s, reason %q; want failed with %q", st.State, st.Reason, want)
			}
		})
	}
	if st := statusOf(t, h, "good"); st.State != StateRunning {
		t.Fatalf("good extension: %+v", st)
	}
	if got := h.SecurityExtensions(); len(got) != 1 || got[0] != "good" {
		t.Fatalf("SecurityExtensions = %v, want only good", got)
	}
}

// TestMisbehavingExtensionsFailClosed: a trap, a runaway loop, a memory
// hog and garbage answers all deny, the host keeps serving,
// and a crash loop stops the extension.
func TestMisbehavingExtensionsFailClosed(t *testing.T) {
	// cause is what the log must show: the memory hog must be stopped by
	// the memory limit (a trap), not by its generous deadline.
	for _, tc := range []struct {
		name, fixture, manifest, cause string
	}{
		{"trap", "error/trap", "", "unreachable"},
		{"spin", "error/spin", "limits:\n  authenticate_deadline: 50ms\n", "call deadline exceeded"},
		{"memory hog", "error/memory_hog", "limits:\n  memory: 2MiB\n  call_deadline: 5s\n", "unreachable"},
		{"garbage", "error/garbage", "", "invalid answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext := t.TempDir()
			installExtension(t, ext, "bad", wasmFixture(tc.fixture), 0, tc.manifest+"\n")
			h, logs := newTestHost(t, ext)
			if st := statusOf(t, h, "bad"); st.State != StateRunning {
				t.Fatalf("not running: %+v", st)
			}
			for i := 0; i < crashLoopFailures; i++ {
				start := time.Now()
				res := h.Authenticate(context.Background(), connect("u", "p"))
				if res.Decision != broker.Deny || res.ReasonCode != 0x80 {
					t.Fatalf("call %d: %+v, want deny 0x80", i, res)
				}
				t.Logf("call %d denied after %v", i, time.Since(start).Round(time.Millisecond))
			}
			st := statusOf(t, h, "bad")
			if st.State != StateFailed || !strings.Contains(st.Reason, "crash loop") {
				t.Fatalf("after %d failures: %+v", crashLoopFailures, st)
			}
			if !strings.Contains(logs.String(), "extension call failed") || !strings.Contains(logs.String(), tc.cause) {
				t.Fatalf("failures not logged with %q:\n%s", tc.cause, logs.String())
			}
			if tc.cause != "call deadline exceeded" && strings.Contains(logs.String(), "call deadline exceeded") {
				t.Fatalf("stopped by the deadline, not by %q", tc.cause)
			}
			// Stopped, it still fails closed until the operator acts.
			if res := h.Authenticate(context.Background(), connect("u", "p")); res.Decision != broker.Deny || res.ReasonCode != 0x80 {
				t.Fatalf("after stop: %+v", res)
			}
		})
	}
}

// TestChainPriority: the higher priority decides; ties go by id.
func TestChainPriority(t *testing.T) {
	for _, tc := range []struct {
		name             string
		watPrio, minPrio int
		want             broker.Decision
	}{
		{"wat first", 10, 5, broker.Allow},
		{"minimal first", 5, 10, broker.Deny},
		{"tie: ids decide (minimal < wat-auth)", 5, 5, broker.Deny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext := t.TempDir()
			installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), tc.watPrio, "")
			installExtension(t, ext, "minimal", wasmFixture("ok/minimal"), tc.minPrio, "")
			h, _ := newTestHost(t, ext)
			if got := h.Authenticate(context.Background(), connect("wat", "secret")).Decision; got != tc.want {
				t.Fatalf("decision %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEventsAreDelivered: on_event receives lifecycle events asynchronously
// and guest log lines reach the broker log tagged with the extension.
func TestEventsAreDelivered(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "events", wasmFixture("ok/events"), 0, "")
	h, logs := newTestHost(t, ext)
	for _, k := range []broker.EventKind{broker.EventConnectionStart, broker.EventAuthSucceeded, broker.EventDisconnect} {
		h.OnEvent(&broker.Event{Kind: k, Time: time.Now(), ClientID: "c1", Disconnect: broker.DisconnectLost})
	}
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	}()
	poll.Until(t, `"event 4" in the log`, func() bool { return strings.Contains(logs.String(), "event 4") })
	for _, want := range []string{"event 1", "event 2", "extension=events"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestWasmFeatures: a module using the WebAssembly 2.0 core features
// (multi-value, bulk memory, SIMD, ...) loads and works; one using a
// feature the host does not enable (threads, tail calls) is refused at
// load, the error naming the module, the feature and what is supported.
func TestWasmFeatures(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "features", wasmFixture("ok/features"), 0, "")
	installExtension(t, ext, "threads", wasmFixture("error/threads"), 0, "")
	installExtension(t, ext, "tail-call", wasmFixture("error/tail_call"), 0, "")
	h, logs := newTestHost(t, ext)
	if st := statusOf(t, h, "features"); st.State != StateRunning {
		t.Fatalf("features: %+v", st)
	}
	if res := h.Authenticate(context.Background(), connect("u", "p")); res.Decision != broker.Allow {
		t.Fatalf("features extension: %+v, want allow (every feature behaved)", res)
	}
	const supported = " (Propolis runs the WebAssembly 2.0 core features: multi-value, bulk memory, reference types, SIMD, " +
		"sign extension, non-trapping conversions; not threads, tail calls, exceptions, memory64 or GC: see abi/ABI.md section 2)"
	for id, want := range map[string]string{
		"threads":   "compile ext.wasm: section memory: shared memory requested but threads feature not enabled" + supported,
		"tail-call": `compile ext.wasm: invalid function[3] export["propolis_authenticate"]: return_call invalid as feature "tail-call" is disabled` + supported,
	} {
		if st := statusOf(t, h, id); st.State != StateFailed || st.Reason != want {
			t.Errorf("%s: state %s, reason\n%s\nwant\n%s", id, st.State, st.Reason, want)
		}
		if !strings.Contains(logs.String(), "extension="+id) {
			t.Errorf("the log does not name extension %s", id)
		}
	}
	// inspect (extensions list without a broker) says the same.
	sts, err := inspect(context.Background(), ext, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.ID == "threads" && !strings.Contains(st.Reason, "threads feature not enabled (Propolis runs") {
			t.Errorf("inspect: %+v", st)
		}
	}
}

// TestInspectFailedStartNoCallbacks: `extensions list` without a broker
// shows no callbacks for an extension whose start failed, as a running
// broker does (it calls none); the module's exports would mislead, an
// SDK-built module exporting every callback.
func TestInspectFailedStartNoCallbacks(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "refuses", wasmFixture("error/refuse_start"), 0, "")
	sts, err := inspect(context.Background(), ext, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 || sts[0].State != StateFailed || !strings.Contains(sts[0].Reason, "missing license key") || sts[0].Callbacks != nil {
		t.Fatalf("inspect: %+v, want failed (missing license key) with no callbacks", sts)
	}
}

// TestSameDeclarationClients: a later instance's start declaring other
// client patterns (add_intercept_client) than instance 0's is a different
// declaration, as for topic filters.
func TestSameDeclarationClients(t *testing.T) {
	e := &extension{declared: declaration{declared: true, mask: 0x100, interceptClients: []string{"app-*"}}}
	for _, tt := range []struct {
		name    string
		clients []string
		same    bool
	}{
		{"same", []string{"app-*"}, true},
		{"none", nil, false},
		{"other", []string{"dev-*"}, false},
		{"more", []string{"app-*", "ops"}, false},
	} {
		o := &callOut{declared: true, mask: 0x100, interceptClients: tt.clients}
		if got := e.sameDeclaration(o); got != tt.same {
			t.Errorf("%s: sameDeclaration = %v, want %v", tt.name, got, tt.same)
		}
	}
}

// TestStartInstanceIndex: each instance's START record carries its index
// (ABI 1.1): 0, 1, 2 for a pool of three, 3 for the replacement of a
// discarded one. Only instance 0's declare_callbacks counts; the later
// instances' different declarations are logged and ignored.
func TestStartInstanceIndex(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "idx", wasmFixture("ok/instance_index"), 0, "limits:\n  pool_size: 3\n")
	h, logs := newTestHost(t, ext)
	for _, want := range []string{"msg=\"instance 0\"", "msg=\"instance 1\"", "msg=\"instance 2\""} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Fatalf("%s logged %d times, want once:\n%s", want, n, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "declared other callbacks, filters or client patterns than instance 0's; ignored"); n != 2 {
		t.Fatalf("%d warnings about later declarations, want 2 (instances 1 and 2):\n%s", n, logs.String())
	}
	if st := statusOf(t, h, "idx"); len(st.Callbacks) != 1 || st.Callbacks[0] != "authenticate" {
		t.Fatalf("callbacks %v, want instance 0's [authenticate]", st.Callbacks)
	}
	res := h.Authenticate(context.Background(), connect("u", "p"))
	if res.Decision != broker.Allow {
		t.Fatalf("authenticate: %+v", res)
	}
	// authorize_publish (declared only by later instances) is never called:
	// it would deny.
	if v := res.Client.AuthorizePublish(&broker.Publish{Topic: "t", QoS: 1}); v.Decision != broker.Allow {
		t.Fatalf("publish: %+v, want allowed by the (empty) permissions", v)
	}
	// An invalid answer discards an instance; its replacement is instance 3.
	if res := h.Authenticate(context.Background(), connect(strings.Repeat("u", 300), "p")); res.Decision != broker.Deny || res.ReasonCode != 0x80 {
		t.Fatalf("long CONNECT: %+v, want deny 0x80 (invalid answer)", res)
	}
	poll.Until(t, "replacement logs instance 3", func() bool { return strings.Contains(logs.String(), "msg=\"instance 3\"") })
}

// TestSetOverloadThrottling: set_overload_throttling (ABI 1.3) refuses a
// value other than 0 or 1, and 0 exempts the allowed client from the
// broker's overload throttling (ClientSettings.NoThrottling); an
// authenticator that does not call it leaves the setting off.
func TestSetOverloadThrottling(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "no-throttling", wasmFixture("ok/no_throttling"), 0, "")
	h, _ := newTestHost(t, ext)
	res := h.Authenticate(context.Background(), connect("any", "thing"))
	if res.Decision != broker.Allow {
		t.Fatalf("authenticate: %+v (0x80: set_overload_throttling(2) was not INVALID_ARGUMENT)", res)
	}
	if !res.Settings.NoThrottling {
		t.Error("Settings.NoThrottling false after set_overload_throttling(0)")
	}

	other := t.TempDir()
	installExtension(t, other, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	h2, _ := newTestHost(t, other)
	if res := h2.Authenticate(context.Background(), connect("wat", "secret")); res.Decision != broker.Allow || res.Settings.NoThrottling {
		t.Errorf("an authenticator without set_overload_throttling: %+v", res)
	}
}
