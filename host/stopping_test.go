package host

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// fallbackFixture writes a copy of a fixture the interrupt rewrite refuses
// (it already exports the interrupt global's name, see TestGuardFallback),
// so that the host runs it under wazero's guard.
func fallbackFixture(t *testing.T, name string) string {
	t.Helper()
	bin, err := os.ReadFile(wasmFixture(name))
	if err != nil {
		t.Fatal(err)
	}
	taken, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fallback.wasm")
	if err := os.WriteFile(path, taken, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// spinning reports whether the folder's running extension has a call in
// progress.
func spinning(h *Host, name string) bool {
	h.mu.Lock()
	e := h.exts[name]
	h.mu.Unlock()
	n := 0
	if e != nil {
		e.pool.busy(func(*instance, int64) { n++ })
	}
	return n > 0
}

// authenticateAsync runs one Authenticate and delivers its result.
func authenticateAsync(h *Host) <-chan broker.AuthResult {
	done := make(chan broker.AuthResult, 1)
	go func() { done <- h.Authenticate(context.Background(), connect("u", "p")) }()
	return done
}

// returned polls until a result arrives and returns it.
func returned[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	var v T
	poll.Until(t, what, func() bool {
		select {
		case v = <-ch:
			return true
		default:
			return false
		}
	})
	return v
}

// TestHaltedGuestStopsPromptly: a guest whose loop iterations are slow (a
// WASI sleep, each capped at the call deadline; a memory.fill of 128 MiB)
// is stopped at its deadline, not thousands of iterations later, and a
// garbage collection completes while it runs. Both with the host's
// compiled-in guard and with wazero's (a module the rewrite refuses).
// Before the halt flag was read at every loop head, the sleep loop ran
// 4096 sleeps (here 200 s) and the fill loop held up the GC for 4096
// fills.
func TestHaltedGuestStopsPromptly(t *testing.T) {
	for _, tc := range []struct{ fixture, limits string }{
		{"error/sleep_loop", "limits:\n  call_deadline: 50ms\n  pool_size: 1\n"},
		{"error/fill_loop", "limits:\n  call_deadline: 20ms\n  pool_size: 1\n  memory: 128MiB\n"},
	} {
		for _, guard := range []string{"compiled-in", "wazero"} {
			t.Run(filepath.Base(tc.fixture)+"/"+guard, func(t *testing.T) {
				path := wasmFixture(tc.fixture)
				if guard == "wazero" {
					path = fallbackFixture(t, tc.fixture)
				}
				ext := t.TempDir()
				installExtension(t, ext, "slow", path, 0, tc.limits)
				h, logs := newTestHost(t, ext)
				if fallback := strings.Contains(logs.String(), "slower deadline guard"); fallback != (guard == "wazero") {
					t.Fatalf("guard %s, fallback warning %v:\n%s", guard, fallback, logs)
				}
				done := authenticateAsync(h)
				// (or already stopped: a fast deadline may beat the poll)
				poll.Until(t, "the guest is in its call", func() bool { return spinning(h, "slow") || len(done) > 0 })
				gc := make(chan struct{}, 1)
				go func() { runtime.GC(); gc <- struct{}{} }()
				returned(t, "a garbage collection while the guest runs", gc)
				res := returned(t, "Authenticate returns", done)
				if res.Decision != broker.Deny || res.ReasonCode != 0x80 {
					t.Fatalf("answer %+v, want deny 0x80 (deadline, fail closed)", res)
				}
				if !strings.Contains(logs.String(), "call deadline exceeded") {
					t.Fatalf("no deadline in the log:\n%s", logs)
				}
			})
		}
	}
}

// TestStartSectionIsBounded: a module whose Wasm start section never
// returns is not rewritten (its start function runs before the host can
// reach the interrupt global), so wazero's guard bounds its
// instantiation: the load fails at the instantiate timeout, naming the
// extension, and the host goes on. It used to hang the load for good.
func TestStartSectionIsBounded(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "startsec", wasmFixture("error/start_section"), 0, "limits:\n  call_deadline: 10ms\n")
	installExtension(t, ext, "auth", wasmFixture("ok/wat_auth"), 0, "")
	loaded := make(chan *Host, 1)
	logs := &logBuffer{}
	go func() {
		h, _ := New(Options{Dir: ext, BrokerVersion: "test", Logger: slog.New(slog.NewTextHandler(logs, nil))})
		_ = h.LoadAll(context.Background())
		loaded <- h
	}()
	h := returned(t, "LoadAll returns", loaded)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	st := statusOf(t, h, "startsec")
	if st.State != StateFailed || !strings.Contains(st.Reason, "instantiate") {
		t.Fatalf("startsec: %+v, want failed at instantiate", st)
	}
	if !strings.Contains(logs.String(), "extension=startsec") || !strings.Contains(logs.String(), "slower deadline guard") {
		t.Fatalf("log does not name the extension and its guard:\n%s", logs)
	}
	if st := statusOf(t, h, "auth"); st.State != StateRunning {
		t.Fatalf("auth: %+v", st)
	}
}

// TestStopEndsRunningCall: closing the host, reloading or disabling an
// extension while one of its calls spins ends that call (deadline, fail
// closed) and the stop completes. Before, the stopping extension was out
// of the watchdog's view and closing it did not halt the guest: the call
// spun on for good.
func TestStopEndsRunningCall(t *testing.T) {
	const manifest = "id: spin\nversion: %s\nmodule: ext.wasm\nlimits:\n  call_deadline: 200ms\n  pool_size: 1\n"
	for _, how := range []string{"close", "reload", "disable"} {
		t.Run(how, func(t *testing.T) {
			ext := t.TempDir()
			dropIn(t, ext, "spin", wasmFixture("error/spin"), strings.Replace(manifest, "%s", "1.0.0", 1))
			h, logs := newTestHost(t, ext)
			h.Watch()
			h.mu.Lock()
			old := h.exts["spin"]
			h.mu.Unlock()
			done := authenticateAsync(h)
			poll.Until(t, "the guest spins", func() bool { return spinning(h, "spin") })
			stopped := make(chan struct{}, 1)
			switch how {
			case "close":
				go func() { _ = h.Close(context.Background()); stopped <- struct{}{} }()
			case "reload":
				dropIn(t, ext, "spin", wasmFixture("ok/minimal"), strings.Replace(manifest, "%s", "2.0.0", 1))
			case "disable":
				if err := os.WriteFile(filepath.Join(ext, "spin", DisabledFile), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			res := returned(t, "the spinning call returns", done)
			if res.Decision != broker.Deny || res.ReasonCode != 0x80 {
				t.Fatalf("answer %+v, want deny 0x80 (deadline, fail closed)", res)
			}
			if how == "close" {
				returned(t, "Close returns", stopped)
			}
			poll.Until(t, "the old version is stopped, its instances closed", func() bool {
				old.pool.mu.Lock()
				defer old.pool.mu.Unlock()
				return old.stopped.Load() && len(old.pool.all) == 0
			})
			if how == "reload" {
				poll.Until(t, "version 2 serves", func() bool {
					return h.Authenticate(context.Background(), connect("u", "p")).ReasonCode == 0x87
				})
			}
			if !strings.Contains(logs.String(), "call deadline exceeded") {
				t.Fatalf("no deadline in the log:\n%s", logs)
			}
		})
	}
}
