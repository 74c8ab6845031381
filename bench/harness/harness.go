// Package harness runs Propolis side by side with plain mochi-mqtt and
// Mosquitto on loopback, runs the same loads against each, interleaved,
// and writes the figures as Markdown and JSON. cmd/propolis-bench is its
// command line; `make bench` runs it.
package harness

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Options configures Run.
type Options struct {
	// Repo is the repository root (where go.mod is).
	Repo string
	// Out is the folder the report goes to (results.md, results.json).
	Out string
	// Quick runs every load at a tenth of its size: a smoke test.
	Quick bool
	// Log receives progress lines.
	Log io.Writer
}

// Sizes of the loads: full and quick.
type sizes struct {
	stormN, stormConc      int
	fanInPubs, fanInMsgs   int
	fanInMsgsQoS1          int
	fanOutSubs, fanOutMsgs int
	fanOutMsgsQoS1         int
	latencyRate            int
	latencyFor             time.Duration
	idleConns              int
}

var (
	full = sizes{stormN: 2000, stormConc: 50, fanInPubs: 20, fanInMsgs: 5000, fanInMsgsQoS1: 2500,
		fanOutSubs: 50, fanOutMsgs: 2000, fanOutMsgsQoS1: 1000, latencyRate: 2000, latencyFor: 5 * time.Second, idleConns: 2000}
	quick = sizes{stormN: 200, stormConc: 20, fanInPubs: 5, fanInMsgs: 1000, fanInMsgsQoS1: 500,
		fanOutSubs: 10, fanOutMsgs: 200, fanOutMsgsQoS1: 100, latencyRate: 500, latencyFor: time.Second, idleConns: 200}
)

// Run builds what it needs, starts the brokers, runs every load against
// each broker in turn, stops them and writes the report. It returns the
// report.
func Run(o Options) (*Report, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	sz := full
	if o.Quick {
		sz = quick
	}
	work, err := os.MkdirTemp("", "propolis-bench")
	if err != nil {
		return nil, err
	}
	if os.Getenv("PROPOLIS_BENCH_KEEP") == "" {
		defer os.RemoveAll(work)
	} else {
		fmt.Fprintf(o.Log, "keeping %s\n", work)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, format+"\n", a...) }

	logf("building propolis, mochi-baseline and the example extensions")
	bin := filepath.Join(work, "bin")
	build := func(dir string, env []string, args ...string) error {
		cmd := exec.Command("go", append([]string{"build"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := build(o.Repo, nil, "-o", filepath.Join(bin, "propolis"), "./cmd/propolis"); err != nil {
		return nil, err
	}
	if err := build(o.Repo, nil, "-o", filepath.Join(bin, "mochi-baseline"), "./bench/cmd/mochi-baseline"); err != nil {
		return nil, err
	}
	examples := filepath.Join(work, "examples")
	for _, ex := range []string{"allow-all", "publish-guard"} {
		out := filepath.Join(examples, ex)
		if err := build(filepath.Join(o.Repo, "examples"), []string{"GOOS=wasip1", "GOARCH=wasm"},
			"-buildmode=c-shared", "-trimpath", "-o", filepath.Join(out, ex+".wasm"), "./"+ex); err != nil {
			return nil, err
		}
		if err := copyFile(filepath.Join(o.Repo, "examples", ex, "propolis-extension.yaml"), filepath.Join(out, "propolis-extension.yaml")); err != nil {
			return nil, err
		}
	}

	var brokers []*Broker
	defer func() {
		for _, b := range brokers {
			b.Stop()
		}
	}()
	for _, s := range []func() (*Broker, error){
		func() (*Broker, error) {
			return startPropolis(work, "propolis", filepath.Join(bin, "propolis"), []string{"allow-all"}, examples, "none")
		},
		func() (*Broker, error) {
			return startPropolis(work, "propolis-wasm-publish", filepath.Join(bin, "propolis"), []string{"allow-all", "publish-guard"}, examples, "none")
		},
		func() (*Broker, error) { return startMochi(work, filepath.Join(bin, "mochi-baseline")) },
		func() (*Broker, error) { return startMosquitto(work) },
	} {
		b, err := s()
		if err != nil {
			return nil, err
		}
		logf("started %s on %s (%s)", b.Name, b.Addr, b.Setup)
		brokers = append(brokers, b)
	}

	rep := newReport(o.Quick, brokers)
	began := time.Now()
	// Each load runs against every broker before the next load starts
	// (interleaved), with the broker order rotated from load to load so
	// no broker always goes first.
	type load struct {
		name string
		run  func(b *Broker) error
	}
	record := func(loadName, metric, unit string, higher bool, b *Broker, v float64) {
		rep.add(loadName, metric, unit, higher, b.Name, v)
		logf("  %-28s %-22s %-10s %12.2f %s", loadName, metric, b.Name, v, unit)
	}
	// Idle memory goes first: a broker that has served the other loads
	// keeps the memory it grew to and reuses it for new connections.
	loads := []load{
		{"idle memory", func(b *Broker) error {
			v, err := idleMemory(b.Addr, b.PID(), sz.idleConns)
			if err == nil {
				record(fmt.Sprintf("memory, %d idle connections", sz.idleConns), "RSS per connection", "KiB", false, b, v)
			}
			return err
		}},
		{"connect storm", func(b *Broker) error {
			rate, p99, err := connectStorm(b.Addr, sz.stormN, sz.stormConc)
			if err == nil {
				record("connect storm", "connects/s", "1/s", true, b, rate)
				record("connect storm", "p99 CONNACK latency", "ms", false, b, p99)
			}
			return err
		}},
		{"fan-in QoS 0", func(b *Broker) error {
			v, lost, err := flow(b.Addr, "fanin0", sz.fanInPubs, 1, sz.fanInMsgs, 0)
			if err == nil {
				name := fmt.Sprintf("fan-in QoS 0 (%d pub → 1 sub)", sz.fanInPubs)
				record(name, "messages/s", "1/s", true, b, v)
				record(name, "messages lost", "count", false, b, float64(lost))
			}
			return err
		}},
		{"fan-in QoS 1", func(b *Broker) error {
			v, lost, err := flow(b.Addr, "fanin1", sz.fanInPubs, 1, sz.fanInMsgsQoS1, 1)
			if err == nil {
				name := fmt.Sprintf("fan-in QoS 1 (%d pub → 1 sub)", sz.fanInPubs)
				record(name, "messages/s", "1/s", true, b, v)
				record(name, "messages lost", "count", false, b, float64(lost))
			}
			return err
		}},
		{"fan-out QoS 0", func(b *Broker) error {
			v, lost, err := flow(b.Addr, "fanout0", 1, sz.fanOutSubs, sz.fanOutMsgs, 0)
			if err == nil {
				name := fmt.Sprintf("fan-out QoS 0 (1 pub → %d sub)", sz.fanOutSubs)
				record(name, "deliveries/s", "1/s", true, b, v)
				record(name, "deliveries lost", "count", false, b, float64(lost))
			}
			return err
		}},
		{"fan-out QoS 1", func(b *Broker) error {
			v, lost, err := flow(b.Addr, "fanout1", 1, sz.fanOutSubs, sz.fanOutMsgsQoS1, 1)
			if err == nil {
				name := fmt.Sprintf("fan-out QoS 1 (1 pub → %d sub)", sz.fanOutSubs)
				record(name, "deliveries/s", "1/s", true, b, v)
				record(name, "deliveries lost", "count", false, b, float64(lost))
			}
			return err
		}},
		{"latency", func(b *Broker) error {
			p50, p99, err := latency(b.Addr, sz.latencyRate, sz.latencyFor)
			if err == nil {
				name := fmt.Sprintf("latency at %d msg/s", sz.latencyRate)
				record(name, "p50", "ms", false, b, p50)
				record(name, "p99", "ms", false, b, p99)
			}
			return err
		}},
	}
	for i, l := range loads {
		logf("load: %s", l.name)
		for j := range brokers {
			b := brokers[(i+j)%len(brokers)]
			if err := l.run(b); err != nil {
				return nil, fmt.Errorf("%s on %s: %w", l.name, b.Name, err)
			}
			time.Sleep(200 * time.Millisecond) // let connections close
		}
	}
	rep.Took = time.Since(began).Round(time.Second).String()
	if err := rep.write(o.Out); err != nil {
		return nil, err
	}
	logf("report written to %s (loads took %s)", o.Out, rep.Took)
	return rep, nil
}

// machine describes where the figures were measured.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.IndexByte(l, ':'); i >= 0 {
					model = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
