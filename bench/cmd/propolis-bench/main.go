// Command propolis-bench runs Propolis side by side with plain mochi-mqtt
// and Mosquitto on loopback and writes bench/results/results.{md,json}.
//
//	go run ./bench/cmd/propolis-bench [--quick] [--out DIR] [--repo DIR] [--only LOAD,...]
//	    [--brokers BROKER,...] [--candidate [NAME=]BIN ...] [--takeover-sessions N]
//
// propolis-cluster3 (three nodes on loopback) runs only when --brokers
// names it: `make bench-cluster`.
//
// Mosquitto comes from Debian and is installed with apt-get when missing.
// Set PROPOLIS_BENCH_CPUPROFILE=FILE and PROPOLIS_BENCH_PROFILE_BROKER to
// propolis or propolis-wasm-publish to write a CPU profile of that broker
// (with --only, of the chosen loads alone).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/propolis-mqtt/propolis/bench/harness"
)

func main() {
	quick := flag.Bool("quick", false, "a tenth of every load: a smoke test (under a minute)")
	out := flag.String("out", "bench/results", "folder for results.md and results.json")
	repo := flag.String("repo", ".", "repository root")
	only := flag.String("only", "", "run only these loads, comma-separated: "+strings.Join(harness.LoadKeys, ", "))
	brokers := flag.String("brokers", "", "run only these brokers, comma-separated: "+strings.Join(harness.BrokerKeys, ", "))
	rounds := flag.Int("rounds", 0, "measured rounds per load (default 3, 1 with --quick); the report gives their median")
	takeover := flag.Int("takeover-sessions", 0, "persistent sessions the takeover load moves (default 1000, 100 with --quick; above 1000: one round unless --rounds)")
	var candidates []harness.Candidate
	flag.Func("candidate", "[NAME=]BIN: a Propolis binary built elsewhere, run beside the others as NAME (default propolis-candidate, -2, ...); repeatable", func(v string) error {
		name, bin, ok := strings.Cut(v, "=")
		if !ok {
			name, bin = "propolis-candidate", v
			if len(candidates) > 0 {
				name = fmt.Sprintf("propolis-candidate-%d", len(candidates)+1)
			}
		}
		if bin == "" {
			return fmt.Errorf("no binary in %q", v)
		}
		candidates = append(candidates, harness.Candidate{Name: name, Bin: bin})
		return nil
	})
	steadyChild := flag.String(harness.SteadyChildFlag, "", "internal: run the takeover load's steady load for a parent propolis-bench (PUB,SUB,RATE)")
	flag.Parse()
	if *steadyChild != "" {
		if err := harness.RunSteadyChild(*steadyChild, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "propolis-bench:", err)
			os.Exit(1)
		}
		return
	}
	var loads, chosen []string
	if *only != "" {
		loads = strings.Split(*only, ",")
	}
	if *brokers != "" {
		chosen = strings.Split(*brokers, ",")
	}
	rep, err := harness.Run(harness.Options{Repo: *repo, Out: *out, Quick: *quick, Only: loads, Brokers: chosen, Rounds: *rounds, TakeoverSessions: *takeover, Candidates: candidates, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "propolis-bench:", err)
		os.Exit(1)
	}
	fmt.Print(rep.Markdown())
}
