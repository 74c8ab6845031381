package harness

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/internal/load"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// The loads internal/load does not provide. Each is bounded in count and
// in time, talks only to the broker's loopback address, and returns its
// figures. The publish loads (fan-in, fan-out, publisher-side throughput,
// latency pairs) are internal/load's, which the Go benchmarks run too.

// loadTimeout bounds any single load.
const loadTimeout = 90 * time.Second

// connectStorm opens n connections, conc at a time, each CONNECT, CONNACK,
// DISCONNECT; it returns connects per second and the p99 CONNACK latency.
func connectStorm(addr string, n, conc int) (perSec, p99ms float64, err error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || time.Since(start) > loadTimeout {
					return
				}
				t0 := time.Now()
				c, err := rawmqtt.Dial(addr, "storm-"+strconv.Itoa(i))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connect %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				lat[i] = time.Since(t0)
				_ = c.Close()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return float64(n) / elapsed.Seconds(), percentile(lat, 0.99).Seconds() * 1000, nil
}

// latency publishes at rate messages per second for d, QoS 1 (PUBACKs read
// and ignored), to one subscriber at QoS 0, and returns the p50 and p99
// publish-to-delivery latency.
func latency(addr string, rate int, d time.Duration) (p50ms, p99ms float64, err error) {
	sub, err := rawmqtt.Dial(addr, "lat-sub")
	if err != nil {
		return 0, 0, err
	}
	defer sub.Close()
	if err := sub.Subscribe("bench/latency", 0); err != nil {
		return 0, 0, err
	}
	pub, err := rawmqtt.Dial(addr, "lat-pub")
	if err != nil {
		return 0, 0, err
	}
	defer pub.Close()
	n := int(float64(rate) * d.Seconds())
	base := time.Now()
	lats := make([]time.Duration, 0, n)
	got := make(chan error, 1)
	_ = sub.SetDeadline(time.Now().Add(d + 30*time.Second))
	go func() {
		for len(lats) < n {
			_, _, payload, err := sub.ReadPublish()
			if err != nil {
				got <- fmt.Errorf("after %d of %d: %w", len(lats), n, err)
				return
			}
			if lat, ok := load.Latency(payload, base, time.Now()); ok {
				lats = append(lats, lat)
			}
		}
		got <- nil
	}()
	go func() { // PUBACKs
		for {
			if _, _, err := pub.ReadPacket(); err != nil {
				return
			}
		}
	}()
	payload := make([]byte, 64)
	interval := time.Second / time.Duration(rate)
	for i := 0; i < n; i++ {
		due := time.Duration(i) * interval
		if wait := due - time.Since(base); wait > 0 {
			time.Sleep(wait) // load pacing: publish at the fixed rate
		}
		load.Stamp(payload, base)
		pub.Publish("bench/latency", 1, uint16(i%65535+1), payload)
		if err := pub.Flush(); err != nil {
			return 0, 0, err
		}
	}
	if err := <-got; err != nil {
		return 0, 0, err
	}
	return percentile(lats, 0.50).Seconds() * 1000, percentile(lats, 0.99).Seconds() * 1000, nil
}

// idleMemory returns a broker's resident memory growth per idle
// connection, in KiB: it opens n idle connections and waits settle (a
// warm-up batch), then opens n more, waits settle again, and divides the
// growth over the second batch by n. Measured from a freshly started
// broker, the first connections reuse memory the process freed but kept
// resident (Propolis: what compiling and instantiating its extensions
// left), so their growth understated the cost and varied from run to run
// (11 to 20 KiB for the same Propolis binary); the second batch pays for
// itself.
func idleMemory(addr string, pid, n int, settle time.Duration) (float64, error) {
	var conns []*rawmqtt.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	open := func(batch string) error {
		for i := 0; i < n; i++ {
			c, err := rawmqtt.Dial(addr, "idle-"+batch+strconv.Itoa(i))
			if err != nil {
				return fmt.Errorf("idle connection %s%d: %w", batch, i, err)
			}
			conns = append(conns, c)
		}
		time.Sleep(settle) // let the broker settle (and a Go runtime collect)
		return nil
	}
	if err := open("w"); err != nil {
		return 0, err
	}
	before, err := rss(pid)
	if err != nil {
		return 0, err
	}
	if err := open(""); err != nil {
		return 0, err
	}
	after, err := rss(pid)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n) / 1024, nil
}

// percentile returns the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds)-1) * p)
	return ds[i]
}
