// Package metrics builds the Prometheus registry `propolis serve` serves
// on /metrics (package opshttp), and holds the collectors that turn the
// broker's, the host's and the system's figures into metrics.
//
// Collectors read their figures at scrape time (Collect reads atomics,
// snapshots and /proc), so the broker's hot paths do no more than the
// atomic adds they already do; broker and host never import this package
// or Prometheus. It is wiring-level code, like cmd/propolis: it may import
// broker and host.
//
// One file per part: registry.go (NewRegistry: Go runtime, process, build
// and readiness metrics), system_linux.go (the host machine and the
// process's native memory, from /proc; absent on other systems,
// system_other.go). README.md lists every metric.
package metrics
