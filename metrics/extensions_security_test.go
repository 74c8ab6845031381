package metrics

import (
	"fmt"
	"testing"

	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestSecurityExtensionsFollowTheChain: a trapping authenticator in front
// of a working one is stopped after a crash loop and, staying in the
// chain, refuses every CONNECT; propolis_security_extensions then reads 0
// (and /readyz says why) although the working one still runs.
func TestSecurityExtensionsFollowTheChain(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "1.0.0", "")
	installExt(t, dir, "trap", wasmFixture("error/trap"), "1.0.0", "priority: 100\n")
	r := startExtRig(t, dir, host.Options{}, false)
	if got := r.value(t, "propolis_security_extensions", nil); got != 2 {
		t.Fatalf("security extensions serving before the crash loop: %v, want 2", got)
	}
	stopped := func() bool {
		return r.value(t, "propolis_extension_crash_loop_stops_total", map[string]string{"extension": "trap"}) == 1
	}
	for i := 0; i < 40 && !stopped(); i++ {
		connect(t, r.addr, fmt.Sprintf("c%d", i), "wat", "secret")
	}
	poll.Until(t, "a crash-loop stop", stopped)
	if got := r.value(t, "propolis_extensions", map[string]string{"state": "running"}); got != 1 {
		t.Fatalf("running extensions: %v, want 1 (wat-auth)", got)
	}
	if code, _ := connect(t, r.addr, "after", "wat", "secret"); code == 0 {
		t.Fatal("a CONNECT was accepted behind the stopped extension")
	}
	if got := r.value(t, "propolis_security_extensions", nil); got != 0 {
		t.Errorf("propolis_security_extensions = %v while every CONNECT is refused, want 0", got)
	}
	if r.h.Ready() == nil {
		t.Error("host ready while every CONNECT is refused")
	}
}
