package host

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The drop-in folder at runtime: extensions appear, are disabled, enabled,
// replaced and broken while the broker serves real clients.

// dropIn writes an extension folder the way an operator would copy it:
// module first, manifest last.
func dropIn(t *testing.T, extDir, folder, wasm, manifest string) {
	t.Helper()
	dir := filepath.Join(extDir, folder)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if wasm != "" {
		bin, err := os.ReadFile(wasm)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ext.wasm"), bin, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
}

// connectCode returns the CONNACK reason of an MQTT 5 CONNECT (0 accepted).
func connectCode(t *testing.T, addr, id, user string) byte {
	t.Helper()
	c, ack, err := v5(t, addr, id, user, "x", nil)
	if ack == nil {
		t.Fatalf("connect %s: no CONNACK: %v", id, err)
	}
	if err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	return ack.ReasonCode
}

// startWatchedBroker is startBroker plus Watch.
func startWatchedBroker(t *testing.T, extDir string) (string, *Host) {
	addr, h := startBroker(t, extDir)
	h.Watch()
	return addr, h
}

func TestDropInDisableEnable(t *testing.T) {
	ext := t.TempDir()
	addr, h := startWatchedBroker(t, ext)
	if code := connectCode(t, addr, "c", ""); code != 0x87 {
		t.Fatalf("before any extension: %#x, want 0x87", code)
	}
	dropIn(t, ext, "allow-all", example(t, "allow-all"), "id: allow-all\nversion: 1.0.0\nmodule: ext.wasm\n")
	poll.Until(t, "client accepted after drop-in", func() bool { return connectCode(t, addr, "c", "") == 0 })

	marker := filepath.Join(ext, "allow-all", DisabledFile)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "client refused after DISABLED", func() bool { return connectCode(t, addr, "c", "") == 0x87 })
	// The extension leaves the chain first, then its stop callbacks run,
	// then its status says disabled.
	poll.Until(t, "status disabled", func() bool { return statusOf(t, h, "allow-all").State == StateDisabled })
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "client accepted after enable", func() bool { return connectCode(t, addr, "c", "") == 0 })

	if err := os.RemoveAll(filepath.Join(ext, "allow-all")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "client refused after removal", func() bool { return connectCode(t, addr, "c", "") == 0x87 })
}

// TestReloadUnderConnectStream replaces both extensions of a chain while
// clients keep connecting: alice (allowed by allow-all) must never be
// refused, mallory (refused by banlist, in front) never allowed.
func TestReloadUnderConnectStream(t *testing.T) {
	ext := t.TempDir()
	banlist, allowAll := example(t, "banlist"), example(t, "allow-all")
	dropIn(t, ext, "banlist", banlist, "id: banlist\nversion: 1.0.0\npriority: 1000\nmodule: ext.wasm\nconfig:\n  users: [mallory]\n")
	dropIn(t, ext, "allow-all", allowAll, "id: allow-all\nversion: 1.0.0\nmodule: ext.wasm\n")
	addr, h := startWatchedBroker(t, ext)

	var wrong atomic.Int64
	var total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// The stream runs until the test ends, failed or not: it is bounded by
	// poll.Timeout through the waits below.
	defer func() { close(stop); wg.Wait() }()
	for _, who := range []struct {
		user string
		want byte
	}{{"alice", 0}, {"mallory", 0x8A}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code := connectCode(t, addr, who.user, who.user); code != who.want {
					wrong.Add(1)
					t.Errorf("%s got %#x during reload, want %#x", who.user, code, who.want)
				}
				total.Add(1)
				time.Sleep(5 * time.Millisecond) // load pacing: a steady stream, not a flood
			}
		}()
	}
	poll.Until(t, "50 connects before the reload", func() bool { return total.Load() >= 50 })
	dropIn(t, ext, "banlist", banlist, "id: banlist\nversion: 1.0.1\npriority: 1000\nmodule: ext.wasm\nconfig:\n  users: [mallory]\n")
	dropIn(t, ext, "allow-all", allowAll, "id: allow-all\nversion: 1.0.1\nmodule: ext.wasm\n")
	poll.Until(t, "both reloaded", func() bool {
		return statusOf(t, h, "banlist").Version == "1.0.1" && statusOf(t, h, "allow-all").Version == "1.0.1"
	})
	reloaded := total.Load()
	poll.Until(t, "50 connects after the reload", func() bool { return total.Load() >= reloaded+50 })
	t.Logf("%d connects around the reload, %d wrong", total.Load(), wrong.Load())
}

// TestBadFoldersLeaveBrokerServing: every kind of bad drop-in is marked
// failed with its reason while the broker keeps serving.
func TestBadFoldersLeaveBrokerServing(t *testing.T) {
	ext := t.TempDir()
	dropIn(t, ext, "allow-all", example(t, "allow-all"), "id: allow-all\nversion: 1.0.0\nmodule: ext.wasm\n")
	addr, h := startWatchedBroker(t, ext)
	garbage := filepath.Join(t.TempDir(), "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("\x00asm\x01\x00\x00\x00not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, folder, wasm, manifest, reason string
	}{
		{"bad manifest", "bad-manifest", wasmFixture("ok/minimal"), "id: bad-manifest\nversion: 1.0.0\nmodule: ext.wasm\nprioritty: 3\n",
			"propolis-extension.yaml:4:1: prioritty: unknown key (allowed: id, name"},
		{"missing module", "no-module", "", "id: no-module\nversion: 1.0.0\nmodule: ext.wasm\n", "read module"},
		{"invalid module", "invalid", garbage, "id: invalid\nversion: 1.0.0\nmodule: ext.wasm\n", "compile ext.wasm"},
		{"unsupported ABI", "old-abi", wasmFixture("error/unknown_import"), "id: old-abi\nversion: 1.0.0\nmodule: ext.wasm\n",
			"import propolis_v1.teleport: no such host function"},
		{"duplicate id", "copy-of-allow-all", wasmFixture("ok/minimal"), "id: allow-all\nversion: 2.0.0\nmodule: ext.wasm\n",
			`duplicate id "allow-all"`},
		{"folder name differs", "folder-x", wasmFixture("ok/minimal"), "id: id-y\nversion: 1.0.0\nmodule: ext.wasm\n",
			`id: "id-y" differs from its folder name "folder-x"`},
		{"refuses to start", "refuser", wasmFixture("error/refuse_start"), "id: refuser\nversion: 1.0.0\nmodule: ext.wasm\n",
			"refused to start: missing license key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dropIn(t, ext, tc.folder, tc.wasm, tc.manifest)
			poll.Until(t, "marked failed", func() bool {
				for _, s := range h.Status() {
					if s.ID == tc.folder || (s.State == StateFailed && strings.Contains(s.Reason, tc.reason)) {
						return s.State == StateFailed
					}
				}
				return false
			})
			var reason string
			for _, s := range h.Status() {
				if s.State == StateFailed && strings.Contains(s.Reason, tc.reason) {
					reason = s.Reason
				}
			}
			if reason == "" {
				t.Fatalf("no failed status with %q in %+v", tc.reason, h.Status())
			}
			if code := connectCode(t, addr, "still-served", ""); code != 0 {
				t.Fatalf("broker stopped serving: %#x", code)
			}
		})
	}
	// A broken replacement of a running extension: the old version keeps
	// serving and the failure is reported.
	dropIn(t, ext, "allow-all", garbage, "id: allow-all\nversion: 9.9.9\nmodule: ext.wasm\n")
	poll.Until(t, "reload failure reported", func() bool {
		return strings.HasPrefix(statusOf(t, h, "allow-all").Reason, "reload failed")
	})
	if st := statusOf(t, h, "allow-all"); st.State != StateRunning || st.Version != "1.0.0" {
		t.Fatalf("after a broken reload: %+v, want 1.0.0 still running", st)
	}
	if code := connectCode(t, addr, "still-served", ""); code != 0 {
		t.Fatalf("old version stopped serving: %#x", code)
	}
}

// TestSpinningStartAndStopAreBounded: a start callback that never returns
// fails its extension without holding up the others; a stop callback that
// never returns does not hold up disabling.
func TestSpinningStartAndStopAreBounded(t *testing.T) {
	ext := t.TempDir()
	dropIn(t, ext, "start-spin", wasmFixture("error/start_spin"), "id: start-spin\nversion: 1.0.0\nmodule: ext.wasm\nlimits:\n  call_deadline: 10ms\n")
	dropIn(t, ext, "stop-spin", wasmFixture("error/stop_spin"), "id: stop-spin\nversion: 1.0.0\nmodule: ext.wasm\nlimits:\n  call_deadline: 10ms\n  pool_size: 1\n")
	began := time.Now()
	addr, h := startWatchedBroker(t, ext)
	t.Logf("loaded in %v", time.Since(began).Round(time.Millisecond))
	if st := statusOf(t, h, "start-spin"); st.State != StateFailed || !strings.Contains(st.Reason, "deadline") {
		t.Fatalf("start-spin: %+v", st)
	}
	if code := connectCode(t, addr, "c", ""); code != 0 {
		t.Fatalf("stop-spin should allow: %#x", code)
	}
	if err := os.WriteFile(filepath.Join(ext, "stop-spin", DisabledFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "refused after disabling an extension whose stop spins", func() bool {
		return connectCode(t, addr, "c", "") == 0x87
	})
}

// TestDisableRunsStopCallback: DISABLED takes the extension out of the
// chain, runs its stop callback on every instance, then closes them.
func TestDisableRunsStopCallback(t *testing.T) {
	ext := t.TempDir()
	dropIn(t, ext, "events", wasmFixture("ok/events"), "id: events\nversion: 1.0.0\nmodule: ext.wasm\nlimits:\n  pool_size: 2\n")
	addr, h := startWatchedBroker(t, ext)
	if err := os.WriteFile(filepath.Join(ext, "events", DisabledFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "refused after DISABLED", func() bool { return connectCode(t, addr, "c", "") == 0x87 })
	buf := testLogs(t, h)
	poll.Until(t, "stop callback ran on both instances", func() bool {
		return strings.Count(buf.String(), "msg=stopped") == 2
	})
}

// TestLastSecurityExtensionGoneIsLoud: when the last security extension
// goes away at runtime (removed, disabled, stopped after a crash loop) the
// host warns that every client is now refused, and says so when one
// serves again. A non-security extension coming and going, and the start
// itself (the broker's banner speaks then), log neither.
func TestLastSecurityExtensionGoneIsLoud(t *testing.T) {
	const gone, back = "EVERY CLIENT IS NOW REFUSED", "a security extension is serving again"
	ext := t.TempDir()
	allowAll := example(t, "allow-all")
	dropIn(t, ext, "allow-all", allowAll, "id: allow-all\nversion: 1.0.0\nmodule: ext.wasm\n")
	addr, h := startWatchedBroker(t, ext)
	logs := testLogs(t, h)
	count := func(s string) int { return strings.Count(logs.String(), s) }
	// expect waits for the n-th warning and the m-th info line.
	expect := func(what string, n, m int) {
		t.Helper()
		poll.Until(t, what, func() bool { return count(gone) == n && count(back) == m })
	}
	if count(gone)+count(back) != 0 {
		t.Fatalf("logged at start:\n%s", logs.String())
	}

	// An extension without authenticate changes nothing.
	dropIn(t, ext, "publish-guard", example(t, "publish-guard"), "id: publish-guard\nversion: 1.0.0\nmodule: ext.wasm\n")
	poll.Until(t, "publish-guard running", func() bool { return stateOf(h, "publish-guard") == StateRunning })

	// Disabled.
	if _, err := Disable(ext, "allow-all"); err != nil {
		t.Fatal(err)
	}
	expect("warning after disable", 1, 0)
	if !strings.Contains(logs.String(), `cause="allow-all disabled"`) || connectCode(t, addr, "c", "") != 0x87 {
		t.Fatalf("warning without its cause, or a client let in:\n%s", logs.String())
	}
	if _, err := Enable(ext, "allow-all"); err != nil {
		t.Fatal(err)
	}
	expect("info after enable", 1, 1)

	// Removed (publish-guard still runs, but it is no security extension).
	if err := os.RemoveAll(filepath.Join(ext, "allow-all")); err != nil {
		t.Fatal(err)
	}
	expect("warning after removal", 2, 1)
	if !strings.Contains(logs.String(), `cause="allow-all removed"`) {
		t.Fatalf("no removal cause:\n%s", logs.String())
	}

	// Back, then stopped after a crash loop: a trapping authenticator in
	// front of allow-all refuses everyone once stopped.
	dropIn(t, ext, "allow-all", allowAll, "id: allow-all\nversion: 1.0.0\nmodule: ext.wasm\n")
	expect("info after drop-in", 2, 2)
	dropIn(t, ext, "trap", wasmFixture("error/trap"), "id: trap\nversion: 1.0.0\nmodule: ext.wasm\npriority: 100\n")
	poll.Until(t, "trap running", func() bool { return stateOf(h, "trap") == StateRunning })
	if count(gone) != 2 {
		t.Fatalf("a running, failing security extension in front is not 'gone':\n%s", logs.String())
	}
	for i := 0; i < crashLoopFailures; i++ {
		if code := connectCode(t, addr, "c", ""); code != 0x80 {
			t.Fatalf("connect %d through the trapping extension: %#x, want 0x80", i, code)
		}
	}
	expect("warning after the crash-loop stop", 3, 2)
	if !strings.Contains(logs.String(), `cause="trap stopped after a crash loop"`) {
		t.Fatalf("no crash-loop cause:\n%s", logs.String())
	}
	// The host is not ready while the stopped one refuses everyone.
	if err, want := h.Ready(), `security extension "trap" stopped after a crash loop: every CONNECT is refused`; err == nil || err.Error() != want {
		t.Fatalf("Ready after the crash-loop stop = %v, want %q", err, want)
	}
	// Removing the stopped one lets allow-all serve again.
	if err := os.RemoveAll(filepath.Join(ext, "trap")); err != nil {
		t.Fatal(err)
	}
	expect("info after removing the stopped extension", 3, 3)
	if err := h.Ready(); err != nil {
		t.Fatalf("Ready with allow-all serving again = %v", err)
	}
	if code := connectCode(t, addr, "c", ""); code != 0 {
		t.Fatalf("allow-all not serving: %#x", code)
	}
}

// stateOf is the state of folder id, "" before the host has seen it.
func stateOf(h *Host, id string) State {
	for _, s := range h.Status() {
		if s.ID == id {
			return s.State
		}
	}
	return ""
}
