package host

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
)

// A compiled module the cache cannot save (here the process's file size
// limit, as a full disk would) still loads: wazero kept it in memory
// before it failed to write it, the host takes it from there and warns,
// and nothing half written is left in the cache.
func TestCompilationCacheWriteFails(t *testing.T) {
	ext, cache := t.TempDir(), t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "") // built before the limit
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lower := old
	lower.Cur = 1 << 20 // a Go guest's compiled code is ~10 MB
	if old.Max < lower.Cur {
		t.Skipf("the file size limit (%d bytes) is below the 1 MiB this test sets", old.Max)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lower); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	h, logs := loadCached(t, ext, cache, true)
	restore()
	if st := statusOf(t, h, "allow-all"); st.State != StateRunning {
		t.Fatalf("allow-all %s: %s\n%s", st.State, st.Reason, logs)
	}
	if res := h.Authenticate(context.Background(), connect("u", "p")); res.Decision != broker.Allow {
		t.Fatalf("authenticate: %+v", res)
	}
	if !strings.Contains(logs.String(), `msg="compiled code not saved in the compilation cache; the module is compiled again at the next start" extension=allow-all`) ||
		!strings.Contains(logs.String(), "file too large") {
		t.Fatalf("no warning naming the extension and the write error:\n%s", logs)
	}
	for rel := range cacheEntries(t, cache) {
		t.Errorf("cache entry %s left behind", rel)
	}
}

// A module's cache folder that cannot be made (here a file stands in its
// place, as a read-only data folder or a full disk would refuse a mkdir)
// does not fail the load: the module is compiled in memory, with a
// warning naming the extension.
func TestCompilationCacheFolderUnusable(t *testing.T) {
	ext, cache := t.TempDir(), t.TempDir()
	bin, err := os.ReadFile(wasmFixture("ok/wat_auth"))
	if err != nil {
		t.Fatal(err)
	}
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	if err := os.WriteFile(filepath.Join(cache, moduleCacheName(sha256.Sum256(bin))), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, logs := loadCached(t, ext, cache, false)
	if st := statusOf(t, h, "wat-auth"); st.State != StateRunning {
		t.Fatalf("wat-auth %s: %s\n%s", st.State, st.Reason, logs)
	}
	if !strings.Contains(logs.String(), `msg="compilation cache not usable; the module is compiled in memory, and again at the next start" extension=wat-auth`) {
		t.Fatalf("no warning naming the extension:\n%s", logs)
	}
}
