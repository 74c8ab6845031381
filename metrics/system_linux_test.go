//go:build linux

package metrics

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

func TestParseStat(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []float64
		err      string
	}{
		{"ten columns", "cpu  3242482 35026 1092668 4006782 37395 0 104925 82731 7 9\ncpu0 1 2 3 4\n",
			[]float64{32424.82, 350.26, 10926.68, 40067.82, 373.95, 0, 1049.25, 827.31}, ""},
		{"old kernel, four columns", "cpu 100 200 300 400\n", []float64{1, 2, 3, 4}, ""},
		{"not the cpu line", "intr 1 2 3\n", nil, `first line is not the "cpu" line with at least four times`},
		{"bad number", "cpu 1 2 x 4\n", nil, `cpu system time "x": not a number of ticks`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseStat = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	in := "MemTotal:       16314536 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\nBuffers:           20000 kB\n" +
		"Cached:          3000000 kB\nSwapCached:            0 kB\nHugePages_Total:       0\nSwapTotal:       2097148 kB\nSwapFree:        2097000 kB\n"
	kinds, values, err := parseMeminfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	wantKinds := []string{"total", "available", "free", "buffers", "cached", "swap_total", "swap_free"}
	wantValues := []float64{16314536 * 1024, 8000000 * 1024, 1000000 * 1024, 20000 * 1024, 3000000 * 1024, 2097148 * 1024, 2097000 * 1024}
	if !reflect.DeepEqual(kinds, wantKinds) || !reflect.DeepEqual(values, wantValues) {
		t.Errorf("parseMeminfo = %v %v", kinds, values)
	}
	// Before Linux 3.14 there is no MemAvailable: the kind is left out.
	kinds, _, err = parseMeminfo([]byte("MemTotal: 100 kB\nMemFree: 50 kB\n"))
	if err != nil || !reflect.DeepEqual(kinds, []string{"total", "free"}) {
		t.Errorf("old meminfo: %v, %v", kinds, err)
	}
	if _, _, err := parseMeminfo([]byte("MemTotal: lots kB\n")); err == nil || err.Error() != `MemTotal: "lots" is not a number of kB` {
		t.Errorf("bad meminfo: %v", err)
	}
}

func TestParseLoadavg(t *testing.T) {
	got, err := parseLoadavg([]byte("10.65 8.98 4.81 9/134 10615\n"))
	if err != nil || !reflect.DeepEqual(got, []float64{10.65, 8.98, 4.81}) {
		t.Errorf("parseLoadavg = %v, %v", got, err)
	}
	if _, err := parseLoadavg([]byte("1.0 2.0\n")); err == nil || err.Error() != `want three load averages, got "1.0 2.0"` {
		t.Errorf("short loadavg: %v", err)
	}
}

func TestNativeMemoryArithmetic(t *testing.T) {
	status := []byte("Name:\tpropolis\nVmRSS:\t  300000 kB\nRssAnon:\t  200000 kB\nRssFile:\t  100000 kB\n")
	for _, tt := range []struct {
		name   string
		goRes  uint64
		want   uint64
		status []byte
		err    string
	}{
		{"some native", 150000 * 1024, 50000 * 1024, status, ""},
		{"Go above RssAnon (untouched Go pages)", 250000 * 1024, 0, status, ""},
		{"no RssAnon", 0, 0, []byte("VmRSS: 1 kB\n"), "no RssAnon (Linux 4.5 or later has it)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := nativeMemory(tt.status, tt.goRes)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("nativeMemory = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// collectSystem gathers the system collector alone.
func collectSystem(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
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

// byLabel returns a family's values by the value of its one label.
func byLabel(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		v := m.GetGauge().GetValue()
		if m.Counter != nil {
			v = m.GetCounter().GetValue()
		}
		out[m.GetLabel()[0].GetValue()] = v
	}
	return out
}

// TestSystemCollectorReadsThisMachine: on this machine's /proc, every mode,
// kind and period is there with a plausible value, and CPU time does not
// go back between two scrapes.
func TestSystemCollectorReadsThisMachine(t *testing.T) {
	c := newSystemCollector()
	first := collectSystem(t, c)
	cpu := byLabel(first["propolis_host_cpu_seconds_total"])
	if len(cpu) != len(cpuModes) || cpu["idle"] <= 0 || cpu["user"] <= 0 {
		t.Errorf("cpu seconds %v", cpu)
	}
	mem := byLabel(first["propolis_host_memory_bytes"])
	if mem["total"] <= 0 || mem["available"] <= 0 || mem["available"] > mem["total"] || mem["free"] > mem["total"] {
		t.Errorf("memory %v", mem)
	}
	load := byLabel(first["propolis_host_load_average"])
	if len(load) != 3 || load["1m"] < 0 || load["15m"] < 0 {
		t.Errorf("load %v", load)
	}
	if f := first["propolis_process_native_memory_bytes"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() < 0 {
		t.Errorf("native memory %v", f)
	}
	second := byLabel(collectSystem(t, c)["propolis_host_cpu_seconds_total"])
	for mode, v := range cpu {
		if second[mode] < v {
			t.Errorf("cpu %s went back from %v to %v", mode, v, second[mode])
		}
	}
}

// TestSystemCollectorUnreadableFile: a /proc file that cannot be read
// fails the scrape's gathering with an error naming it (an HTTP scrape
// with ContinueOnError still serves the rest).
func TestSystemCollectorUnreadableFile(t *testing.T) {
	proc := t.TempDir()
	for name, content := range map[string]string{"stat": "cpu 1 2 3 4\n", "loadavg": "0.1 0.2 0.3 1/2 3\n"} {
		if err := os.WriteFile(filepath.Join(proc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := newSystemCollector().(*systemCollector)
	c.proc = proc // no meminfo there
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(proc, "meminfo")+": open ") {
		t.Fatalf("Gather error %v, want one naming meminfo", err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if !names["propolis_host_cpu_seconds_total"] || !names["propolis_host_load_average"] || names["propolis_host_memory_bytes"] {
		t.Errorf("families gathered despite the error: %v", names)
	}
}

// TestNativeMemorySeesMmap: 64 MiB of anonymous memory mapped outside the
// Go runtime (as wazero maps compiled code) and touched shows in
// propolis_process_native_memory_bytes, and leaves it when unmapped.
func TestNativeMemorySeesMmap(t *testing.T) {
	c := newSystemCollector()
	native := func() float64 {
		return collectSystem(t, c)["propolis_process_native_memory_bytes"].GetMetric()[0].GetGauge().GetValue()
	}
	const size = 64 << 20
	before := native()
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	unmapped := false
	defer func() {
		if !unmapped {
			_ = syscall.Munmap(mem)
		}
	}()
	for i := 0; i < size; i += os.Getpagesize() {
		mem[i] = 1
	}
	var during float64
	poll.Until(t, "native memory to grow by most of 64 MiB", func() bool {
		during = native()
		return during-before >= size*7/8
	})
	if err := syscall.Munmap(mem); err != nil {
		t.Fatal(err)
	}
	unmapped = true
	poll.Until(t, "native memory to drop by most of 64 MiB once unmapped", func() bool {
		return during-native() >= size*7/8
	})
}
