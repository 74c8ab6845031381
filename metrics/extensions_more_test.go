package metrics

import (
	"testing"

	"github.com/propolis-mqtt/propolis/host"
)

// TestExtensionMetricsCacheHitsAndDroppedEvents: the authentication
// cache's hits (CONNECTs that made no call) and the dropped events are
// exported for every listed extension, read from its status.
func TestExtensionMetricsCacheHitsAndDroppedEvents(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "1.0.0", "")
	r := startExtRig(t, dir, host.Options{}, false)
	if code, _ := connect(t, r.addr, "a", "wat", "secret"); code != 0 {
		t.Fatalf("CONNECT: %#x", code)
	}
	st := r.h.Status()[0]
	ext := map[string]string{"extension": "wat-auth"}
	if got := r.value(t, "propolis_extension_auth_cache_hits_total", ext); got != float64(st.AuthCacheHits) {
		t.Errorf("propolis_extension_auth_cache_hits_total = %v, status says %d", got, st.AuthCacheHits)
	}
	if got := r.value(t, "propolis_extension_events_dropped_total", ext); got != float64(st.Dropped) {
		t.Errorf("propolis_extension_events_dropped_total = %v, status says %d", got, st.Dropped)
	}
}
