package metrics

import (
	"os"
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

// Register adds to reg:
//
//   - the Go runtime's metrics (go_*): the classic memstats-like ones and
//     every metric of runtime/metrics (GC cycles and pauses, scheduler
//     latencies, goroutines, memory classes, CPU classes), as the
//     client library names them;
//   - the process's (process_*): CPU seconds, resident and virtual memory,
//     open file descriptors and their limit, start time (Linux; other
//     systems report what the client library can);
//   - propolis_build_info and propolis_ready;
//   - the system collector (system_linux.go), on Linux.
//
// It fails only if reg already holds one of them.
func Register(reg prometheus.Registerer, opts Options) error {
	cs := []prometheus.Collector{
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsAll)),
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
