package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// A damaged entry of the compilation cache (a flipped byte: wazero's
// checksum mismatch) does not keep the extension from loading: the entry is
// discarded and recompiled, with a warning naming the extension, and the
// next host loads from the repaired entry without a warning.
func TestDamagedCompilationCacheIsRecompiled(t *testing.T) {
	ext, cache := t.TempDir(), t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	load := func() (*Host, *logBuffer) {
		t.Helper()
		h, logs := loadCached(t, ext, cache, false)
		if st := statusOf(t, h, "allow-all"); st.State != StateRunning {
			t.Fatalf("allow-all %s: %s\n%s", st.State, st.Reason, logs)
		}
		if res := h.Authenticate(context.Background(), connect("u", "p")); res.Decision != broker.Allow {
			t.Fatalf("authenticate: %+v", res)
		}
		return h, logs
	}
	first, _ := load() // fills the cache
	_ = first.Close(context.Background())

	var entries []string
	err := filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			entries = append(entries, p)
		}
		return err
	})
	if err != nil || len(entries) == 0 {
		t.Fatalf("no cache entry written (%v)", err)
	}
	for _, p := range entries {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff // in the compiled code, which wazero checksums
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	_, logs := load()
	const warning = `level=WARN msg="compilation cache entry damaged; discarded and recompiled" extension=allow-all`
	if !strings.Contains(logs.String(), warning) || !strings.Contains(logs.String(), "checksum mismatch") {
		t.Fatalf("no warning naming the extension and the damage:\n%s", logs)
	}
	_, logs = load()
	if strings.Contains(logs.String(), "compilation cache") {
		t.Fatalf("the repaired entry was not used:\n%s", logs)
	}
}

// cacheEntries returns the regular files under dir, relative to it, with
// their contents.
func cacheEntries(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A compilation cache shipped in the extensions folder (Precompile) fills
// a fresh data folder's cache, and the host loads from it: a damaged
// shipped entry is read (wazero's checksum fails), discarded and
// recompiled; an entry for another wazero version is copied but never read.
func TestShippedCompilationCache(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	shipped := filepath.Join(ext, ShippedCache)
	ids, err := Precompile(context.Background(), ext, shipped)
	if err != nil || len(ids) != 1 || ids[0] != "wat-auth" {
		t.Fatalf("Precompile: %v, %v; want [wat-auth]", ids, err)
	}
	entries := cacheEntries(t, shipped)
	if len(entries) != 1 {
		t.Fatalf("shipped cache holds %d entries, want 1", len(entries))
	}
	var moduleDir string
	for rel := range entries {
		moduleDir = strings.Split(rel, string(filepath.Separator))[0]
	}
	if !strings.HasPrefix(moduleDir, moduleCachePrefix) {
		t.Fatalf("shipped entry %v not in a module's folder", entries)
	}
	// An entry for another wazero version, in the module's folder: copied,
	// never read. One in the layout before a folder per module: not copied.
	for _, p := range []string{filepath.Join(shipped, moduleDir, "wazero-v0.0.1-amd64-linux", "0123"), filepath.Join(shipped, "wazero-v0.0.1-amd64-linux", "0123")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not a compiled module"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	load := func(t *testing.T) (string, map[string][]byte, string) {
		t.Helper()
		cache := t.TempDir()
		h, logs := loadCached(t, ext, cache, false)
		if st := statusOf(t, h, "wat-auth"); st.State != StateRunning {
			t.Fatalf("wat-auth %s: %s\n%s", st.State, st.Reason, logs)
		}
		if res := h.Authenticate(context.Background(), connect("wat", "secret")); res.Decision != broker.Allow {
			t.Fatalf("authenticate: %+v\n%s", res, logs)
		}
		return logs.String(), cacheEntries(t, cache), cache
	}

	t.Run("used", func(t *testing.T) {
		logs, got, cache := load(t)
		if !strings.Contains(logs, `msg="compilation cache filled from the shipped one"`) || !strings.Contains(logs, "entries=2") {
			t.Fatalf("no log of the copy:\n%s", logs)
		}
		if !strings.Contains(logs, "shipped compilation cache holds entries of an older layout, not used") {
			t.Fatalf("no log of the older layout's entry left out:\n%s", logs)
		}
		if strings.Contains(logs, "damaged") {
			t.Fatalf("the shipped entry was not usable:\n%s", logs)
		}
		for rel, b := range entries {
			if string(got[rel]) != string(b) {
				t.Fatalf("data cache entry %s differs from the shipped one", rel)
			}
			// On one file system the entry is linked, not copied.
			a, err1 := os.Stat(filepath.Join(shipped, rel))
			c, err2 := os.Stat(filepath.Join(cache, rel))
			if err1 != nil || err2 != nil || !os.SameFile(a, c) {
				t.Fatalf("data cache entry %s is not a link to the shipped one (%v, %v)", rel, err1, err2)
			}
		}
		// The shipped entry and the foreign one, and no entry of the
		// host's own: Precompile compiled what the host looks up (the
		// instrumented module, compileModule).
		if len(got) != len(entries)+1 {
			t.Fatalf("data cache holds %d entries, want the %d shipped: the host compiled the module again", len(got), len(entries)+1)
		}
	})
	t.Run("damaged", func(t *testing.T) {
		for rel, b := range entries {
			bad := append([]byte(nil), b...)
			bad[len(bad)/2] ^= 0xff
			if err := os.WriteFile(filepath.Join(shipped, rel), bad, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		logs, _, _ := load(t)
		if !strings.Contains(logs, `msg="compilation cache entry damaged; discarded and recompiled" extension=wat-auth`) {
			t.Fatalf("the damaged shipped entry was not read and repaired:\n%s", logs)
		}
	})
}

// Precompile names the folder it cannot compile and compiles the others.
func TestPrecompileErrors(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "good", wasmFixture("ok/wat_auth"), 0, "")
	installExtension(t, ext, "notwasm", wasmFixture("ok/wat_auth"), 0, "")
	if err := os.WriteFile(filepath.Join(ext, "notwasm", "ext.wasm"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	ids, err := Precompile(context.Background(), ext, filepath.Join(ext, ShippedCache))
	if len(ids) != 1 || ids[0] != "good" || err == nil || !strings.HasPrefix(err.Error(), `extension "notwasm": compile ext.wasm: `) {
		t.Fatalf("Precompile: %v, %v; want [good] and an error naming notwasm", ids, err)
	}
}

// moduleFolders returns the module cache folders in cache.
func moduleFolders(t *testing.T, cache string) []string {
	t.Helper()
	ents, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), moduleCachePrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// The compilation cache keeps one folder per module an extension folder
// holds: a new version's module replaces the old one's folder, a removed
// extension's folder goes, and so do the folders of the layout before one
// folder per module; what else is in the cache's folder stays.
func TestCompilationCacheIsPruned(t *testing.T) {
	ext, cache := t.TempDir(), t.TempDir()
	oldLayout := filepath.Join(cache, "wazero-v1.11.0-amd64-linux")
	other := filepath.Join(cache, "operator-notes.txt")
	for _, p := range []string{filepath.Join(oldLayout, "0123"), other} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	first, second := wasmFixture("ok/wat_auth"), wasmFixture("ok/minimal")
	sum := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return moduleCacheName(sha256.Sum256(b))
	}
	dropIn(t, ext, "auth", first, "id: auth\nversion: 1.0.0\nmodule: ext.wasm\n")
	h, _ := loadCached(t, ext, cache, true)
	if got := moduleFolders(t, cache); len(got) != 1 || got[0] != sum(first) {
		t.Fatalf("after the first load the cache holds %v, want [%s]", got, sum(first))
	}
	if _, err := os.Stat(oldLayout); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the older layout's folder is still there (%v)", err)
	}
	h.Watch()

	dropIn(t, ext, "auth", second, "id: auth\nversion: 2.0.0\nmodule: ext.wasm\n")
	poll.Until(t, "version 2 running", func() bool {
		st := statusOf(t, h, "auth")
		return st.Version == "2.0.0" && st.State == StateRunning
	})
	poll.Until(t, "only version 2's module in the cache", func() bool {
		got := moduleFolders(t, cache)
		return len(got) == 1 && got[0] == sum(second)
	})

	if err := os.RemoveAll(filepath.Join(ext, "auth")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "no module in the cache once the folder is removed", func() bool { return len(moduleFolders(t, cache)) == 0 })
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a file that is not a module's cache was removed: %v", err)
	}
}

// Precompile's cache is the extensions folder's: compiling again after a
// module changed leaves only the new module's folder.
func TestPrecompileReplacesOldModules(t *testing.T) {
	ext := t.TempDir()
	shipped := filepath.Join(ext, ShippedCache)
	installExtension(t, ext, "auth", wasmFixture("ok/wat_auth"), 0, "")
	if _, err := Precompile(context.Background(), ext, shipped); err != nil {
		t.Fatal(err)
	}
	before := moduleFolders(t, shipped)
	installExtension(t, ext, "auth", wasmFixture("ok/minimal"), 0, "")
	if _, err := Precompile(context.Background(), ext, shipped); err != nil {
		t.Fatal(err)
	}
	after := moduleFolders(t, shipped)
	if len(before) != 1 || len(after) != 1 || before[0] == after[0] {
		t.Fatalf("module folders %v, then %v: want one, then another one", before, after)
	}
}

// Hosts that share a compilation cache (the conformance kit's --cache,
// the tests' one cache) leave each other's module folders alone: one host
// cannot tell which modules the others use, and a folder removed while
// another host compiles into it fails that load (wazero cannot write the
// entry). Only a host told it is the cache's one user prunes it.
func TestSharedCompilationCacheKept(t *testing.T) {
	cache := t.TempDir()
	load := func(module string) (*Host, string) {
		ext := t.TempDir()
		dropIn(t, ext, "auth", wasmFixture(module), "id: auth\nversion: 1.0.0\nmodule: ext.wasm\n")
		h, _ := loadCached(t, ext, cache, false)
		if st := statusOf(t, h, "auth"); st.State != StateRunning {
			t.Fatalf("%s: %+v", module, st)
		}
		b, err := os.ReadFile(wasmFixture(module))
		if err != nil {
			t.Fatal(err)
		}
		return h, moduleCacheName(sha256.Sum256(b))
	}
	_, first := load("ok/wat_auth")
	_, second := load("ok/minimal")
	got := moduleFolders(t, cache)
	if len(got) != 2 || !slices.Contains(got, first) || !slices.Contains(got, second) {
		t.Fatalf("the shared cache holds %v after a second host loaded, want %s and %s", got, first, second)
	}
}

// A broker with no extension prunes its cache at start too: the first
// start after an upgrade removes the older layout's folder and a module's
// folder left from extensions removed while it was down.
func TestCompilationCachePrunedWithNoExtension(t *testing.T) {
	ext, cache := t.TempDir(), t.TempDir()
	stale := []string{filepath.Join(cache, "wazero-v1.11.0-amd64-linux", "0123"), filepath.Join(cache, moduleCachePrefix+"00", "x")}
	for _, p := range stale {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	loadCached(t, ext, cache, true)
	for _, p := range stale {
		if _, err := os.Stat(filepath.Dir(p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there (%v)", filepath.Dir(p), err)
		}
	}
}

// loadCached starts a host on the extensions folder ext with its
// compilation cache in cache (pruned if prune), loads every extension, and
// closes the host when the test ends; logs collects its log.
func loadCached(t *testing.T, ext, cache string, prune bool) (*Host, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	h, err := New(Options{Dir: ext, CacheDir: cache, PruneCache: prune, BrokerVersion: "test", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h, logs
}
