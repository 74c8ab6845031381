package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// built holds the Go modules built during this test run.
var built = struct {
	sync.Mutex
	dir string
	m   map[string]string
}{m: map[string]string{}}

// buildGo compiles package pkg of the Go module in module (relative to
// the repository root) to Wasm with the SDK, once per test run, and
// returns the .wasm path.
func buildGo(t testing.TB, module, pkg string) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	key := module + "/" + pkg
	if p, ok := built.m[key]; ok {
		return p
	}
	if built.dir == "" {
		d, err := os.MkdirTemp("", "propolis-kit-guests")
		if err != nil {
			t.Fatal(err)
		}
		built.dir = d
	}
	out := filepath.Join(built.dir, filepath.Base(module)+"-"+filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./"+pkg)
	cmd.Dir = filepath.Join("..", "..", module)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", key, err, b)
	}
	built.m[key] = out
	return out
}

// exampleFolder builds example id and lays it out as an extension folder
// (its manifest and module), as `make build` does in bin/examples.
func exampleFolder(t testing.TB, id string) string {
	t.Helper()
	wasm := buildGo(t, "examples", id)
	dir := filepath.Join(t.TempDir(), id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	man, err := os.ReadFile(filepath.Join("..", "..", "examples", id, "propolis-extension.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "propolis-extension.yaml"), string(man))
	bin, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, id+".wasm"), string(bin))
	return dir
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
