package overload

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The signals' names, as metrics label them (propolis_stress_signal{signal}).
const (
	SignalBacklog      = "backlog"
	SignalSchedLatency = "sched_latency"
	SignalGCCPU        = "gc_cpu"
	SignalStoreLatency = "store_latency"
	SignalMemory       = "memory"
)

// MaxLevel is the top of the stress scale (overloaded); 0 is idle.
const MaxLevel = 10

// smoothing is the weight of a new sample in a signal's moving average
// (see the package doc: one spike moves a signal halfway at most).
const smoothing = 0.5

// Signal is one measure of stress.
type Signal struct {
	// Name labels the signal in metrics and logs.
	Name string
	// Weight, in 0..1, is the share of the stress scale the signal alone
	// reaches when saturated (see the package doc).
	Weight float64
	// Value returns the measure mapped to 0..1 (values outside are
	// clamped). nil: the signal is skipped. Called by Monitor.Sample only,
	// on its goroutine, so it may keep state between calls.
	Value func() float64
}

// SignalValue is one signal's smoothed value at the last sample.
type SignalValue struct {
	Name  string
	Value float64
}

// Monitor computes the node's stress level from its signals. Sample is
// called from one goroutine; Level and Signals from any.
type Monitor struct {
	signals  []Signal
	override func() float64

	mu       sync.Mutex
	smoothed []float64
	level    float64
}

// NewMonitor returns a Monitor of signals; those with a nil Value are left
// out. override, when not nil, replaces the computed level (tests inject a
// level with it; the signals are still sampled and reported).
func NewMonitor(signals []Signal, override func() float64) *Monitor {
	m := &Monitor{override: override}
	for _, s := range signals {
		if s.Value != nil {
			m.signals = append(m.signals, s)
		}
	}
	m.smoothed = make([]float64, len(m.signals))
	return m
}

// Sample reads every signal, updates their moving averages and returns the
// new level, 0..MaxLevel.
func (m *Monitor) Sample() float64 {
	raw := make([]float64, len(m.signals))
	for i, s := range m.signals {
		raw[i] = clamp01(s.Value())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rest := 1.0
	for i, s := range m.signals {
		m.smoothed[i] = smoothing*raw[i] + (1-smoothing)*m.smoothed[i]
		rest *= 1 - clamp01(s.Weight)*m.smoothed[i]
	}
	m.level = MaxLevel * (1 - rest)
	if m.override != nil {
		m.level = math.Max(0, math.Min(MaxLevel, m.override()))
	}
	return m.level
}

// Level returns the level computed by the last Sample (0 before the first).
func (m *Monitor) Level() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.level
}

// Signals returns each signal's smoothed value at the last Sample.
func (m *Monitor) Signals() []SignalValue {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]SignalValue, len(m.signals))
	for i, s := range m.signals {
		out[i] = SignalValue{Name: s.Name, Value: m.smoothed[i]}
	}
	return out
}

// clamp01 limits v to 0..1 (NaN is 0).
func clamp01(v float64) float64 {
	if !(v > 0) {
		return 0
	}
	return math.Min(v, 1)
}

// ramp maps x linearly from lo (0) to hi (1), clamped.
func ramp(x, lo, hi float64) float64 { return clamp01((x - lo) / (hi - lo)) }

// Thresholds of the standard signals (see the package doc's table).
const (
	BacklogFull        = 64 << 20 // bytes
	SchedLatencyLow    = time.Millisecond
	SchedLatencyHigh   = 50 * time.Millisecond
	GCCPULow           = 0.10
	GCCPUHigh          = 0.50
	StoreLatencyLow    = 10 * time.Millisecond
	StoreLatencyHigh   = 500 * time.Millisecond
	MemoryLowFraction  = 0.70
	MemoryHighFraction = 0.95
)

// Weights of the standard signals (see the package doc for why).
const (
	WeightBacklog      = 0.8
	WeightSchedLatency = 0.7
	WeightGCCPU        = 0.5
	WeightStoreLatency = 0.6
	WeightMemory       = 0.9
)

// Sources are what the standard signals read besides the Go runtime; a nil
// function leaves its signal out.
type Sources struct {
	// Backlog returns the bytes waiting in the outbound buffers of all
	// connections.
	Backlog func() int64
	// StoreWriteLatency returns the store's recent write latency.
	StoreWriteLatency func() time.Duration
	// MemoryLimit returns the memory limit in bytes, read at every sample;
	// 0 or less turns the memory signal off until it returns more.
	MemoryLimit func() int64
}

// StandardSignals returns the five signals of the package doc: backlog,
// scheduler latency, GC CPU share, store write latency and memory.
func StandardSignals(src Sources) []Signal {
	var backlog, store, memory func() float64
	if f := src.Backlog; f != nil {
		backlog = func() float64 { return ramp(float64(f()), 0, BacklogFull) }
	}
	if f := src.StoreWriteLatency; f != nil {
		store = func() float64 { return ramp(float64(f()), float64(StoreLatencyLow), float64(StoreLatencyHigh)) }
	}
	if f := src.MemoryLimit; f != nil {
		memory = memorySignal(f)
	}
	return []Signal{
		{Name: SignalBacklog, Weight: WeightBacklog, Value: backlog},
		{Name: SignalSchedLatency, Weight: WeightSchedLatency, Value: schedLatencySignal()},
		{Name: SignalGCCPU, Weight: WeightGCCPU, Value: gcCPUSignal()},
		{Name: SignalStoreLatency, Weight: WeightStoreLatency, Value: store},
		{Name: SignalMemory, Weight: WeightMemory, Value: memory},
	}
}

// GoMemLimit returns the Go runtime's memory limit (GOMEMLIMIT or
// debug.SetMemoryLimit), or 0 when none is set.
func GoMemLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}

// schedLatencySignal maps the p99 of the scheduler latencies observed since
// the previous call (the first call: since the signal was made).
func schedLatencySignal() func() float64 {
	sample := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	return schedLatency(func() *metrics.Float64Histogram {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
			return nil
		}
		return sample[0].Value.Float64Histogram()
	})
}

// schedLatency is schedLatencySignal over read, which returns the
// runtime's cumulative histogram (nil: none). It takes a baseline at
// once, so that the first sample does not see every latency since the
// process started (start-up's, or a test's before the broker's).
func schedLatency(read func() *metrics.Float64Histogram) func() float64 {
	var prev []uint64
	if h := read(); h != nil {
		prev = append(prev, h.Counts...)
	}
	return func() float64 {
		h := read()
		if h == nil {
			return 0
		}
		p99 := histQuantile(h, prev, 0.99)
		prev = append(prev[:0], h.Counts...)
		return ramp(p99, SchedLatencyLow.Seconds(), SchedLatencyHigh.Seconds())
	}
}

// histQuantile returns the q quantile (upper bucket bound, in the
// histogram's unit) of the counts h has beyond prev; 0 when there are
// none.
func histQuantile(h *metrics.Float64Histogram, prev []uint64, q float64) float64 {
	var total uint64
	delta := make([]uint64, len(h.Counts))
	for i, c := range h.Counts {
		if i < len(prev) && prev[i] <= c {
			c -= prev[i]
		}
		delta[i] = c
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range delta {
		seen += c
		if seen >= want {
			upper := h.Buckets[i+1]
			if math.IsInf(upper, 1) {
				upper = h.Buckets[i]
			}
			return upper
		}
	}
	return 0
}

// gcCPUSignal maps the share of the CPU available to Go (GOMAXPROCS x
// wall time, as the runtime estimates it) spent in GC since the previous
// call that saw the runtime's figures move.
func gcCPUSignal() func() float64 {
	sample := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/total:cpu-seconds"}}
	return gcShare(func() (gc, total float64, ok bool) {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindFloat64 || sample[1].Value.Kind() != metrics.KindFloat64 {
			return 0, 0, false
		}
		return sample[0].Value.Float64(), sample[1].Value.Float64(), true
	})
}

// gcShare is gcCPUSignal over read, which returns the runtime's cumulative
// GC and total CPU seconds. The runtime updates /cpu/classes only when a
// GC cycle ends, so most samples see no change: they repeat the last value
// rather than read as 0, which would halve the smoothed signal between
// cycles however much of the CPU GC takes.
func gcShare(read func() (gc, total float64, ok bool)) func() float64 {
	var prevGC, prevTotal, last float64
	return func() float64 {
		gc, total, ok := read()
		if !ok {
			return 0
		}
		dgc, dtotal := gc-prevGC, total-prevTotal
		if dtotal <= 0 {
			return last
		}
		prevGC, prevTotal = gc, total
		last = ramp(dgc/dtotal, GCCPULow, GCCPUHigh)
		return last
	}
}

// memorySignal maps the Go runtime's memory (what GOMEMLIMIT counts: all
// mapped memory but released heap) against limit().
func memorySignal(limit func() int64) func() float64 {
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	return func() float64 {
		l := limit()
		if l <= 0 {
			return 0
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 || sample[1].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		used := float64(sample[0].Value.Uint64()) - float64(sample[1].Value.Uint64())
		return ramp(used/float64(l), MemoryLowFraction, MemoryHighFraction)
	}
}
