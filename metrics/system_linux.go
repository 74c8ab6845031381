//go:build linux

package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// The system collector reads, at each scrape, the host machine's CPU time
// (/proc/stat), memory (/proc/meminfo) and load average (/proc/loadavg),
// and works out the process's native memory (/proc/self/status against
// the Go runtime's own figures). Each part that cannot be read costs its
// own metrics only: the scrape reports the error and serves the rest.

// userHZ is the unit of /proc/stat's CPU times: the kernel's USER_HZ,
// which is 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)
// would need cgo to ask).
const userHZ = 100

// cpuModes are the columns of /proc/stat's "cpu" line, in order, that
// propolis_host_cpu_seconds_total reports. The guest and guest_nice
// columns that follow are left out: the kernel counts that time in user
// and nice already.
var cpuModes = []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}

// memKinds maps /proc/meminfo keys to propolis_host_memory_bytes' kind
// label. A key the kernel does not have (MemAvailable before Linux 3.14)
// is left out.
var memKinds = []struct{ key, kind string }{
	{"MemTotal", "total"},
	{"MemAvailable", "available"},
	{"MemFree", "free"},
	{"Buffers", "buffers"},
	{"Cached", "cached"},
	{"SwapTotal", "swap_total"},
	{"SwapFree", "swap_free"},
}

// loadPeriods label propolis_host_load_average's three figures.
var loadPeriods = []string{"1m", "5m", "15m"}

// systemCollector is the system collector; proc is where procfs is
// mounted ("/proc"), self the process's folder in it.
type systemCollector struct {
	proc, self                 string
	cpu, mem, load, nativeDesc *prometheus.Desc
}

// newSystemCollector returns the collector of the host machine's CPU,
// memory and load and of the process's native memory.
func newSystemCollector() prometheus.Collector {
	return &systemCollector{
		proc: "/proc",
		self: "/proc/self",
		cpu: prometheus.NewDesc("propolis_host_cpu_seconds_total",
			"CPU time of the whole machine (every CPU, every process) by mode, from /proc/stat.", []string{"mode"}, nil),
		mem: prometheus.NewDesc("propolis_host_memory_bytes",
			"Memory of the whole machine by kind, from /proc/meminfo: total, available (what can be used without swapping), free, buffers, cached, swap_total, swap_free.", []string{"kind"}, nil),
		load: prometheus.NewDesc("propolis_host_load_average",
			"Load average of the machine over the period: runnable and uninterruptible tasks, from /proc/loadavg.", []string{"period"}, nil),
		nativeDesc: prometheus.NewDesc("propolis_process_native_memory_bytes",
			"Resident anonymous memory of the process the Go runtime does not account for (compiled Wasm code, C allocations): RssAnon of /proc/self/status minus the Go runtime's mapped and unreleased memory, at least 0.", nil, nil),
	}
}

// Describe sends the four descriptors.
func (c *systemCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cpu
	ch <- c.mem
	ch <- c.load
	ch <- c.nativeDesc
}

// Collect reads /proc and sends the metrics, or, for a part it cannot
// read, an invalid metric with the error (the scrape serves the rest).
func (c *systemCollector) Collect(ch chan<- prometheus.Metric) {
	c.collect(ch, c.cpu, filepath.Join(c.proc, "stat"), func(b []byte) error {
		secs, err := parseStat(b)
		for i, v := range secs {
			ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, v, cpuModes[i])
		}
		return err
	})
	c.collect(ch, c.mem, filepath.Join(c.proc, "meminfo"), func(b []byte) error {
		kinds, values, err := parseMeminfo(b)
		for i := range kinds {
			ch <- prometheus.MustNewConstMetric(c.mem, prometheus.GaugeValue, values[i], kinds[i])
		}
		return err
	})
	c.collect(ch, c.load, filepath.Join(c.proc, "loadavg"), func(b []byte) error {
		loads, err := parseLoadavg(b)
		for i, v := range loads {
			ch <- prometheus.MustNewConstMetric(c.load, prometheus.GaugeValue, v, loadPeriods[i])
		}
		return err
	})
	c.collect(ch, c.nativeDesc, filepath.Join(c.self, "status"), func(b []byte) error {
		n, err := nativeMemory(b, goResident())
		if err == nil {
			ch <- prometheus.MustNewConstMetric(c.nativeDesc, prometheus.GaugeValue, float64(n))
		}
		return err
	})
}

// collect reads file and hands it to send; an error of either becomes an
// invalid metric of desc naming the file.
func (c *systemCollector) collect(ch chan<- prometheus.Metric, desc *prometheus.Desc, file string, send func([]byte) error) {
	b, err := os.ReadFile(file)
	if err == nil {
		err = send(b)
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(desc, fmt.Errorf("%s: %w", file, err))
	}
}

// parseStat returns the CPU seconds of each of cpuModes present on the
// "cpu" line (the sum over CPUs) of /proc/stat.
func parseStat(b []byte) ([]float64, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return nil, errors.New(`first line is not the "cpu" line with at least four times`)
	}
	f = f[1:]
	if len(f) > len(cpuModes) {
		f = f[:len(cpuModes)]
	}
	secs := make([]float64, len(f))
	for i, s := range f {
		ticks, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cpu %s time %q: not a number of ticks", cpuModes[i], s)
		}
		secs[i] = float64(ticks) / userHZ
	}
	return secs, nil
}

// parseMeminfo returns the kinds of memKinds /proc/meminfo has, with their
// values in bytes.
func parseMeminfo(b []byte) (kinds []string, values []float64, err error) {
	kb, err := fieldsKB(b)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range memKinds {
		if v, ok := kb[k.key]; ok {
			kinds = append(kinds, k.kind)
			values = append(values, float64(v)*1024)
		}
	}
	if len(kinds) == 0 {
		return nil, nil, errors.New("no MemTotal, MemFree or other known key")
	}
	return kinds, values, nil
}

// fieldsKB reads "Key:   123 kB" lines (as in /proc/meminfo and
// /proc/PID/status) into key -> kB; lines of another shape are skipped.
func fieldsKB(b []byte) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		f := strings.Fields(rest)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number of kB", key, f[0])
		}
		out[key] = v
	}
	return out, sc.Err()
}

// parseLoadavg returns the 1, 5 and 15 minute load averages of
// /proc/loadavg.
func parseLoadavg(b []byte) ([]float64, error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return nil, fmt.Errorf("want three load averages, got %q", strings.TrimSpace(string(b)))
	}
	loads := make([]float64, 3)
	for i := range loads {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, fmt.Errorf("load average %q: not a number", f[i])
		}
		loads[i] = v
	}
	return loads, nil
}

// goResident returns the memory the Go runtime has mapped and not given
// back to the OS: runtime/metrics' /memory/classes/total:bytes (every
// byte the runtime mapped: heap, stacks, metadata, profiling buckets,
// other) minus /memory/classes/heap/released:bytes (heap it returned to
// the OS, which is mapped but not resident).
func goResident() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	rtmetrics.Read(s)
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}

// nativeMemory returns the process's native memory: RssAnon of the
// /proc/PID/status text (resident anonymous pages; the executable's own
// file-backed pages and shared memory are left out) minus goResident,
// at least 0.
//
// What remains is anonymous memory the Go runtime did not map: mostly
// wazero's compiled machine code of every extension (mmap'd, executable;
// Wasm linear memories are Go slices, in the Go figures), and C
// allocations (Pebble's block cache when built with cgo). It is an
// estimate: Go memory mapped but never touched is not resident yet and
// makes it read low (it never reads high because of Go memory), and the
// two readings are not atomic, so a change between them shows for one
// scrape.
func nativeMemory(status []byte, goResident uint64) (uint64, error) {
	kb, err := fieldsKB(status)
	if err != nil {
		return 0, err
	}
	anon, ok := kb["RssAnon"]
	if !ok {
		return 0, errors.New("no RssAnon (Linux 4.5 or later has it)")
	}
	if anon*1024 < goResident {
		return 0, nil
	}
	return anon*1024 - goResident, nil
}
