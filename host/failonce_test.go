package host

import (
	"context"
	"strings"
	"sync"
	"testing"
)

// TestCrashLoopCountedOnce: many concurrent failing calls of one version
// cross the crash-loop threshold together; the version is stopped, counted
// and logged once.
func TestCrashLoopCountedOnce(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "trap", wasmFixture("error/trap"), 0, "limits:\n  pool_size: 16\n")
	h, logs := newTestHost(t, ext)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				h.Authenticate(context.Background(), connect("u", "p"))
			}
		}()
	}
	wg.Wait()
	st := statusOf(t, h, "trap")
	if st.State != StateFailed {
		t.Fatalf("state %s after %d failing calls, want failed", st.State, 64)
	}
	if st.CrashLoopStops != 1 {
		t.Errorf("%d crash-loop stops for one crash loop, want 1", st.CrashLoopStops)
	}
	if n := strings.Count(logs.String(), `"extension failed"`); n != 1 {
		t.Errorf("%d \"extension failed\" lines, want 1:\n%s", n, logs)
	}
}
