package host

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
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
		logs := &logBuffer{}
		h, err := New(Options{Dir: ext, CacheDir: cache, BrokerVersion: "test", Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LoadAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close(context.Background()) })
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
