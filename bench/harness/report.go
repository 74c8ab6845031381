package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is the harness's output: every figure of every broker and its
// ratio to Propolis (the "propolis" broker: allow-all, no Wasm call per
// message).
type Report struct {
	Time    time.Time    `json:"time"`
	Machine string       `json:"machine"`
	Quick   bool         `json:"quick"`
	Took    string       `json:"took"`
	Brokers []BrokerInfo `json:"brokers"`
	Results []Result     `json:"results"`
	Targets []Target     `json:"targets"`
}

// BrokerInfo names a broker and how it ran.
type BrokerInfo struct {
	Name  string `json:"name"`
	Setup string `json:"setup"`
}

// Result is one figure across brokers.
type Result struct {
	Load   string             `json:"load"`
	Metric string             `json:"metric"`
	Unit   string             `json:"unit"`
	Higher bool               `json:"higher_is_better"`
	Values map[string]float64 `json:"values"`
	// Ratio is each broker's value divided by Propolis's.
	Ratio map[string]float64 `json:"ratio_to_propolis"`
}

// Target is one goal from the benchmark issue, checked against the figures.
type Target struct {
	Goal   string  `json:"goal"`
	Actual float64 `json:"actual"`
	Want   float64 `json:"want"`
	Met    bool    `json:"met"`
}

// reference is the broker the ratios are relative to.
const reference = "propolis"

func newReport(quick bool, brokers []*Broker) *Report {
	r := &Report{Time: time.Now().UTC().Truncate(time.Second), Machine: machine(), Quick: quick}
	for _, b := range brokers {
		r.Brokers = append(r.Brokers, BrokerInfo{Name: b.Name, Setup: b.Setup})
	}
	return r
}

func (r *Report) add(load, metric, unit string, higher bool, broker string, v float64) {
	for i := range r.Results {
		if res := &r.Results[i]; res.Load == load && res.Metric == metric {
			res.Values[broker] = v
			return
		}
	}
	r.Results = append(r.Results, Result{Load: load, Metric: metric, Unit: unit, Higher: higher, Values: map[string]float64{broker: v}})
}

// finish computes ratios and target checks.
func (r *Report) finish() {
	for i := range r.Results {
		res := &r.Results[i]
		res.Ratio = map[string]float64{}
		ref := res.Values[reference]
		for b, v := range res.Values {
			if ref != 0 {
				res.Ratio[b] = v / ref
			}
		}
	}
	r.Targets = nil
	// better returns how many times better a is than b on a result (>1:
	// a is better), whichever direction the metric goes.
	better := func(res *Result, a, b string) float64 {
		va, vb := res.Values[a], res.Values[b]
		if va == 0 || vb == 0 {
			return 0
		}
		if res.Higher {
			return va / vb
		}
		return vb / va
	}
	for i := range r.Results {
		res := &r.Results[i]
		if strings.HasSuffix(res.Metric, "lost") {
			continue // reported, not a target
		}
		r.Targets = append(r.Targets, target(fmt.Sprintf("propolis-wasm-publish ≥ 0.9× mochi: %s, %s", res.Load, res.Metric),
			better(res, "propolis-wasm-publish", "mochi"), 0.9))
		if (strings.HasPrefix(res.Load, "fan-in QoS 1") || strings.HasPrefix(res.Load, "connect storm")) && res.Higher {
			r.Targets = append(r.Targets, target(fmt.Sprintf("propolis-wasm-publish ≥ 1.0× mosquitto: %s, %s", res.Load, res.Metric),
				better(res, "propolis-wasm-publish", "mosquitto"), 1.0))
		}
		if strings.HasPrefix(res.Load, "memory") {
			// "no worse than 2× Mosquitto": mosquitto/propolis ≥ 0.5.
			r.Targets = append(r.Targets, target("propolis memory per idle connection ≤ 2× mosquitto",
				better(res, reference, "mosquitto"), 0.5))
		}
	}
}

func target(goal string, actual, want float64) Target {
	return Target{Goal: goal, Actual: actual, Want: want, Met: actual >= want}
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

// Markdown renders the report as the README's Performance table.
func (r *Report) Markdown() string {
	var b strings.Builder
	mode := "full run"
	if r.Quick {
		mode = "quick run (a smoke test: sizes are a tenth, figures are not meaningful)"
	}
	fmt.Fprintf(&b, "Measured %s on %s, %s; loads took %s.\n\n", r.Time.Format("2006-01-02 15:04 UTC"), r.Machine, mode, r.Took)
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
			fmt.Fprintf(&b, " %s (%.2f×) |", number(v), res.Ratio[br.Name])
		}
		b.WriteString("\n")
	}
	b.WriteString("\nRatios are each broker's figure divided by propolis's.\n\n| target | actual | met |\n|---|---:|---|\n")
	for _, t := range r.Targets {
		met := "yes"
		if !t.Met {
			met = fmt.Sprintf("**no** (%.0f%% short)", (1-t.Actual/t.Want)*100)
		}
		fmt.Fprintf(&b, "| %s | %.2f (want ≥ %.2f) | %s |\n", t.Goal, t.Actual, t.Want, met)
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
