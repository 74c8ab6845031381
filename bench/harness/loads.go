package harness

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
			typ, body, err := sub.ReadPacket()
			if err != nil {
				got <- fmt.Errorf("after %d of %d: %w", len(lats), n, err)
				return
			}
			if typ>>4 != 3 {
				continue
			}
			_, _, payload := rawmqtt.ParsePublish(typ, body)
			if len(payload) >= 8 {
				sent := time.Duration(binary.LittleEndian.Uint64(payload))
				lats = append(lats, time.Since(base)-sent)
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
		binary.LittleEndian.PutUint64(payload, uint64(time.Since(base)))
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

// idleMemory opens n idle connections, waits settle, and returns the broker's resident
// memory growth per connection, in KiB.
func idleMemory(addr string, pid, n int, settle time.Duration) (float64, error) {
	before, err := rss(pid)
	if err != nil {
		return 0, err
	}
	conns := make([]*rawmqtt.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := rawmqtt.Dial(addr, "idle-"+strconv.Itoa(i))
		if err != nil {
			return 0, fmt.Errorf("idle connection %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(settle) // let the broker settle (and a Go runtime collect)
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
