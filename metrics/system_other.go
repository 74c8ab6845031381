//go:build !linux

package metrics

import "github.com/prometheus/client_golang/prometheus"

// newSystemCollector returns nil: the host machine's CPU, memory and load
// and the process's native memory are read from Linux's /proc
// (system_linux.go), and other systems have no collector (the process_*
// metrics of the client library remain, as far as it supports the
// system).
func newSystemCollector() prometheus.Collector { return nil }
