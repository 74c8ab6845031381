package metrics

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestExtensionMetricsFolderAddedAgain: a folder removed and added again
// between two scrapes starts its call counts afresh, as the host's folder
// counters do: the next scrape does not carry the old folder's calls on.
func TestExtensionMetricsFolderAddedAgain(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "1.0.0", "")
	r := startExtRig(t, dir, host.Options{}, true)
	allowed := calls("wat-auth", "authenticate", "allow")
	for _, id := range []string{"a", "b"} {
		if code, _ := connect(t, r.addr, id, "wat", "secret"); code != 0 {
			t.Fatalf("CONNECT %s: %#x", id, code)
		}
	}
	if got := r.value(t, "propolis_extension_calls_total", allowed); got != 2 {
		t.Fatalf("allowed CONNECTs: %v, want 2", got)
	}
	var first uint64
	for _, st := range r.h.Status() {
		first = st.Folder
	}
	// Removed and added again, with no scrape in between.
	if err := os.RemoveAll(filepath.Join(dir, "wat-auth")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the folder gone", func() bool { return len(r.h.Status()) == 0 })
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "1.0.0", "")
	poll.Until(t, "the folder back and running", func() bool {
		sts := r.h.Status()
		return len(sts) == 1 && sts[0].State == host.StateRunning
	})
	if st := r.h.Status()[0]; st.Folder == first {
		t.Fatalf("the folder added again has the same identity %d", st.Folder)
	}
	if code, _ := connect(t, r.addr, "c", "wat", "secret"); code != 0 {
		t.Fatalf("CONNECT after the folder came back: %#x", code)
	}
	if got := r.value(t, "propolis_extension_calls_total", allowed); got != 1 {
		t.Errorf("allowed CONNECTs of the folder added again: %v, want 1 (the old folder's 2 carried on)", got)
	}
}
