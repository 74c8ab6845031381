package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// guestCache holds the Go guests built during this test run.
var guestCache = struct {
	sync.Mutex
	dir   string
	built map[string]string
}{built: map[string]string{}}

// buildGuest compiles the Go extension in module dir (relative to the
// repository root), package pkg, to Wasm with the SDK, once per test run,
// and returns the .wasm path.
func buildGuest(t testing.TB, module, pkg string) string {
	t.Helper()
	guestCache.Lock()
	defer guestCache.Unlock()
	key := module + "/" + pkg
	if p, ok := guestCache.built[key]; ok {
		return p
	}
	if guestCache.dir == "" {
		d, err := os.MkdirTemp("", "propolis-guests")
		if err != nil {
			t.Fatal(err)
		}
		guestCache.dir = d
	}
	out := filepath.Join(guestCache.dir, filepath.Base(module)+"-"+filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./"+pkg)
	cmd.Dir = filepath.Join("..", module)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest %s: %v\n%s", key, err, b)
	}
	guestCache.built[key] = out
	return out
}
