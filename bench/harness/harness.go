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
	"slices"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/internal/load"
)

// Options configures Run.
type Options struct {
	// Repo is the repository root (where go.mod is).
	Repo string
	// Out is the folder the report goes to (results.md, results.json).
	Out string
	// Quick runs every load at a tenth of its size, once: a smoke test.
	Quick bool
	// Only, when not empty, runs only the loads whose key it lists (see
	// LoadKeys), for profiling one load.
	Only []string
	// Brokers, when not empty, runs only the brokers it names (BrokerKeys
	// and the candidates' names). Ratios are relative to "propolis", so
	// leave it in to get them.
	Brokers []string
	// Rounds, when above 0, replaces the number of measured rounds of
	// each load (3 in a full run, 1 in a quick one): more rounds make the
	// median steadier on a noisy machine.
	Rounds int
	// TakeoverSessions is the number of persistent sessions the takeover
	// load moves (1,000 in a full run, 100 in a quick one when 0).
	TakeoverSessions int
	// Candidates are Propolis binaries built elsewhere (from another
	// commit, or against a changed dependency with -modfile), each run
	// with the same setup as "propolis", side by side with the others.
	Candidates []Candidate
	// Log receives progress lines.
	Log io.Writer
}

// Candidate is a Propolis binary to measure beside the one built from the
// repository.
type Candidate struct {
	// Name is the broker's name in the report; it must differ from the
	// others'.
	Name string
	// Bin is the binary's path.
	Bin string
}

// BrokerKeys names the brokers Options.Brokers can choose besides the
// candidates, in the order they start (candidates start after propolis).
// The opt-in ones (optInBrokers) run only when Options.Brokers names them.
var BrokerKeys = []string{"propolis", "propolis-wasm-publish", "propolis-wasm-kept", "propolis-intercept-in", "propolis-intercept-out", "mochi", "mosquitto", clusterBroker}

// clusterBroker is the three-node Propolis cluster (cluster.go).
const clusterBroker = "propolis-cluster3"

// optInBrokers run only when Options.Brokers names them: the cluster
// takes three processes and minutes of its own (`make bench-cluster`).
var optInBrokers = []string{clusterBroker}

// brokerLoads are the only loads some brokers run (beside every other
// broker): what their targets compare, no more, so that they add minutes
// only where they are measured. The interceptor brokers run the load of
// their target, the kept-verdict broker the three loads its targets
// compare; the cluster the fan-in and fan-out loads, which it
// compares with one node (and "takeover", its own, after the others).
var brokerLoads = map[string][]string{
	"propolis-wasm-kept":     {"publish0", "publish1", "pairs"},
	"propolis-intercept-in":  {"fanin0"},
	"propolis-intercept-out": {"fanout0"},
	clusterBroker:            {"fanin0", "fanin1", "fanout0", "fanout1"},
}

// ownLoads are the loads that start brokers of their own rather than
// run on the started ones in turn.
var ownLoads = []string{"startup", "reload", "takeover"}

// runsLoad reports whether broker runs load key among the loads every
// broker runs in turn.
func runsLoad(broker, key string) bool {
	only, ok := brokerLoads[broker]
	return !ok || slices.Contains(only, key)
}

// Sizes of the loads: full and quick.
type sizes struct {
	rounds                 int  // measured rounds
	warmup                 bool // one discarded warm-up round first
	memSettle              time.Duration
	stormN, stormConc      int
	fanInPubs, fanInMsgs   int
	fanInMsgsQoS1          int
	fanOutSubs, fanOutMsgs int
	fanOutMsgsQoS1         int
	pubClients             int // publisher-side throughput: clients
	pubMsgsQoS0            int // messages per client at QoS 0
	pubMsgsQoS1            int // messages per client at QoS 1
	pubPayload             int
	pairs, pairMsgs        int
	latencyRate            int
	latencyFor             time.Duration
	idleConns              int
	startWindow            time.Duration // the start-up figures' window ("first 5 s")
	takeoverSessions       int           // persistent sessions the takeover load moves
	takeoverRounds         int           // its rounds, each on a fresh cluster
}

var (
	full = sizes{rounds: 3, warmup: true, memSettle: 2 * time.Second, stormN: 2000, stormConc: 50, fanInPubs: 20, fanInMsgs: 5000, fanInMsgsQoS1: 2500,
		fanOutSubs: 50, fanOutMsgs: 2000, fanOutMsgsQoS1: 1000, pubClients: 10, pubMsgsQoS0: 5000, pubMsgsQoS1: 2000, pubPayload: 100,
		pairs: 10, pairMsgs: 1000, latencyRate: 2000, latencyFor: 5 * time.Second, idleConns: 2000, startWindow: 5 * time.Second, takeoverSessions: 1000}
	quick = sizes{rounds: 1, memSettle: 500 * time.Millisecond, stormN: 200, stormConc: 20, fanInPubs: 5, fanInMsgs: 1000, fanInMsgsQoS1: 500,
		fanOutSubs: 10, fanOutMsgs: 200, fanOutMsgsQoS1: 100, pubClients: 10, pubMsgsQoS0: 500, pubMsgsQoS1: 200, pubPayload: 100,
		pairs: 10, pairMsgs: 100, latencyRate: 500, latencyFor: time.Second, idleConns: 1000, startWindow: time.Second, takeoverSessions: 100}
)

// LoadKeys names the loads Options.Only can choose, in the order they run.
// "takeover" runs on propolis-cluster3 alone, on clusters of its own.
var LoadKeys = []string{"memory", "storm", "publish0", "publish1", "publish1one", "pairs", "fanin0", "fanin1", "fanout0", "fanout1", "latency", "startup", "reload", "takeover"}

// Run builds what it needs, starts the brokers, runs every load against
// each broker in turn, stops them, measures start-up and reload, and
// writes the report. It returns the report.
func Run(o Options) (*Report, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	sz := full
	if o.Quick {
		sz = quick
	}
	if o.Rounds < 0 {
		return nil, fmt.Errorf("rounds %d: must be 1 or more (0: the default)", o.Rounds)
	}
	if o.Rounds > 0 {
		sz.rounds = o.Rounds
	}
	if o.TakeoverSessions < 0 {
		return nil, fmt.Errorf("takeover sessions %d: must be 1 or more (0: the default)", o.TakeoverSessions)
	}
	if o.TakeoverSessions > 0 {
		sz.takeoverSessions = o.TakeoverSessions
	}
	// The take-over rounds: as many as the others', but one for more than
	// 1,000 sessions unless Rounds asks for more (10,000 take minutes).
	sz.takeoverRounds = sz.rounds
	if sz.takeoverSessions > 1000 && o.Rounds == 0 {
		sz.takeoverRounds = 1
	}
	only := map[string]bool{}
	for _, k := range o.Only {
		if !slices.Contains(LoadKeys, k) {
			return nil, fmt.Errorf("unknown load %q (loads: %s)", k, strings.Join(LoadKeys, ", "))
		}
		only[k] = true
	}
	want := func(k string) bool { return len(only) == 0 || only[k] }
	names := slices.Clone(BrokerKeys)
	for _, c := range o.Candidates {
		if c.Name == "" || slices.Contains(names, c.Name) {
			return nil, fmt.Errorf("candidate %s: name %q empty or taken", c.Bin, c.Name)
		}
		if _, err := os.Stat(c.Bin); err != nil {
			return nil, fmt.Errorf("candidate %s: %w", c.Name, err)
		}
		names = append(names, c.Name)
	}
	for _, k := range o.Brokers {
		if !slices.Contains(names, k) {
			return nil, fmt.Errorf("unknown broker %q (brokers: %s)", k, strings.Join(names, ", "))
		}
	}
	runs := func(k string) bool {
		if len(o.Brokers) == 0 {
			return !slices.Contains(optInBrokers, k)
		}
		return slices.Contains(o.Brokers, k)
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
	propolis := filepath.Join(bin, "propolis")
	if err := build(o.Repo, nil, "-o", propolis, "./cmd/propolis"); err != nil {
		return nil, err
	}
	if err := build(o.Repo, nil, "-o", filepath.Join(bin, "mochi-baseline"), "./bench/cmd/mochi-baseline"); err != nil {
		return nil, err
	}
	examples := filepath.Join(work, "examples")
	for _, ex := range []string{"allow-all", "publish-guard", "topic-lint"} {
		out := filepath.Join(examples, ex)
		if err := build(filepath.Join(o.Repo, "examples"), []string{"GOOS=wasip1", "GOARCH=wasm"},
			"-buildmode=c-shared", "-trimpath", "-o", filepath.Join(out, ex+".wasm"), "./"+ex); err != nil {
			return nil, err
		}
		if err := copyFile(filepath.Join(o.Repo, "examples", ex, "propolis-extension.yaml"), filepath.Join(out, "propolis-extension.yaml")); err != nil {
			return nil, err
		}
	}

	// The interceptor benchmark guests (testdata/guests), laid out like
	// the examples: a no-op inbound interceptor, and an outbound one whose
	// filter matches no topic the loads use.
	for _, g := range []struct{ id, manifest string }{
		{"interceptnoop", "id: interceptnoop\nname: no-op inbound PUBLISH interceptor (benchmark)\nversion: 1.0.0\npriority: 10\nmodule: interceptnoop.wasm\nabi: \"1.2\"\n"},
		{"interceptnomatch", "id: interceptnomatch\nname: outbound PUBLISH interceptor matching nothing (benchmark)\nversion: 1.0.0\npriority: 10\nmodule: interceptnomatch.wasm\nabi: \"1.2\"\n"},
	} {
		out := filepath.Join(examples, g.id)
		if err := build(filepath.Join(o.Repo, "testdata", "guests"), []string{"GOOS=wasip1", "GOARCH=wasm"},
			"-buildmode=c-shared", "-trimpath", "-o", filepath.Join(out, g.id+".wasm"), "./"+g.id); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(out, "propolis-extension.yaml"), []byte(g.manifest), 0o644); err != nil {
			return nil, err
		}
	}

	var brokers []*Broker
	defer func() {
		for _, b := range brokers {
			b.Stop()
		}
	}()
	type starter struct {
		key   string
		start func() (*Broker, error)
	}
	starters := []starter{
		{"propolis", func() (*Broker, error) {
			return startPropolis(work, "propolis", propolis, []string{"allow-all"}, examples, "none")
		}},
		{"propolis-wasm-publish", func() (*Broker, error) {
			return startPropolis(work, "propolis-wasm-publish", propolis, []string{"allow-all", "publish-guard"}, examples, "none")
		}},
		{"propolis-wasm-kept", func() (*Broker, error) {
			return startPropolis(work, "propolis-wasm-kept", propolis, []string{"allow-all", "topic-lint"}, examples, "none")
		}},
		{"propolis-intercept-in", func() (*Broker, error) {
			return startPropolis(work, "propolis-intercept-in", propolis, []string{"allow-all", "interceptnoop"}, examples, "none")
		}},
		{"propolis-intercept-out", func() (*Broker, error) {
			return startPropolis(work, "propolis-intercept-out", propolis, []string{"allow-all", "interceptnomatch"}, examples, "none")
		}},
		{"mochi", func() (*Broker, error) { return startMochi(work, filepath.Join(bin, "mochi-baseline")) }},
		{"mosquitto", func() (*Broker, error) { return startMosquitto(work) }},
		{clusterBroker, func() (*Broker, error) {
			return startCluster(work, clusterBroker, propolis, []string{"allow-all"}, examples, "none")
		}},
	}
	for i, c := range o.Candidates {
		starters = slices.Insert(starters, 1+i, starter{c.Name, func() (*Broker, error) {
			return startPropolis(work, c.Name, c.Bin, []string{"allow-all"}, examples, "none")
		}})
	}
	// needed reports whether a load chosen to run in turn applies to
	// broker k (none does for --only startup, reload or takeover).
	needed := func(k string) bool {
		for _, l := range LoadKeys {
			if want(l) && !slices.Contains(ownLoads, l) && runsLoad(k, l) {
				return true
			}
		}
		return false
	}
	for _, st := range starters {
		if !runs(st.key) || !needed(st.key) {
			continue
		}
		b, err := st.start()
		if err != nil {
			return nil, err
		}
		logf("started %s on %s (%s)", b.Name, b.Addr, b.Setup)
		brokers = append(brokers, b)
	}

	rep := newReport(o.Quick, sz.rounds, brokers)
	began := time.Now()
	record := func(loadName, metric, unit string, higher bool, b *Broker, v float64, keep bool) {
		if keep {
			rep.add(loadName, metric, unit, higher, b.Name, v)
		}
		tag := ""
		if !keep {
			tag = " (warm-up, discarded)"
		}
		logf("  %-34s %-22s %-22s %12.2f %s%s", loadName, metric, b.Name, v, unit, tag)
	}
	type job struct {
		key, name string
		once      bool // run once, no warm-up round (idle memory: a broker keeps what it grew to)
		run       func(b *Broker, keep bool) error
	}
	// cpuPer runs f and records the broker's CPU time per message (µs)
	// during it, when the system reports it (Linux): the cost of a message
	// to the broker, which the machine's other load disturbs far less than
	// it does rates and latencies.
	// A cluster's is that of all its nodes.
	cpuPer := func(label string, b *Broker, keep bool, messages int, f func() error) error {
		before, cerr := b.CPU()
		if err := f(); err != nil {
			return err
		}
		if after, err := b.CPU(); cerr == nil && err == nil && messages > 0 {
			record(label, "broker CPU per message", "µs", false, b, float64(after-before)/float64(time.Microsecond)/float64(messages), keep)
		}
		return nil
	}
	flowLoad := func(key, label string, pubs, subs, msgs int, qos byte, unit string) job {
		return job{key: key, name: label, run: func(b *Broker, keep bool) error {
			dropped := clusterDropped(b)
			defer func() {
				if len(b.Nodes) > 0 {
					record(label, unit+" dropped by the nodes' routers", "count", false, b, float64(clusterDropped(b)-dropped), keep)
				}
			}()
			return cpuPer(label, b, keep, pubs*msgs, func() error {
				pubAddrs, subAddrs := placement(b, pubs, subs)
				res, err := load.Flow{Addr: b.Addr, PublisherAddrs: pubAddrs, SubscriberAddrs: subAddrs, Name: key, Publishers: pubs, Subscribers: subs, Messages: pubs * msgs,
					QoS: qos, SubscribeQoS: qos, Timeout: loadTimeout}.Run()
				if err == nil {
					record(label, unit+"/s", "1/s", true, b, res.Rate(), keep)
					record(label, unit+" lost", "count", false, b, float64(res.Lost), keep)
				}
				return err
			})
		}}
	}
	loads := []job{
		{key: "memory", name: fmt.Sprintf("memory, %d idle connections after %d", sz.idleConns, sz.idleConns), once: true, run: func(b *Broker, keep bool) error {
			v, err := idleMemory(b.Addr, b.PID(), sz.idleConns, sz.memSettle)
			if err == nil {
				record(fmt.Sprintf("memory, %d idle connections after %d", sz.idleConns, sz.idleConns), "RSS per connection", "KiB", false, b, v, keep)
			}
			return err
		}},
		{key: "storm", name: "connect storm", run: func(b *Broker, keep bool) error {
			rate, p99, err := connectStorm(b.Addr, sz.stormN, sz.stormConc)
			if err == nil {
				name := fmt.Sprintf("connect storm (%d connects, %d at once)", sz.stormN, sz.stormConc)
				record(name, "connects/s", "1/s", true, b, rate, keep)
				record(name, "p99 CONNACK latency", "ms", false, b, p99, keep)
			}
			return err
		}},
		{key: "publish0", name: "publish QoS 0", run: func(b *Broker, keep bool) error {
			res, err := load.Publish{Addr: b.Addr, Name: "publish0", Publishers: sz.pubClients, Messages: sz.pubMsgsQoS0,
				PayloadSize: sz.pubPayload, Timeout: loadTimeout}.Run()
			if err == nil {
				record(fmt.Sprintf("publish QoS 0 (%d clients × %d × %d B, one topic, no subscriber)", sz.pubClients, sz.pubMsgsQoS0, sz.pubPayload),
					"messages/s", "1/s", true, b, res.Rate(), keep)
			}
			return err
		}},
		{key: "publish1", name: "publish QoS 1", run: func(b *Broker, keep bool) error {
			res, err := load.Publish{Addr: b.Addr, Name: "publish1", Publishers: sz.pubClients, Messages: sz.pubMsgsQoS1, QoS: 1,
				PayloadSize: sz.pubPayload, Timeout: loadTimeout}.Run()
			if err == nil {
				record(fmt.Sprintf("publish QoS 1 (%d clients × %d × %d B, 64 in flight each, one topic, no subscriber)", sz.pubClients, sz.pubMsgsQoS1, sz.pubPayload),
					"PUBACKs/s", "1/s", true, b, res.Rate(), keep)
			}
			return err
		}},
		{key: "publish1one", name: "publish QoS 1, one in flight", run: func(b *Broker, keep bool) error {
			name := fmt.Sprintf("publish QoS 1, one in flight (%d clients × %d × %d B, each waits for its PUBACK, one topic, no subscriber)", sz.pubClients, sz.pubMsgsQoS1, sz.pubPayload)
			return cpuPer(name, b, keep, sz.pubClients*sz.pubMsgsQoS1, func() error {
				res, err := load.Publish{Addr: b.Addr, Name: "publish1one", Publishers: sz.pubClients, Messages: sz.pubMsgsQoS1, QoS: 1,
					InFlight: 1, PayloadSize: sz.pubPayload, Timeout: loadTimeout}.Run()
				if err == nil {
					record(name, "PUBACKs/s", "1/s", true, b, res.Rate(), keep)
				}
				return err
			})
		}},
		{key: "pairs", name: "QoS 1 latency, pairs", run: func(b *Broker, keep bool) error {
			name := fmt.Sprintf("QoS 1 latency (%d pub/sub pairs × %d messages, one in flight per pair)", sz.pairs, sz.pairMsgs)
			return cpuPer(name, b, keep, sz.pairs*sz.pairMsgs, func() error {
				lats, err := load.Pairs{Addr: b.Addr, Name: "pairs", Pairs: sz.pairs, Messages: sz.pairMsgs, Timeout: loadTimeout}.Run()
				if err == nil {
					record(name, "mean", "ms", false, b, ms(lats.Mean()), keep)
					record(name, "p99", "ms", false, b, ms(lats.Percentile(0.99)), keep)
				}
				return err
			})
		}},
		flowLoad("fanin0", fmt.Sprintf("fan-in QoS 0 (%d pub → 1 sub)", sz.fanInPubs), sz.fanInPubs, 1, sz.fanInMsgs, 0, "messages"),
		flowLoad("fanin1", fmt.Sprintf("fan-in QoS 1 (%d pub → 1 sub)", sz.fanInPubs), sz.fanInPubs, 1, sz.fanInMsgsQoS1, 1, "messages"),
		flowLoad("fanout0", fmt.Sprintf("fan-out QoS 0 (1 pub → %d sub)", sz.fanOutSubs), 1, sz.fanOutSubs, sz.fanOutMsgs, 0, "deliveries"),
		flowLoad("fanout1", fmt.Sprintf("fan-out QoS 1 (1 pub → %d sub)", sz.fanOutSubs), 1, sz.fanOutSubs, sz.fanOutMsgsQoS1, 1, "deliveries"),
		{key: "latency", name: "latency at a fixed rate", run: func(b *Broker, keep bool) error {
			p50, p99, err := latency(b.Addr, sz.latencyRate, sz.latencyFor)
			if err == nil {
				name := fmt.Sprintf("latency at %d msg/s (QoS 1 publish, QoS 0 subscription)", sz.latencyRate)
				record(name, "p50", "ms", false, b, p50, keep)
				record(name, "p99", "ms", false, b, p99, keep)
			}
			return err
		}},
	}
	// Each load runs against every broker before the next load starts
	// (interleaved), a warm-up round first (discarded; not in a quick run), then sz.rounds
	// measured rounds, with the broker order rotated from round to round
	// and load to load so no broker always goes first. The report gives
	// the median of the rounds and their spread.
	for i, l := range loads {
		var these []*Broker
		for _, b := range brokers {
			if runsLoad(b.Name, l.key) {
				these = append(these, b)
			}
		}
		if !want(l.key) || len(these) == 0 {
			continue
		}
		logf("load: %s", l.name)
		rounds, first := sz.rounds, 0 // first: the first measured round
		if sz.warmup {
			rounds, first = rounds+1, 1
		}
		if l.once {
			rounds, first = 1, 0
		}
		for r := 0; r < rounds; r++ {
			for j := range these {
				b := these[(i+j+r)%len(these)]
				if err := l.run(b, r >= first); err != nil {
					if len(b.Nodes) == 0 {
						return nil, fmt.Errorf("%s on %s: %w", l.name, b.Name, err)
					}
					// A cluster's failed round is a finding, not the end
					// of the run: noted, and the figures of its other
					// rounds kept.
					rep.ClusterNotes = append(rep.ClusterNotes, fmt.Sprintf("%s, round %d of %d: failed: %v", l.name, r+1, rounds, err))
					logf("  %s on %s, round %d: failed: %v", l.name, b.Name, r+1, err)
				}
				time.Sleep(200 * time.Millisecond) // let connections close
			}
		}
	}
	for _, b := range brokers {
		b.Stop()
		rep.Drops = append(rep.Drops, dropLines(b))
	}
	brokers = nil
	if want("startup") || want("reload") {
		reloadOnly := !want("startup")
		if err := startupLoads(rep, work, propolis, filepath.Join(bin, "mochi-baseline"), examples, sz, reloadOnly, logf); err != nil {
			return nil, err
		}
	}
	if want("takeover") && runs(clusterBroker) {
		if err := takeoverLoads(rep, work, propolis, examples, sz, logf); err != nil {
			return nil, err
		}
	}
	rep.Took = time.Since(began).Round(time.Second).String()
	if err := rep.write(o.Out); err != nil {
		return nil, err
	}
	logf("report written to %s (loads took %s)", o.Out, rep.Took)
	return rep, nil
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

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
