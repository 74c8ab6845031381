package broker

import (
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// fakeTimer is a logLimit's summary timer that the test fires.
type fakeTimer struct {
	d       time.Duration // the delay asked for
	f       func()
	stopped bool
}

// A logLimit with a summary function writes lines one by one up to its
// limit, then reports the count of the others once, when the interval
// ends (on a timer set to the window's end), and starts over. The clock
// and the timer are the test's, so a slow machine changes nothing.
func TestLogLimitSummaryAtWindowEnd(t *testing.T) {
	var sums []int
	l := newLogLimit(3, 50*time.Millisecond, func(n int) { sums = append(sums, n) })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	var timers []*fakeTimer
	l.afterFunc = func(d time.Duration, f func()) func() bool {
		ft := &fakeTimer{d: d, f: f}
		timers = append(timers, ft)
		return func() bool { was := !ft.stopped; ft.stopped = true; return was }
	}

	take := func(n int) (written int) {
		t.Helper()
		for range n {
			ok, carried := l.take()
			if carried != 0 {
				t.Fatalf("take carried %d with a summary function, want 0", carried)
			}
			if ok {
				written++
			}
		}
		return written
	}
	if w := take(4); w != 3 {
		t.Fatalf("%d of 4 lines written, want the limit of 3", w)
	}
	now = now.Add(20 * time.Millisecond)
	if w := take(6); w != 0 {
		t.Fatalf("%d more lines written in the same window, want 0", w)
	}
	if len(timers) != 1 || timers[0].d != 50*time.Millisecond {
		t.Fatalf("timers %+v, want one set to the window's end, 50ms after its start", timers)
	}
	if len(sums) != 0 {
		t.Fatalf("summaries %v before the window ended, want none", sums)
	}
	timers[0].f()
	if len(sums) != 1 || sums[0] != 7 {
		t.Fatalf("summaries %v at the window's end, want [7]", sums)
	}

	// The next window writes 3 again; stop writes its count at once.
	now = now.Add(30 * time.Millisecond)
	if w := take(5); w != 3 {
		t.Fatalf("%d of 5 lines written in the next window, want 3", w)
	}
	if len(timers) != 2 || timers[1].d != 50*time.Millisecond {
		t.Fatalf("timers %+v, want a second one set to the window's end", timers)
	}
	l.stop()
	if !timers[1].stopped || len(sums) != 2 || sums[1] != 2 {
		t.Fatalf("after stop: timer stopped %v, summaries %v; want it stopped and [7 2]", timers[1].stopped, sums)
	}
	l.stop()
	if len(sums) != 2 {
		t.Fatalf("a second stop wrote %v, want nothing more", sums)
	}
}

// A logLimit's real timer (realAfterFunc) writes the summary on its own,
// once, at the window's end, and nothing is lost however late it fires.
func TestLogLimitRealTimer(t *testing.T) {
	done := make(chan int, 2)
	l := newLogLimit(1, time.Millisecond, func(n int) { done <- n })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now } // one window, however slow the machine
	for range 5 {
		l.take()
	}
	select {
	case n := <-done:
		if n != 4 {
			t.Fatalf("summary %d, want 4", n)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("no summary from the timer")
	}
	l.stop()
	select {
	case n := <-done:
		t.Fatalf("a second summary %d, want one", n)
	default:
	}
}
