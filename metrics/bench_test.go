package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkGather is the cost of one scrape's collection of the registry
// NewRegistry builds (the Go runtime, process, build, readiness and, on
// Linux, system metrics), before encoding.
func BenchmarkGather(b *testing.B) {
	reg, err := NewRegistry(Options{Version: "dev", ABI: "1.4", Ready: func() error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkSystemCollector is the system collector's share: reading
// /proc/stat, /proc/meminfo, /proc/loadavg and /proc/self/status.
func BenchmarkSystemCollector(b *testing.B) {
	c := newSystemCollector()
	if c == nil {
		b.Skip("no system collector on this system")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 4 {
			b.Fatal(len(mfs), err)
		}
	}
}
