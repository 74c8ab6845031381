package host

import (
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestScanErrorKeepsExtensions: while the extensions folder cannot be
// read (as when the process runs out of file descriptors: ReadDir and
// every open fail with EMFILE, or just the reads of its manifests), the watcher keeps every extension
// running and clients connecting, logs the error once, and picks up
// changes again once it can read.
func TestScanErrorKeepsExtensions(t *testing.T) {
	t.Run("folder and files", func(t *testing.T) { testScanError(t, true) })
	t.Run("files only", func(t *testing.T) { testScanError(t, false) })
}

// testScanError is TestScanErrorKeepsExtensions with the folder's ReadDir
// failing too (dirToo) or only the reads of files in it.
func testScanError(t *testing.T, dirToo bool) {
	ext := t.TempDir()
	dropIn(t, ext, "allow-all", example(t, "allow-all"), "id: allow-all\nversion: 1.0.0\nmodule: ext.wasm\n")
	addr, h := startBroker(t, ext)
	logs := testLogs(t, h)
	var failing atomic.Bool
	var failed atomic.Int32
	emfile := func(path string) error {
		failed.Add(1)
		return &os.PathError{Op: "open", Path: path, Err: syscall.EMFILE}
	}
	h.scanMu.Lock()
	h.readDir = func(dir string) ([]os.DirEntry, error) {
		if dirToo && failing.Load() {
			return nil, emfile(dir)
		}
		return os.ReadDir(dir)
	}
	h.readFile = func(path string) ([]byte, error) {
		if failing.Load() {
			return nil, emfile(path)
		}
		return os.ReadFile(path)
	}
	h.scanMu.Unlock()
	h.Watch()

	failing.Store(true)
	// Six failed reads: a removal is applied after two scans that agree.
	poll.Until(t, "six reads failed", func() bool { return failed.Load() >= 6 })
	if s := stateOf(h, "allow-all"); s != StateRunning {
		t.Errorf("allow-all %q while the folder was unreadable, want running:\n%s", s, logs.String())
	}
	if code := connectCode(t, addr, "c", ""); code != 0 {
		t.Errorf("CONNECT while the folder was unreadable: %#x, want 0", code)
	}
	if strings.Contains(logs.String(), "EVERY CLIENT IS NOW REFUSED") {
		t.Errorf("security extension reported gone:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "cannot read the extensions folder"); n != 1 {
		t.Errorf("%d scan error lines, want 1:\n%s", n, logs.String())
	}

	failing.Store(false)
	poll.Until(t, "the recovery logged", func() bool {
		return strings.Contains(logs.String(), "the extensions folder is readable again")
	})
	dropIn(t, ext, "publish-guard", example(t, "publish-guard"), "id: publish-guard\nversion: 1.0.0\nmodule: ext.wasm\n")
	poll.Until(t, "publish-guard loaded after the recovery", func() bool { return stateOf(h, "publish-guard") == StateRunning })
}
