package metrics

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/propolis-mqtt/propolis/internal/scrape"
)

// TestRegistryIsValidOpenMetrics: the whole registry, encoded in
// OpenMetrics as /metrics serves it, parses strictly: in particular no two
// families share a name once OpenMetrics drops the counters' _total (the
// Go collector's memstats-like set had go_memstats_alloc_bytes twice).
func TestRegistryIsValidOpenMetrics(t *testing.T) {
	reg, err := NewRegistry(Options{Version: "dev", ABI: "1.4", Ready: func() error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.FmtOpenMetrics)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.(expfmt.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	fams, err := scrape.OpenMetrics(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != len(mfs) {
		t.Errorf("%d OpenMetrics families from %d gathered", len(fams), len(mfs))
	}
}

// gather registers everything on a pedantic registry (which checks every
// metric against its descriptor) and gathers it.
func gather(t *testing.T, ready func() error) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := Register(reg, Options{Version: "1.2.3", ABI: "1.4", Ready: ready}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func TestRegistry(t *testing.T) {
	var notReady atomic.Bool
	ready := func() error {
		if notReady.Load() {
			return errors.New("store closed")
		}
		return nil
	}
	fams := gather(t, ready)
	want := []string{
		"go_goroutines", "go_threads", "go_info", "go_gc_duration_seconds", "go_memory_classes_heap_objects_bytes",
		"go_sched_latencies_seconds", "go_gc_heap_allocs_bytes_total", "go_memory_classes_total_bytes", // runtime/metrics
		"propolis_build_info", "propolis_ready",
	}
	if runtime.GOOS == "linux" {
		want = append(want, "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds",
			"process_virtual_memory_bytes", "process_start_time_seconds",
			"propolis_host_cpu_seconds_total", "propolis_host_memory_bytes", "propolis_host_load_average", "propolis_process_native_memory_bytes")
	}
	for _, name := range want {
		if fams[name] == nil {
			t.Errorf("no metric %s", name)
		}
	}
	for name, f := range fams {
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
	}

	bi := fams["propolis_build_info"].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range bi.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if bi.GetGauge().GetValue() != 1 || labels["version"] != "1.2.3" || labels["abi"] != "1.4" || labels["go_version"] != runtime.Version() {
		t.Errorf("propolis_build_info = %v", bi)
	}
	if v := fams["propolis_ready"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("propolis_ready = %v while ready, want 1", v)
	}
	for name := range fams {
		if name == "go_memstats_alloc_bytes" || name == "go_memstats_alloc_bytes_total" || strings.HasPrefix(name, "go_godebug_") {
			t.Errorf("%s is served; the memstats-like and GODEBUG sets are off", name)
		}
	}
	notReady.Store(true)
	if v := gather(t, ready)["propolis_ready"].GetMetric()[0].GetGauge().GetValue(); v != 0 {
		t.Errorf("propolis_ready = %v while not ready, want 0", v)
	}
}
