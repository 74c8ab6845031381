package host

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestInstanceWaitCountedOncePerCall: an authenticate call that waits for
// an instance of a version being replaced, is told that version stopped,
// and waits again for an instance of its successor counts one wait.
func TestInstanceWaitCountedOncePerCall(t *testing.T) {
	ext := t.TempDir()
	limits := "limits:\n  pool_size: 1\n  max_pool_size: 2\n  authenticate_deadline: 1m\n  call_deadline: 1m\n"
	dir := installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, limits)
	h, _ := newTestHost(t, ext)
	h.mu.Lock()
	v1 := h.exts["wat-auth"]
	h.mu.Unlock()
	if !v1.pool.authLimited {
		t.Fatal("the pool does not keep authenticate calls off its last instance")
	}
	// The test holds the one instance authenticate calls may take.
	var waited bool
	held, err := v1.acquire(context.Background(), abi.CallbackAuthenticate, &waited)
	if err != nil {
		t.Fatal(err)
	}
	waits := func() int64 { return v1.counters.waits.Load() }
	before := waits()
	type got struct {
		e   *extension
		in  *instance
		err error
	}
	done := make(chan got, 1)
	go func() {
		e, in, err := h.acquire(context.Background(), v1, abi.CallbackAuthenticate)
		done <- got{e, in, err}
	}()
	poll.Until(t, "the call waiting on version 1", func() bool {
		v1.pool.mu.Lock()
		defer v1.pool.mu.Unlock()
		return v1.pool.authWaiters == 1
	})
	// Version 2 replaces it: the waiting call is told version 1 stopped
	// and waits for an instance of version 2 (its pool grows for it).
	m := "id: wat-auth\nname: wat-auth\nversion: 2.0.0\npriority: 0\nmodule: ext.wasm\n" + limits
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		for i := 0; i < 1000; i++ { // a scan may wait for the folder to settle
			h.scan(context.Background(), false)
			for _, st := range h.Status() {
				if st.Version == "2.0.0" {
					return
				}
			}
		}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("the waiting call: %v", r.err)
	}
	if r.e == v1 {
		t.Fatal("the waiting call got version 1")
	}
	r.e.release(r.in, abi.CallbackAuthenticate, nil)
	v1.release(held, abi.CallbackAuthenticate, nil)
	<-scanned
	if n := waits() - before; n != 1 {
		t.Errorf("one call counted %d instance waits, want 1", n)
	}
}
