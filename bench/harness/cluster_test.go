package harness

import (
	"slices"
	"testing"
	"time"
)

// TestPlacement: on a cluster, a single subscriber (fan-in) sits on node
// 1 with the publishers elsewhere, a single publisher (fan-out) on node 1
// with subscribers everywhere; several of both are spread with
// subscriber i on the node after publisher i's; one node places nothing.
func TestPlacement(t *testing.T) {
	three := &Broker{Name: "c", Nodes: []*Broker{{Addr: "a1"}, {Addr: "a2"}, {Addr: "a3"}}}
	for _, tc := range []struct {
		name       string
		b          *Broker
		pubs, subs int
		wantP      []string
		wantS      []string
	}{
		{"fan-in", three, 20, 1, []string{"a2", "a3"}, []string{"a1"}},
		{"fan-out", three, 1, 50, []string{"a1"}, []string{"a1", "a2", "a3"}},
		{"pairs", three, 10, 10, []string{"a1", "a2", "a3"}, []string{"a2", "a3", "a1"}},
		{"one node", &Broker{Name: "p", Addr: "x"}, 20, 1, nil, nil},
	} {
		p, s := placement(tc.b, tc.pubs, tc.subs)
		if !slices.Equal(p, tc.wantP) || !slices.Equal(s, tc.wantS) {
			t.Errorf("%s: publishers %v, subscribers %v; want %v, %v", tc.name, p, s, tc.wantP, tc.wantS)
		}
	}
	if a := three.Addrs(); !slices.Equal(a, []string{"a1", "a2", "a3"}) {
		t.Errorf("the cluster's placements changed its node list: %v", a)
	}
}

// TestSteadyWindow: a window counts the arrivals within it, its slowest
// 500 ms and its p99 latency.
func TestSteadyWindow(t *testing.T) {
	s := &steady{base: time.Unix(0, 0)}
	ms := time.Millisecond
	// 1 s at 100/s with 1 ms latency, then 500 ms with nothing, then
	// 500 ms at 100/s with 50 ms latency.
	for i := range 100 {
		s.arrivals = append(s.arrivals, arrival{at: time.Duration(i) * 10 * ms, lat: ms})
	}
	for i := range 50 {
		s.arrivals = append(s.arrivals, arrival{at: 1500*ms + time.Duration(i)*10*ms, lat: 50 * ms})
	}
	w := s.window(s.base, s.base.Add(2*time.Second))
	if w.rate != 75 || w.lowest != 0 || w.lowestAt != time.Second || w.p99 != 50 {
		t.Errorf("whole span: %+v, want rate 75, lowest 0 at 1 s, p99 50 ms", w)
	}
	if b := s.buckets(s.base, s.base.Add(2*time.Second)); !slices.Equal(b, []int{50, 50, 0, 50}) {
		t.Errorf("buckets of the whole span: %v, want [50 50 0 50]", b)
	}
	w = s.window(s.base, s.base.Add(time.Second))
	if w.rate != 100 || w.lowest != 100 || w.p99 != 1 {
		t.Errorf("first second: %+v, want rate 100, lowest 100, p99 1 ms", w)
	}
	w = s.window(s.base.Add(1500*ms), s.base.Add(1700*ms))
	if w.rate != 100 || w.lowest != 100 {
		t.Errorf("200 ms span: %+v, want rate 100 and lowest = rate (shorter than 500 ms)", w)
	}
}
