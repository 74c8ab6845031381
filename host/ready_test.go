package host

import (
	"context"
	"testing"
)

// TestReadyFollowsLoadAllAndClose: a host is not ready before LoadAll
// has finished, ready after it (even with no extension: whether one
// decides is the broker's condition), and not ready once closed.
func TestReadyFollowsLoadAllAndClose(t *testing.T) {
	h, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	check := func(when, want string) {
		t.Helper()
		got := "<nil>"
		if err := h.Ready(); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("Ready %s = %s, want %s", when, got, want)
		}
	}
	check("before LoadAll", "extensions not loaded yet")
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after LoadAll", "<nil>")
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after Close", "extension host closed")
}
