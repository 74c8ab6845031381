package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// tickerManifest is the manifest of the ticker guest: ticks every 100ms,
// each sleeping 250ms, so that every tick spans the next ones.
const tickerManifest = "services: [storage]\ntick: 100ms\nlimits:\n  call_deadline: 2s\n  pool_size: 4\nconfig:\n  sleep: 250ms\n"

func storageInt(t *testing.T, w *wired, ext, key string) int {
	t.Helper()
	v, ok, err := w.srv.StorageGet(ext, key)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		t.Fatalf("%s/%s = %q", ext, key, v)
	}
	return n
}

// TestTick: propolis_tick runs every manifest tick, may call services, never
// overlaps itself across a pool of 4 (a slow tick skips the next ones
// instead), stops when its version is replaced (the new one ticks on its
// own) and when the host closes.
func TestTick(t *testing.T) {
	extDir := t.TempDir()
	dir := installExtension(t, extDir, "ticker", buildGuest(t, "testdata/guests", "ticker"), 0, tickerManifest)
	w := startWired(t, extDir, Options{})
	poll.Until(t, "5 ticks", func() bool { return storageInt(t, w, "ticker", "ticks") >= 5 })
	if _, ok, _ := w.srv.StorageGet("ticker", "overlap"); ok {
		t.Fatal("two ticks ran at once")
	}
	w.h.mu.Lock()
	old := w.h.exts["ticker"]
	w.h.mu.Unlock()
	if st := statusOf(t, w.h, "ticker"); st.TicksSkipped == 0 || st.Tick != 100*time.Millisecond {
		t.Errorf("status: tick %v, %d skipped; want 100ms, ticks of 250ms every 100ms skipping some", st.Tick, st.TicksSkipped)
	}
	if strings.Contains(w.logs.String(), "storage:") {
		t.Errorf("a tick's storage call failed:\n%s", w.logs.String())
	}

	// A new version: the old one's ticks end before the new one's begin.
	m := "id: ticker\nname: ticker\nversion: 2.0.0\npriority: 0\nmodule: ext.wasm\n" + tickerManifest
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "reloaded", func() bool {
		w.h.scan(context.Background(), false)
		return statusOf(t, w.h, "ticker").Version == "2.0.0"
	})
	select {
	case <-old.tickDone:
	default:
		t.Fatal("the replaced version still ticks")
	}
	before := storageInt(t, w, "ticker", "ticks")
	poll.Until(t, "ticks of 2.0.0", func() bool {
		v, _, _ := w.srv.StorageGet("ticker", "by")
		return string(v) == "2.0.0" && storageInt(t, w, "ticker", "ticks") >= before+3
	})
	if _, ok, _ := w.srv.StorageGet("ticker", "overlap"); ok {
		t.Fatal("two ticks ran at once around the reload")
	}

	w.h.mu.Lock()
	cur := w.h.exts["ticker"]
	w.h.mu.Unlock()
	if err := w.h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cur.tickDone:
	default:
		t.Fatal("ticks go on after Close")
	}
}

// TestTickNeedsTheExport: a manifest tick for a module without
// propolis_tick (or one whose start did not declare it) refuses the load,
// saying why; a tick out of range is a manifest error.
func TestTickNeedsTheExport(t *testing.T) {
	extDir := t.TempDir()
	installExtension(t, extDir, "svcprobe", buildGuest(t, "testdata/guests", "svcprobe"), 0, "tick: 1s\n")
	w := startWired(t, extDir, Options{})
	st := statusOf(t, w.h, "svcprobe")
	want := "manifest tick 1s: the module does not export propolis_tick (or did not declare it with declare_callbacks)"
	if st.State != StateFailed || !strings.Contains(st.Reason, want) {
		t.Fatalf("status %s %q, want failed with %q", st.State, st.Reason, want)
	}
}

// TestTickMissingFromManifest: a module whose start declared propolis_tick
// (the SDK's Tick handler) under a manifest without tick is refused from
// the first instance on, the error naming the manifest's tick key, whatever
// the pool size (it used to warn for the first instance and fail the
// second with "prewarm instance 2: ... declare_callbacks:
// INVALID_ARGUMENT").
func TestTickMissingFromManifest(t *testing.T) {
	for _, pool := range []int{1, 4} {
		extDir := t.TempDir()
		installExtension(t, extDir, "ticker", buildGuest(t, "testdata/guests", "ticker"), 0,
			fmt.Sprintf("services: [storage]\nlimits:\n  pool_size: %d\n", pool))
		w := startWired(t, extDir, Options{})
		st := statusOf(t, w.h, "ticker")
		want := `manifest tick: not set, but the module declares propolis_tick`
		if st.State != StateFailed || !strings.Contains(st.Reason, want) || !strings.Contains(st.Reason, `"tick: 10s"`) ||
			strings.Contains(st.Reason, "prewarm") {
			t.Fatalf("pool %d: status %s %q, want failed with %q", pool, st.State, st.Reason, want)
		}
	}
}
