package opshttp_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/opshttp"
)

// blockingGatherer gathers reg once release is closed, counting calls and
// the callers waiting in it.
type blockingGatherer struct {
	reg              prometheus.Gatherer
	release          chan struct{}
	calls, gathering atomic.Int32
}

func (g *blockingGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.calls.Add(1)
	g.gathering.Add(1)
	defer g.gathering.Add(-1)
	<-g.release
	return g.reg.Gather()
}

// TestConcurrentScrapes: eight scrapes at once, while a collection is
// slow, all get 200 with the metrics, none a 503 (which Prometheus counts
// as a failed scrape).
func TestConcurrentScrapes(t *testing.T) {
	g := &blockingGatherer{reg: testRegistry(t), release: make(chan struct{})}
	var arrived atomic.Int32
	mux := opshttp.Routes{Gatherer: g, Ready: func() error { return nil }}.Mux()
	srv, err := opshttp.Listen(config.HTTP{Address: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		mux.ServeHTTP(w, r)
	}))
	released := false
	defer func() {
		if !released {
			close(g.release)
		}
		if err := srv.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	c := &http.Client{Timeout: poll.Timeout}

	const scrapes = 8
	var wg sync.WaitGroup
	codes := make([]int, scrapes)
	bodies := make([]string, scrapes)
	for i := range scrapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(srv.URL() + "/metrics")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			codes[i], bodies[i] = resp.StatusCode, string(b)
		}()
	}
	poll.Until(t, "every scrape arrived, a collection under way", func() bool {
		return arrived.Load() == scrapes && g.gathering.Load() >= 1
	})
	close(g.release)
	released = true
	wg.Wait()
	for i := range scrapes {
		if codes[i] != 200 || !strings.Contains(bodies[i], `test_things_total{kind="a"} 3`) {
			t.Errorf("scrape %d: %d %q", i, codes[i], bodies[i])
		}
	}
}
