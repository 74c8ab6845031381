package overload

import (
	"math"
	"runtime/metrics"
	"testing"
	"time"
)

// constant is a signal value a test sets.
type constant struct{ v float64 }

func (c *constant) value() float64 { return c.v }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestMonitorLevel: the level is 10 (1 - prod(1 - w s)) of the smoothed
// signals; a nil signal is left out; one spike moves a signal halfway.
func TestMonitorLevel(t *testing.T) {
	mem, backlog := &constant{}, &constant{}
	m := NewMonitor([]Signal{
		{Name: SignalMemory, Weight: WeightMemory, Value: mem.value},
		{Name: SignalBacklog, Weight: WeightBacklog, Value: backlog.value},
		{Name: SignalStoreLatency, Weight: WeightStoreLatency}, // nil: skipped
	}, nil)
	if n := len(m.Signals()); n != 2 {
		t.Fatalf("%d signals, want 2 (the nil one left out)", n)
	}
	if l := m.Sample(); l != 0 {
		t.Errorf("idle level %v, want 0", l)
	}
	mem.v = 1 // one spike
	if l := m.Sample(); !near(l, 10*WeightMemory*0.5) {
		t.Errorf("level after one memory spike %v, want %v", l, 10*WeightMemory*0.5)
	}
	mem.v = 0
	m.Sample()
	for range 60 { // sustained: the average converges
		mem.v, backlog.v = 1, 1
		m.Sample()
	}
	want := 10 * (1 - (1-WeightMemory)*(1-WeightBacklog))
	if l := m.Level(); math.Abs(l-want) > 1e-6 {
		t.Errorf("level with memory and backlog saturated %v, want %v", l, want)
	}
	mem.v, backlog.v = 7, -3 // clamped to 1 and 0
	for range 60 {
		m.Sample()
	}
	if l := m.Level(); math.Abs(l-10*WeightMemory) > 1e-6 {
		t.Errorf("level with out-of-range values %v, want %v", l, 10*WeightMemory)
	}
}

// TestMonitorOverride: an override replaces the level, clamped to 0..10;
// the signals are still sampled.
func TestMonitorOverride(t *testing.T) {
	v := 42.0
	sig := &constant{v: 1}
	m := NewMonitor([]Signal{{Name: "x", Weight: 1, Value: sig.value}}, func() float64 { return v })
	if l := m.Sample(); l != 10 {
		t.Errorf("level %v, want 10 (42 clamped)", l)
	}
	if s := m.Signals(); s[0].Value != 0.5 {
		t.Errorf("signal %v, want 0.5", s[0].Value)
	}
}

// TestRamp: the standard normalizations.
func TestRamp(t *testing.T) {
	tests := []struct {
		name      string
		x, lo, hi float64
		want      float64
	}{
		{"below", 0.5, 1, 3, 0},
		{"low end", 1, 1, 3, 0},
		{"middle", 2, 1, 3, 0.5},
		{"high end", 3, 1, 3, 1},
		{"above", 9, 1, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ramp(tt.x, tt.lo, tt.hi); got != tt.want {
				t.Errorf("ramp(%v, %v, %v) = %v, want %v", tt.x, tt.lo, tt.hi, got, tt.want)
			}
		})
	}
	var waiting int64 = BacklogFull / 2
	s := StandardSignals(Sources{Backlog: func() int64 { return waiting }, StoreWriteLatency: func() time.Duration { return StoreLatencyHigh }})
	for _, sig := range s {
		switch sig.Name {
		case SignalBacklog:
			if v := sig.Value(); v != 0.5 {
				t.Errorf("backlog of half BacklogFull: %v, want 0.5", v)
			}
		case SignalStoreLatency:
			if v := sig.Value(); v != 1 {
				t.Errorf("store latency at StoreLatencyHigh: %v, want 1", v)
			}
		case SignalMemory:
			if sig.Value != nil {
				t.Error("memory signal without a MemoryLimit source")
			}
		}
	}
}

// TestHistQuantile: the p99 of the counts added since the previous read.
func TestHistQuantile(t *testing.T) {
	h := &metrics.Float64Histogram{Counts: []uint64{0, 0, 0}, Buckets: []float64{0, 0.001, 0.01, math.Inf(1)}}
	if q := histQuantile(h, nil, 0.99); q != 0 {
		t.Errorf("empty histogram: %v, want 0", q)
	}
	h.Counts = []uint64{1000, 5, 0}
	prev := []uint64{0, 0, 0}
	if q := histQuantile(h, prev, 0.99); q != 0.001 {
		t.Errorf("p99 of 1000 fast, 5 slower: %v, want 0.001", q)
	}
	prev = []uint64{1000, 5, 0}
	h.Counts = []uint64{1010, 5, 90}
	if q := histQuantile(h, prev, 0.99); q != 0.01 {
		t.Errorf("p99 of the 100 new, 90 in the open bucket: %v, want its lower bound 0.01", q)
	}
}

// TestAdjust: the heaviest senders (the fewest making half the bytes, at
// least MinRate each, protected) are throttled to half their rate, halved
// again while stress stays high, down to MinRate; the rate doubles back
// below ReleaseLevel and the bucket is lifted at the rate it started from.
func TestAdjust(t *testing.T) {
	tr := NewThrottler()
	p := Policy{ThrottleLevel: 7, ReleaseLevel: 4, MinRate: 1000}
	heavy := tr.Add(Limits{}, true)
	second := tr.Add(Limits{}, true)
	light := tr.Add(Limits{}, true)
	unprotected := tr.Add(Limits{}, false)
	send := func(c *Client, n int64) { c.read.Add(n) }

	send(heavy, 64000)
	send(second, 20000)
	send(light, 500)
	send(unprotected, 10000)
	if started, _ := tr.Adjust(5, p, time.Second); started != 0 {
		t.Fatalf("throttled %d at level 5", started)
	}
	send(heavy, 64000)
	send(second, 20000)
	send(light, 500)
	send(unprotected, 10000)
	if started, _ := tr.Adjust(8, p, time.Second); started != 1 || !heavy.Throttled() {
		t.Fatalf("started %d (heavy throttled: %v), want the heavy sender alone (64000 of 94500 bytes)", started, heavy.Throttled())
	}
	if heavy.limit != 32000 || heavy.before != 64000 {
		t.Errorf("heavy limited to %v from %v, want 32000 from 64000", heavy.limit, heavy.before)
	}
	for range 10 {
		tr.Adjust(10, p, time.Second)
	}
	if heavy.limit != p.MinRate {
		t.Errorf("limit after 10 halvings %v, want the floor %v", heavy.limit, p.MinRate)
	}
	if light.Throttled() || unprotected.Throttled() {
		t.Error("the light or the unprotected client throttled")
	}
	if s := tr.Stats(); s.Throttled < 1 {
		t.Errorf("Stats.Throttled %d", s.Throttled)
	}
	tr.Adjust(5, p, time.Second) // between the levels: held
	if heavy.limit != p.MinRate {
		t.Errorf("limit changed between the levels: %v", heavy.limit)
	}
	lifted := 0
	for i := 0; i < 20 && heavy.Throttled(); i++ {
		_, l := tr.Adjust(0, p, time.Second)
		lifted += l
	}
	if heavy.Throttled() || lifted == 0 {
		t.Error("heavy still throttled after 20 calm samples")
	}
	tr.Remove(heavy)
	tr.Remove(second)
	if s := tr.Stats(); s.Throttled != 0 {
		t.Errorf("Stats.Throttled %d after every throttled client lifted or removed, want 0", s.Throttled)
	}
}

// TestWait: a client without buckets never waits; with a publish rate it
// waits for the messages beyond the burst, and a closed done ends the
// wait at once.
func TestWait(t *testing.T) {
	tr := NewThrottler()
	free := tr.Add(Limits{}, true)
	if d := free.Wait(nil, 1<<20, 1000); d != 0 {
		t.Errorf("a client without buckets waited %v", d)
	}
	limited := tr.Add(Limits{PublishRate: 1, PublishBurst: 1}, true)
	done := make(chan struct{})
	close(done)
	if d := limited.Wait(done, 100, 1); d != 0 {
		t.Errorf("the burst's message waited %v", d)
	}
	start := time.Now()
	limited.Wait(done, 100, 3600) // an hour's worth; done is closed
	if time.Since(start) > time.Minute {
		t.Error("a closed done did not end the wait")
	}
	if s := tr.Stats(); s.Hit(LimitPublishRate) != 1 {
		t.Errorf("publish_rate hits %d, want 1", s.Hit(LimitPublishRate))
	}
}

// TestAdjustExemptHeavy: an unprotected client sending more than all the
// protected ones together neither ranks nor counts, so the heaviest
// protected senders are still throttled.
func TestAdjustExemptHeavy(t *testing.T) {
	tr := NewThrottler()
	p := Policy{ThrottleLevel: 7, ReleaseLevel: 4, MinRate: 1000}
	exempt := tr.Add(Limits{}, false)
	var prot []*Client
	for range 5 {
		prot = append(prot, tr.Add(Limits{}, true))
	}
	exempt.read.Add(6 << 20)
	for i, c := range prot {
		c.read.Add(int64(i+1) << 20) // 1..5 MiB/s, 15 together
	}
	started, _ := tr.Adjust(10, p, time.Second)
	if exempt.Throttled() {
		t.Error("the unprotected client throttled")
	}
	// 5+4 MiB/s is 9 of the 15 the protected clients sent: the two heaviest.
	if started != 2 || !prot[4].Throttled() || !prot[3].Throttled() || prot[2].Throttled() {
		t.Errorf("started %d (throttled: %v %v %v), want the two heaviest protected clients",
			started, prot[4].Throttled(), prot[3].Throttled(), prot[2].Throttled())
	}
}

// TestGCShare: the runtime moves its CPU classes only when a GC cycle
// ends; samples that see no change keep the last value instead of 0.
func TestGCShare(t *testing.T) {
	var gc, total float64
	s := gcShare(func() (float64, float64, bool) { return gc, total, true })
	if v := s(); v != 0 {
		t.Errorf("first sample %v, want 0", v)
	}
	gc, total = 0.3, 1 // 30 %: halfway between 10 % and 50 %
	want := ramp(0.3, GCCPULow, GCCPUHigh)
	if v := s(); !near(v, want) || want <= 0 {
		t.Errorf("after a GC cycle %v, want %v", v, want)
	}
	for range 3 {
		if v := s(); !near(v, want) {
			t.Errorf("no GC cycle since: %v, want the last value %v", v, want)
		}
	}
	gc, total = 0.3, 2 // next cycle: no GC time in that second
	if v := s(); v != 0 {
		t.Errorf("after a cycle with no GC time %v, want 0", v)
	}
}

// TestSchedLatencyBaseline: the first sample counts only the latencies
// since the signal was made, not those since the process started.
func TestSchedLatencyBaseline(t *testing.T) {
	h := &metrics.Float64Histogram{Counts: []uint64{0, 100}, Buckets: []float64{0, 1e-6, 1}} // 100 of up to 1 s before
	s := schedLatency(func() *metrics.Float64Histogram { return h })
	if v := s(); v != 0 {
		t.Errorf("first sample with no latency since the start %v, want 0", v)
	}
	h.Counts = []uint64{0, 200}
	if v := s(); v != 1 {
		t.Errorf("100 latencies of up to 1 s: %v, want 1", v)
	}
}
