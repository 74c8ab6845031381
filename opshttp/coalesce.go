package opshttp

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// coalescing is a Gatherer whose concurrent Gathers share one collection:
// a call made while another runs waits for that one's result instead of
// starting its own, so scrapes that arrive together (two Prometheus
// servers, a retry) cost one collection and none is refused. The result
// is read-only to its callers (promhttp only encodes it).
type coalescing struct {
	g prometheus.Gatherer

	mu      sync.Mutex
	current *gathering // the collection under way, nil if none
	waiters int        // callers sharing current besides its starter (tests)
}

// gathering is one collection and, once done is closed, its result.
type gathering struct {
	done chan struct{}
	mfs  []*dto.MetricFamily
	err  error
}

// Gather returns the result of the collection under way, or of one it
// starts.
func (c *coalescing) Gather() ([]*dto.MetricFamily, error) {
	c.mu.Lock()
	if g := c.current; g != nil {
		c.waiters++
		c.mu.Unlock()
		<-g.done
		return g.mfs, g.err
	}
	g := &gathering{done: make(chan struct{})}
	c.current = g
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		c.current, c.waiters = nil, 0
		c.mu.Unlock()
		close(g.done) // also if c.g panics: the waiters then get no metrics
	}()
	g.mfs, g.err = c.g.Gather()
	return g.mfs, g.err
}
