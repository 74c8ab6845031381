package broker

import (
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// A logLimit with a summary function writes lines one by one up to its
// limit, then reports the count of the others once, when the interval
// ends (on its timer, here 50 ms of real time), and starts over.
func TestLogLimitSummaryAtWindowEnd(t *testing.T) {
	var (
		mu   sync.Mutex
		sums []int
	)
	l := newLogLimit(3, 50*time.Millisecond, func(n int) { mu.Lock(); sums = append(sums, n); mu.Unlock() })
	written := 0
	for i := 0; i < 10; i++ {
		if ok, carried := l.take(); ok {
			written++
			if carried != 0 {
				t.Fatalf("take carried %d with a summary function, want 0", carried)
			}
		}
	}
	if written > 6 { // 3, or 6 if the machine was so slow that a window ended
		t.Fatalf("%d of 10 lines written, want the limit of 3 per window", written)
	}
	poll.Until(t, "the summary", func() bool { mu.Lock(); defer mu.Unlock(); return len(sums) > 0 })
	mu.Lock()
	total := 0
	for _, n := range sums {
		total += n
	}
	mu.Unlock()
	if total+written != 10 {
		t.Fatalf("written %d, summarized %v: want all 10 accounted for", written, sums)
	}
	if ok, _ := l.take(); !ok {
		t.Fatal("a line after the window was not written")
	}
	l.stop()
}
