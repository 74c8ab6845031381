package metrics

import (
	"os"
	"regexp"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Options says what the registry's own metrics report.
type Options struct {
	// Version is the broker's version (propolis_build_info's version
	// label), ABI the extension ABI version it implements (abi.Version).
	Version, ABI string
	// Ready is the readiness test /readyz answers with (nil error: ready);
	// propolis_ready is 1 when it passes. Required.
	Ready func() error
}

// NewRegistry returns a registry holding what Register adds. Callers add
// the broker's and the host's collectors to it, then serve it.
func NewRegistry(opts Options) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if err := Register(reg, opts); err != nil {
		return nil, err
	}
	return reg, nil
}

// runtimeMetrics are the runtime/metrics the Go collector exports:
// garbage collection, memory classes, the scheduler (goroutines,
// latencies, pauses), CPU classes (GC and scavenger CPU time against the
// total) and mutex waits. Left out: /godebug/* (fifty counters of
// non-default GODEBUG behaviours) and /cgo/*.
//
// The classic memstats-like set (go_memstats_* but
// go_memstats_last_gc_time_seconds) is turned off: its gauge
// go_memstats_alloc_bytes and counter go_memstats_alloc_bytes_total are
// one family name in OpenMetrics (which drops a counter's _total), so
// serving both makes the OpenMetrics answer invalid (client_golang issue
// 829, open). runtime/metrics has each of their figures
// (go_memory_classes_heap_objects_bytes, go_gc_heap_allocs_bytes_total,
// ...). RATIONALE.md has the choice.
var runtimeMetrics = []collectors.GoRuntimeMetricsRule{
	collectors.MetricsGC,
	collectors.MetricsMemory,
	collectors.MetricsScheduler,
	{Matcher: regexp.MustCompile(`^/cpu/classes/`)},
	{Matcher: regexp.MustCompile(`^/sync/`)},
}

// Register adds to reg:
//
//   - the Go runtime's metrics (go_*): goroutines, threads, GC pause
//     summary, go_info, and those of runtime/metrics that runtimeMetrics
//     lists (GC cycles and pauses, scheduler latencies, memory classes,
//     CPU classes), as the client library names them;
//   - the process's (process_*): CPU seconds, resident and virtual memory,
//     open file descriptors and their limit, start time (Linux; other
//     systems report what the client library can);
//   - propolis_build_info and propolis_ready;
//   - the system collector (system_linux.go), on Linux.
//
// It fails only if reg already holds one of them.
func Register(reg prometheus.Registerer, opts Options) error {
	cs := []prometheus.Collector{
		collectors.NewGoCollector(collectors.WithGoCollectorMemStatsMetricsDisabled(), collectors.WithGoCollectorRuntimeMetrics(runtimeMetrics...)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{PidFn: func() (int, error) { return os.Getpid(), nil }}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "propolis_build_info",
			Help:        "Always 1; the labels say which Propolis runs: its version, the extension ABI version it implements and the Go version it was built with.",
			ConstLabels: prometheus.Labels{"version": opts.Version, "abi": opts.ABI, "go_version": runtime.Version()},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "propolis_ready",
			Help: "1 when the broker is ready for clients (the test of /readyz: listeners and store open, extensions loaded, a security extension serving), else 0.",
		}, func() float64 {
			if opts.Ready() != nil {
				return 0
			}
			return 1
		}),
	}
	if sys := newSystemCollector(); sys != nil {
		cs = append(cs, sys)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
