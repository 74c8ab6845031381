// Command propolis-bench runs Propolis side by side with plain mochi-mqtt
// and Mosquitto on loopback and writes bench/results/results.{md,json}.
//
//	go run ./bench/cmd/propolis-bench [--quick] [--out DIR] [--repo DIR] [--only LOAD,...]
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
	flag.Parse()
	var loads []string
	if *only != "" {
		loads = strings.Split(*only, ",")
	}
	rep, err := harness.Run(harness.Options{Repo: *repo, Out: *out, Quick: *quick, Only: loads, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "propolis-bench:", err)
		os.Exit(1)
	}
	fmt.Print(rep.Markdown())
}
