package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Report is the harness's output: every figure of every broker (the
// median of the measured rounds), its spread, its ratio to Propolis (the
// "propolis" broker: allow-all, no Wasm call per message), the start-up
// figures and the targets.
type Report struct {
	Time    time.Time       `json:"time"`
	Machine string          `json:"machine"`
	Quick   bool            `json:"quick"`
	Rounds  int             `json:"rounds"`
	Took    string          `json:"took"`
	Limits  string          `json:"limits"`
	Brokers []BrokerInfo    `json:"brokers"`
	Results []Result        `json:"results"`
	Startup []StartupResult `json:"startup"`
	Drops   []DropLog       `json:"drop_logs"`
	Targets []Target        `json:"targets"`
	// ClusterNotes say what the cluster loads saw besides the figures
	// (why CONNECTs were refused during a take-over).
	ClusterNotes []string `json:"cluster_notes,omitempty"`
}

// BrokerInfo names a broker and how it ran.
type BrokerInfo struct {
	Name  string `json:"name"`
	Setup string `json:"setup"`
}

// Result is one figure across brokers.
type Result struct {
	Load   string `json:"load"`
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	Higher bool   `json:"higher_is_better"`
	// Samples are each measured round's figure, per broker.
	Samples map[string][]float64 `json:"samples"`
	// Values are the medians of Samples.
	Values map[string]float64 `json:"values"`
	// Spread is each broker's (max - min) / median over the rounds: how
	// noisy the figure was.
	Spread map[string]float64 `json:"spread"`
	// Ratio is each broker's value divided by Propolis's.
	Ratio map[string]float64 `json:"ratio_to_propolis"`
}

// StartupResult is one start-up or reload case: a sustained QoS 1 publish
// load started with the broker process.
type StartupResult struct {
	Case string `json:"case"`
	// Note adds what the case saw besides the figures (reload time).
	Note string `json:"note,omitempty"`
	// FirstConnackMS is the time from the process start to the first
	// accepting CONNACK, in milliseconds.
	FirstConnackMS float64 `json:"first_connack_ms"`
	// First is PUBACKs per second over the first window after the start
	// (for the reload case: the window in which the module is replaced).
	First float64 `json:"first_window_per_s"`
	// Lowest is the lowest rate over 500 ms within that window (reload).
	Lowest float64 `json:"lowest_500ms_per_s,omitempty"`
	// Steady is PUBACKs per second over the third window.
	Steady float64 `json:"steady_per_s"`
	// Ratio is First / Steady.
	Ratio float64 `json:"ratio"`
	// PerSecond is the rate of every second of the load, from the start:
	// where in the first window the rate was lost.
	PerSecond []float64 `json:"per_second"`
}

// DropLog is what a broker's own log said about messages it dropped during
// the loads: the evidence behind a "lost" figure.
type DropLog struct {
	Broker string `json:"broker"`
	// Lines counts the log lines that mention dropping.
	Lines int `json:"lines"`
	// First is the first such line.
	First string `json:"first,omitempty"`
}

// Target is one goal from the benchmark issue, checked against the figures.
type Target struct {
	Goal   string  `json:"goal"`
	Actual float64 `json:"actual"`
	Want   float64 `json:"want"`
	Met    bool    `json:"met"`
	// Missing is set when the load the target needs did not run.
	Missing bool `json:"missing,omitempty"`
}

// reference is the broker the ratios are relative to.
const reference = "propolis"

func newReport(quick bool, rounds int, brokers []*Broker) *Report {
	r := &Report{Time: time.Now().UTC().Truncate(time.Second), Machine: machine(), Quick: quick, Rounds: rounds,
		Limits: fmt.Sprintf("MQTT 3.1.1 clients; %d QoS 1 messages held per client, in flight or queued (mochi and Propolis send every one at once: "+
			"they have no outbound window for MQTT 3.1.1; Mosquitto: a window of %d and a queue of %d behind it); a client may send %d QoS 1 messages unacknowledged "+
			"(the loads keep at most 64); QoS 0: %d writes pending per client (mochi, Propolis), %d queued packets (Mosquitto)",
			queueLimit, inFlightWindow, queueLimit-inFlightWindow, receiveMaximum, qos0Pending, queueLimit-inFlightWindow)}
	for _, b := range brokers {
		r.Brokers = append(r.Brokers, BrokerInfo{Name: b.Name, Setup: b.Setup})
	}
	return r
}

func (r *Report) add(load, metric, unit string, higher bool, broker string, v float64) {
	for i := range r.Results {
		if res := &r.Results[i]; res.Load == load && res.Metric == metric {
			res.Samples[broker] = append(res.Samples[broker], v)
			return
		}
	}
	r.Results = append(r.Results, Result{Load: load, Metric: metric, Unit: unit, Higher: higher, Samples: map[string][]float64{broker: {v}}})
}

// median returns the median of vs (sorted in place).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	sort.Float64s(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// find returns the result whose load starts with prefix and whose metric
// is metric, or nil.
func (r *Report) find(prefix, metric string) *Result {
	for i := range r.Results {
		if strings.HasPrefix(r.Results[i].Load, prefix) && r.Results[i].Metric == metric {
			return &r.Results[i]
		}
	}
	return nil
}

// finish computes medians, spreads, ratios and the target checks.
func (r *Report) finish() {
	for i := range r.Results {
		res := &r.Results[i]
		res.Values, res.Spread, res.Ratio = map[string]float64{}, map[string]float64{}, map[string]float64{}
		for b, vs := range res.Samples {
			m := median(vs)
			res.Values[b] = m
			if m != 0 {
				res.Spread[b] = (vs[len(vs)-1] - vs[0]) / m
			}
		}
		ref := res.Values[reference]
		for b, v := range res.Values {
			if ref != 0 {
				res.Ratio[b] = v / ref
			}
		}
	}
	// better returns how many times better broker a is than b on the
	// result (>1: a is better), whichever direction the metric goes.
	better := func(res *Result, a, b string) (float64, bool) {
		if res == nil {
			return 0, false
		}
		va, vb := res.Values[a], res.Values[b]
		if va == 0 || vb == 0 {
			return 0, false
		}
		if res.Higher {
			return va / vb, true
		}
		return vb / va, true
	}
	r.Targets = nil
	add := func(goal string, res *Result, a, b string, want float64) {
		v, ok := better(res, a, b)
		r.Targets = append(r.Targets, Target{Goal: goal, Actual: v, Want: want, Met: ok && v >= want, Missing: !ok})
	}
	pub0, pub1 := r.find("publish QoS 0", "messages/s"), r.find("publish QoS 1 (", "PUBACKs/s")
	pub1one := r.find("publish QoS 1, one in flight", "PUBACKs/s")
	latMean, latP99 := r.find("QoS 1 latency", "mean"), r.find("QoS 1 latency", "p99")
	add("QoS 0 publish throughput ≥ 1.0× Mosquitto", pub0, "propolis", "mosquitto", 1.0)
	add("QoS 1 publish throughput ≥ 1.0× Mosquitto", pub1, "propolis", "mosquitto", 1.0)
	add("QoS 1 publish throughput, one in flight, ≥ 1.0× Mosquitto", pub1one, "propolis", "mosquitto", 1.0)
	add("QoS 1 latency (mean) ≥ 1.0× Mosquitto", latMean, "propolis", "mosquitto", 1.0)
	add("QoS 1 latency (p99) ≥ 1.0× Mosquitto", latP99, "propolis", "mosquitto", 1.0)
	add("QoS 0 publish with Wasm authorize_publish ≥ 0.95× without", pub0, "propolis-wasm-publish", "propolis", 0.95)
	add("QoS 1 publish with Wasm authorize_publish ≥ 0.95× without", pub1, "propolis-wasm-publish", "propolis", 0.95)
	add("QoS 1 latency (mean) with Wasm authorize_publish ≥ 0.95× without", latMean, "propolis-wasm-publish", "propolis", 0.95)
	add("QoS 1 latency (p99) with Wasm authorize_publish ≥ 0.95× without", latP99, "propolis-wasm-publish", "propolis", 0.95)
	add("QoS 0 publish with Wasm authorize_publish, verdicts kept (ABI 1.4) ≥ 0.95× without", pub0, "propolis-wasm-kept", "propolis", 0.95)
	add("QoS 1 publish with Wasm authorize_publish, verdicts kept (ABI 1.4) ≥ 0.95× without", pub1, "propolis-wasm-kept", "propolis", 0.95)
	add("QoS 1 latency (mean) with Wasm authorize_publish, verdicts kept (ABI 1.4) ≥ 0.95× without", latMean, "propolis-wasm-kept", "propolis", 0.95)
	add("fan-in QoS 0 with a no-op Wasm intercept_publish_inbound ≥ 0.9× without", r.find("fan-in QoS 0", "messages/s"), "propolis-intercept-in", "propolis", 0.9)
	add("fan-out QoS 0 with an intercept_publish_outbound filter matching nothing ≥ 0.98× without", r.find("fan-out QoS 0", "deliveries/s"), "propolis-intercept-out", "propolis", 0.98)
	for _, s := range r.Startup {
		if strings.HasPrefix(s.Case, "propolis") && strings.Contains(s.Case, "fresh data folder") {
			r.Targets = append(r.Targets, Target{Goal: "first-window throughput after a fresh start ≥ 0.9× steady: " + s.Case,
				Actual: s.Ratio, Want: 0.9, Met: s.Ratio >= 0.9})
		}
	}
	add("connect storm with Wasm authentication ≥ 0.9× mochi (connects/s)", r.find("connect storm", "connects/s"), "propolis", "mochi", 0.9)
	add("p99 latency at a fixed rate with Wasm authorize_publish ≥ 0.9× mochi", r.find("latency at", "p99"), "propolis-wasm-publish", "mochi", 0.9)
	if mem := r.find("memory", "RSS per connection"); mem != nil && mem.Values[reference] > 0 {
		v := mem.Values[reference]
		r.Targets = append(r.Targets, Target{Goal: "RSS per idle connection ≤ 8 KiB (propolis, KiB; actual is 8 / RSS)", Actual: 8 / v, Want: 1, Met: v <= 8})
	} else {
		r.Targets = append(r.Targets, Target{Goal: "RSS per idle connection ≤ 8 KiB", Missing: true})
	}
}

// write saves results.json and results.md in dir.
func (r *Report) write(dir string) error {
	r.finish()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.Markdown()), 0o644)
}

// Markdown renders the report as results.md (linked from the README's
// Performance section).
func (r *Report) Markdown() string {
	var b strings.Builder
	mode := fmt.Sprintf("full run: each figure is the median of %d rounds after a discarded warm-up round", r.Rounds)
	if r.Quick {
		mode = "quick run (a smoke test: sizes are a tenth, one round, figures are not meaningful)"
	}
	fmt.Fprintf(&b, "Measured %s on %s, %s; loads took %s. Brokers and load generator share the machine; each load runs against every broker in turn, the order rotated every round.\n\n",
		r.Time.Format("2006-01-02 15:04 UTC"), r.Machine, mode, r.Took)
	fmt.Fprintf(&b, "Limits, alike on every broker: %s.\n\n", r.Limits)
	b.WriteString("| broker | setup |\n|---|---|\n")
	for _, br := range r.Brokers {
		fmt.Fprintf(&b, "| %s | %s |\n", br.Name, br.Setup)
	}
	b.WriteString("\n| load | metric |")
	for _, br := range r.Brokers {
		fmt.Fprintf(&b, " %s |", br.Name)
	}
	b.WriteString("\n|---|---|")
	for range r.Brokers {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, res := range r.Results {
		dir := "higher is better"
		if !res.Higher {
			dir = "lower is better"
		}
		fmt.Fprintf(&b, "| %s | %s (%s, %s) |", res.Load, res.Metric, res.Unit, dir)
		for _, br := range r.Brokers {
			v, ok := res.Values[br.Name]
			if !ok {
				b.WriteString(" – |")
				continue
			}
			r, hasRatio := res.Ratio[br.Name]
			if res.Unit == "count" || !hasRatio {
				fmt.Fprintf(&b, " %s |", number(v))
				continue
			}
			fmt.Fprintf(&b, " %s (%.2f×", number(v), r)
			if len(res.Samples[br.Name]) > 1 {
				fmt.Fprintf(&b, ", ±%.0f%%", res.Spread[br.Name]*50)
			}
			b.WriteString(") |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\nRatios are each broker's figure divided by propolis's; ±N% is half the spread (max − min) of the rounds, relative to the median.\n")
	b.WriteString("\nWhat each broker's log said about dropping messages during the loads (the cause of a \"lost\" figure):\n\n| broker | log lines mentioning a drop | first |\n|---|---:|---|\n")
	for _, d := range r.Drops {
		fmt.Fprintf(&b, "| %s | %d | %s |\n", d.Broker, d.Lines, strings.ReplaceAll(d.First, "|", "\\|"))
	}
	if len(r.Startup) > 0 {
		b.WriteString("\nStart-up and reload: a sustained QoS 1 publish load (10 clients, 64 in flight each, 100 B) starts with the broker process; " +
			"the clients retry until the port is bound and wait in the listen backlog until the broker accepts them.\n\n" +
			"| case | first CONNACK after start (ms) | first window (PUBACKs/s) | steady, third window (PUBACKs/s) | first / steady |\n|---|---:|---:|---:|---:|\n")
		for _, s := range r.Startup {
			first := number(s.First)
			if s.Lowest > 0 || strings.Contains(s.Case, "reload") {
				first += fmt.Sprintf(" (lowest 500 ms: %s)", number(s.Lowest))
			}
			name := s.Case
			if s.Note != "" {
				name += "; " + s.Note
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f |\n", name, number(s.FirstConnackMS), first, number(s.Steady), s.Ratio)
		}
	}
	r.clusterMarkdown(&b)
	b.WriteString("\nTargets (issue 16):\n\n| target | actual | met |\n|---|---:|---|\n")
	for _, t := range r.Targets {
		switch {
		case t.Missing:
			fmt.Fprintf(&b, "| %s | – | not measured in this run |\n", t.Goal)
		case t.Met:
			fmt.Fprintf(&b, "| %s | %.2f (want ≥ %.2f) | yes |\n", t.Goal, t.Actual, t.Want)
		default:
			fmt.Fprintf(&b, "| %s | %.2f (want ≥ %.2f) | **no** (%.0f%% short) |\n", t.Goal, t.Actual, t.Want, (1-t.Actual/t.Want)*100)
		}
	}
	return b.String()
}

// number formats a figure with sensible precision.
func number(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// clusterMarkdown renders the cluster's figures (issue 15), when it ran:
// its fan-in and fan-out rates and CPU per message against one node, and
// the take-over rounds.
func (r *Report) clusterMarkdown(b *strings.Builder) {
	var setup string
	for _, br := range r.Brokers {
		if br.Name == clusterBroker {
			setup = br.Setup
		}
	}
	if setup == "" {
		return
	}
	fmt.Fprintf(b, "\nCluster (issue 15): %s is %s. Fan-in: the subscriber on node 1, the publishers on nodes 2 and 3; fan-out: the publisher on node 1, "+
		"the subscribers on every node; so every message crosses the cluster. CPU per message is that of all three nodes, against the one node of %s.\n\n", clusterBroker, setup, reference)
	header := true
	for _, res := range r.Results {
		c, ok := res.Values[clusterBroker]
		if !ok || !strings.HasSuffix(res.Metric, "/s") {
			continue
		}
		if header {
			b.WriteString("| load | rate, one node | rate, cluster | cluster / one node | CPU µs per message, one node | CPU µs per message, all nodes | cluster / one node |\n|---|---:|---:|---:|---:|---:|---:|\n")
			header = false
		}
		one := res.Values[reference]
		fmt.Fprintf(b, "| %s | %s | %s | %s |", res.Load, orDash(one), number(c), ratioText(c, one))
		if cpu := r.find(res.Load, "broker CPU per message"); cpu != nil {
			cc, co := cpu.Values[clusterBroker], cpu.Values[reference]
			fmt.Fprintf(b, " %s | %s | %s |\n", orDash(co), orDash(cc), ratioText(cc, co))
		} else {
			b.WriteString(" – | – | – |\n")
		}
	}
	first := true
	for _, res := range r.Results {
		if !strings.HasPrefix(res.Load, "session take-over") {
			continue
		}
		if first {
			fmt.Fprintf(b, "\n%s (median of the rounds, each on a fresh cluster; ± half their spread):\n\n| metric | value |\n|---|---:|\n", res.Load)
			first = false
		}
		v := number(res.Values[clusterBroker])
		if n := len(res.Samples[clusterBroker]); n > 1 {
			v += fmt.Sprintf(" (±%.0f%%, %d rounds)", res.Spread[clusterBroker]*50, n)
		}
		fmt.Fprintf(b, "| %s (%s) | %s |\n", res.Metric, res.Unit, v)
	}
	for _, n := range r.ClusterNotes {
		fmt.Fprintf(b, "\n- %s", strings.ReplaceAll(n, "|", "\\|"))
	}
	if len(r.ClusterNotes) > 0 {
		b.WriteString("\n")
	}
}

// orDash formats v, or a dash for 0 (not measured).
func orDash(v float64) string {
	if v == 0 {
		return "–"
	}
	return number(v)
}

// ratioText formats a / b, or a dash when either is 0.
func ratioText(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
