package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// storageManifest grants storage, with a call deadline long enough for
// the fsync of each durable write on a busy machine.
const storageManifest = "services: [storage]\nlimits:\n  call_deadline: 10s\n"

// TestStorageServices runs every storage function from a Go guest against
// the real broker and store: values, paging, limits, bad input as
// statuses, privacy (the namespace is the calling extension's id, never
// the guest's choice), and survival across a hot reload of the same id.
func TestStorageServices(t *testing.T) {
	w, c := probeClient(t, storageManifest, Options{}, "c1")
	// Another extension's data, written through the broker: the guest must
	// never see it.
	if err := w.srv.StoragePut("other-ext", "secret", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.StoragePut("other-ext", "dev/9", []byte("x")); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ cmd, want string }{
		{"kvget|k", "err:propolis: NOT_FOUND"},
		{"kvput|k|v1", "ok"},
		{"kvget|k", "ok:v1"},
		{"kvput|k|v2", "ok"},
		{"kvget|k", "ok:v2"},
		{"kvrm|k", "ok"},
		{"kvget|k", "err:propolis: NOT_FOUND"},
		{"kvrm|k", "ok"},
		{"kvget|secret", "err:propolis: NOT_FOUND"},
		{"kvput|dev/1|a", "ok"},
		{"kvput|dev/2|b", "ok"},
		{"kvput|dev/3|c", "ok"},
		{"kvput|devx|d", "ok"},
		{"kvkeys|dev/||2", "ok:dev/1,dev/2;more=true"},
		{"kvkeys|dev/|dev/2|2", "ok:dev/3;more=false"},
		{"kvkeys|||1000", "ok:dev/1,dev/2,dev/3,devx;more=false"},
		{"kvkeys|nothing||10", "ok:;more=false"},
		// A value beyond the SDK's 4 KiB result buffer comes through
		// take_result; the largest value fits.
		{fmt.Sprintf("kvputbig|big|%d", 1<<20), "ok"},
		// Bad input is a status, never a trap.
		{"kvput||v", "err:propolis: INVALID_ARGUMENT"},
		{"kvget|", "err:propolis: INVALID_ARGUMENT"},
		{fmt.Sprintf("kvputbig|big|%d", 1<<20+1), "err:propolis: TOO_LARGE"},
		{"kvput|" + strings.Repeat("k", 1025) + "|v", "err:propolis: TOO_LARGE"},
		{"kvkeys|" + strings.Repeat("k", 1025) + "||1", "err:propolis: TOO_LARGE"},
		{"kvkeys|||0", "err:propolis: INVALID_ARGUMENT"},
		{"kvkeys|||1001", "err:propolis: INVALID_ARGUMENT"},
	}
	for _, s := range steps {
		if got := probe(t, c, s.cmd); got != s.want {
			t.Errorf("%s: got %q, want %q", s.cmd, got, s.want)
		}
	}
	if v, ok, err := w.srv.StorageGet("svcprobe", "big"); err != nil || !ok || len(v) != 1<<20 {
		t.Errorf("broker's svcprobe/big: %d bytes, %v, %v", len(v), ok, err)
	}
	if v, ok, _ := w.srv.StorageGet("other-ext", "secret"); !ok || string(v) != "x" {
		t.Errorf("the other extension's key changed: %q, %v", v, ok)
	}

	// A hot reload of the same id (a new version) finds the keys.
	dir := filepath.Join(w.h.opts.Dir, "svcprobe")
	m, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m = []byte(strings.Replace(string(m), "version: 1.0.0", "version: 1.0.1", 1))
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), m, 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "reloaded", func() bool {
		w.h.scan(context.Background(), false) // a change applies once two scans agree
		return statusOf(t, w.h, "svcprobe").Version == "1.0.1"
	})
	if got := probe(t, c, "kvget|dev/2"); got != "ok:b" {
		t.Errorf("after a reload: kvget dev/2 = %q, want ok:b", got)
	}
}

// TestStorageNotPermitted: without the grant, storage answers
// NOT_PERMITTED and writes nothing.
func TestStorageNotPermitted(t *testing.T) {
	w, c := probeClient(t, "services: [session_attributes]\n", Options{}, "c1")
	if got := probe(t, c, "kvput|k|v"); got != "err:propolis: NOT_PERMITTED" {
		t.Fatalf("got %q, want NOT_PERMITTED", got)
	}
	if _, ok, _ := w.srv.StorageGet("svcprobe", "k"); ok {
		t.Error("a refused put wrote the key")
	}
}

// TestStoragePagesManyKeys: a guest pages through 2,500 keys 1,000 (the
// most one call answers) at a time, every result beyond 4 KiB going
// through take_result.
func TestStoragePagesManyKeys(t *testing.T) {
	w, c := probeClient(t, storageManifest, Options{}, "c1")
	for i := range 2500 {
		if err := w.srv.StoragePut("svcprobe", fmt.Sprintf("item/%05d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{1000, 333} {
		if got := probe(t, c, fmt.Sprintf("kvall|item/|%d", limit)); got != "ok:2500" {
			t.Errorf("paging by %d: %q, want ok:2500", limit, got)
		}
	}
}
