package metrics

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/overload"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestOverloadMetrics: the overload metrics follow a running broker: the
// stress level (injected), every signal, the throttled client, the time
// readers waited and the hits of each limit.
func TestOverloadMetrics(t *testing.T) {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Overload.Interval = config.Duration(50 * time.Millisecond)
	cfg.Overload.MinClientRate = 1 << 10
	cfg.Overload.MemoryLimit = 1 << 40
	cfg.ClientLimits.MaxSubscriptions = 1
	cfg.ClientLimits.PublishRate, cfg.ClientLimits.PublishBurst = 1000, 1
	var level atomic.Int64
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StressLevel: func() float64 { return float64(level.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := RegisterOverload(reg, s); err != nil {
		t.Fatal(err)
	}

	fams := families(t, reg)
	if v := value(t, fams, "propolis_stress_level", nil); v != 0 {
		t.Errorf("propolis_stress_level %v before any stress, want 0", v)
	}
	for _, sig := range []string{overload.SignalBacklog, overload.SignalSchedLatency, overload.SignalGCCPU, overload.SignalMemory} {
		value(t, fams, "propolis_stress_signal", map[string]string{"signal": sig})
	}

	c, err := brokertest.Dial(s.Addr("tcp"), "heavy")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("one", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("two", 0); err == nil {
		t.Fatal("second subscription granted beyond client_limits.max_subscriptions: 1")
	}
	level.Store(10)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // QoS 0 at the publish rate and beyond, until throttled
		defer close(done)
		payload := make([]byte, 1024)
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Publish("load", 0, 0, payload)
			if c.Flush() != nil {
				return
			}
		}
	}()
	defer func() { // the writer may be blocked on the throttled socket: drop it
		close(stop)
		_ = c.Drop()
		<-done
	}()
	poll.Until(t, "the publisher throttled", func() bool {
		return value(t, families(t, reg), "propolis_clients_throttled", nil) == 1
	})
	fams = families(t, reg)
	if v := value(t, fams, "propolis_stress_level", nil); v != 10 {
		t.Errorf("propolis_stress_level %v, want 10", v)
	}
	if v := value(t, fams, "propolis_client_limit_hits_total", map[string]string{"limit": "subscriptions"}); v != 1 {
		t.Errorf("subscription limit hits %v, want 1", v)
	}
	poll.Until(t, "publish rate hits and waits", func() bool {
		fams := families(t, reg)
		return value(t, fams, "propolis_client_limit_hits_total", map[string]string{"limit": "publish_rate"}) > 0 &&
			value(t, fams, "propolis_throttled_seconds_total", nil) > 0
	})
	if v := value(t, fams, "propolis_client_limit_hits_total", map[string]string{"limit": "bytes_rate"}); v != 0 {
		t.Errorf("bytes_rate hits %v without a bytes_rate limit", v)
	}
}
