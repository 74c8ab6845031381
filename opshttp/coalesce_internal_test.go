package opshttp

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// gateGatherer gathers an empty registry once release is closed, counting
// its calls.
type gateGatherer struct {
	release chan struct{}
	calls   atomic.Int32
}

func (g *gateGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.calls.Add(1)
	<-g.release
	return prometheus.NewRegistry().Gather()
}

// TestCoalescing: callers arriving while a collection runs share it (one
// call for eight callers); a call after it ends starts a new one.
func TestCoalescing(t *testing.T) {
	g := &gateGatherer{release: make(chan struct{})}
	c := &coalescing{g: g}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Gather(); err != nil {
				t.Error(err)
			}
		}()
	}
	poll.Until(t, "seven callers waiting on the first", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.waiters == 7
	})
	close(g.release)
	wg.Wait()
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d collections for 8 concurrent callers, want 1", n)
	}
	if _, err := c.Gather(); err != nil || g.calls.Load() != 2 {
		t.Errorf("a later call: %v, %d collections, want 2", err, g.calls.Load())
	}
}
