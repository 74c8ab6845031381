package host

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// wantNice is the niceness below the process a low-priority compilation
// should report on this machine: BackgroundNice, capped at 19, on Linux
// (where the test itself may already run niced); 0 elsewhere.
func wantNice(t *testing.T) int {
	t.Helper()
	own, ok := threadNice()
	if !ok {
		return 0
	}
	return min(own+BackgroundNice, 19) - own
}

// TestRunLowPriority: fn runs on a thread of its own, lowered by the
// requested steps, with one more P while it runs; GOMAXPROCS is restored
// after, and a panic in fn reaches the caller.
func TestRunLowPriority(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	own, _ := threadNice()
	want := wantNice(t)
	var got, seen, during int
	runLowPriority(BackgroundNice, func(n int) {
		got = n
		if now, ok := threadNice(); ok {
			seen = now - own
		}
		during = runtime.GOMAXPROCS(0)
	})
	if got != want || seen != want {
		t.Errorf("compiling thread %d (reported) and %d (read back) nice steps lower, want %d", got, seen, want)
	}
	if during != procs+1 {
		t.Errorf("GOMAXPROCS %d during the compilation, want %d", during, procs+1)
	}
	if after := runtime.GOMAXPROCS(0); after != procs {
		t.Errorf("GOMAXPROCS %d after, want %d as before", after, procs)
	}
	if now, ok := threadNice(); ok && now != own {
		t.Errorf("the caller's thread is now at nice %d, was %d", now, own)
	}
	func() {
		defer func() {
			if r := recover(); r != "compiler bug" {
				t.Errorf("recovered %v, want the compiler's panic", r)
			}
		}()
		runLowPriority(BackgroundNice, func(int) { panic("compiler bug") })
	}()
	if after := runtime.GOMAXPROCS(0); after != procs {
		t.Errorf("GOMAXPROCS %d after a panic, want %d", after, procs)
	}
}

// TestReloadCompilesAtLowPriority: the initial load compiles at full
// speed; a module replaced while the broker serves is compiled at low
// priority, and the reload completes and serves.
func TestReloadCompilesAtLowPriority(t *testing.T) {
	ext := t.TempDir()
	allowAll := example(t, "allow-all")
	dropIn(t, ext, "allow-all", allowAll, "id: allow-all\nversion: 1.0.0\nmodule: ext.wasm\n")
	procs := runtime.GOMAXPROCS(0)
	addr, h := startWatchedBroker(t, ext)
	logs := testLogs(t, h)
	running := func() *extension {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.exts["allow-all"]
	}
	if e := running(); e.background || e.compileNice != 0 {
		t.Fatalf("initial load: background %v, compiled %d nice steps lower; want full speed", e.background, e.compileNice)
	}
	if !strings.Contains(logs.String(), "compile_nice=0") {
		t.Fatalf("initial load not logged at full speed:\n%s", logs.String())
	}

	// A new module (a custom section more, so it is really compiled, not
	// found in the cache) and a new version, as an operator deploys one.
	bin, err := os.ReadFile(allowAll)
	if err != nil {
		t.Fatal(err)
	}
	// A new section name each run: the test cache is shared between runs.
	section := fmt.Sprintf("propolis-test-reload-%d", time.Now().UnixNano())
	bin = append(bin, 0, byte(1+len(section)+1), byte(len(section)))
	bin = append(append(bin, section...), 1)
	newer := filepath.Join(t.TempDir(), "allow-all.wasm")
	if err := os.WriteFile(newer, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	dropIn(t, ext, "allow-all", newer, "id: allow-all\nversion: 1.0.1\nmodule: ext.wasm\n")
	poll.Until(t, "reloaded", func() bool { return statusOf(t, h, "allow-all").Version == "1.0.1" })

	want := wantNice(t)
	if e := running(); !e.background || e.compileNice != want {
		t.Fatalf("reload: background %v, compiled %d nice steps lower; want background, %d", e.background, e.compileNice, want)
	}
	// The status changes just before the "extension reloaded" line.
	line := "compile_nice=" + strconv.Itoa(want)
	poll.Until(t, "reload logged with "+line, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `msg="extension reloaded"`) && strings.Contains(l, line) {
				return true
			}
		}
		return false
	})
	if now := runtime.GOMAXPROCS(0); now != procs {
		t.Fatalf("GOMAXPROCS %d after the reload, want %d as before", now, procs)
	}
	if code := connectCode(t, addr, "c", ""); code != 0 {
		t.Fatalf("reloaded allow-all refused a client: %#x", code)
	}
}
