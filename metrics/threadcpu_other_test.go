//go:build !linux

package metrics

import "time"

// threadCPU is not measured here: BenchmarkObserverPaired reports nothing.
func threadCPU() time.Duration { return 0 }
