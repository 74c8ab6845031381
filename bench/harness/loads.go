package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// The loads. Each is bounded in count and in time, talks only to the
// broker's loopback address, and returns its figures.

// loadTimeout bounds any single load.
const loadTimeout = 90 * time.Second

// errTimeout reports a load that did not finish in loadTimeout.
var errTimeout = errors.New("load did not finish in time")

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

// flow runs pubs publishers and subs subscribers on one topic: each
// publisher sends msgs messages at qos; subscribers subscribe at qos (and
// acknowledge QoS 1). It returns delivered messages per second, counted at
// the subscribers, and how many of the expected deliveries never came (a
// broker may drop messages under load; that is reported, not hidden).
//
// A window keeps at most 256 deliveries per subscriber on their way, so a
// broker is measured at the rate it sustains rather than the rate at which
// it drops. If deliveries stop progressing for 2 s (the broker dropped
// some), publishers go on without the window, and subscribers stop once
// the publishers are done and 2 s pass without a message.
func flow(addr, name string, pubs, subs, msgs int, qos byte) (rate float64, lost int64, err error) {
	topic := "bench/" + name
	total := int64(pubs * msgs * subs)
	var delivered, lastDelivery atomic.Int64
	lastDelivery.Store(time.Now().UnixNano())
	subConns := make([]*rawmqtt.Conn, subs)
	for i := range subConns {
		c, err := rawmqtt.Dial(addr, name+"-sub-"+strconv.Itoa(i))
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		if err := c.Subscribe(topic, qos); err != nil {
			return 0, 0, err
		}
		subConns[i] = c
	}
	deadline := time.Now().Add(loadTimeout)
	errs := make(chan error, subs+pubs)
	var pubsDone atomic.Bool
	var subWG sync.WaitGroup
	for _, c := range subConns {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			_ = c.SetDeadline(deadline)
			for n := 0; n < pubs*msgs; {
				typ, body, err := c.ReadPacket()
				if err != nil {
					if !pubsDone.Load() {
						errs <- fmt.Errorf("subscriber after %d of %d: %w", n, pubs*msgs, err)
					}
					return // closed by the idle watcher: the rest was lost
				}
				if typ>>4 != 3 {
					continue
				}
				if qos > 0 {
					_, id, _ := rawmqtt.ParsePublish(typ, body)
					c.Puback(id)
					// Send the acks before waiting for more: a broker
					// with a small in-flight window waits for them.
					if c.Buffered() == 0 {
						_ = c.Flush()
					}
				}
				n++
				delivered.Add(1)
				lastDelivery.Store(time.Now().UnixNano())
			}
			_ = c.Flush()
		}()
	}
	stalled := func() bool { return time.Since(time.Unix(0, lastDelivery.Load())) > 2*time.Second }
	var sent atomic.Int64
	window := int64(256 * subs)
	start := time.Now()
	var pubWG sync.WaitGroup
	for p := 0; p < pubs; p++ {
		c, err := rawmqtt.Dial(addr, name+"-pub-"+strconv.Itoa(p))
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			if err := publishMany(c, topic, qos, msgs, func() {
				if sent.Load()*int64(subs)-delivered.Load() > window {
					_ = c.Flush() // what waits to be sent must not wait for delivery
					for sent.Load()*int64(subs)-delivered.Load() > window && !stalled() && time.Now().Before(deadline) {
						time.Sleep(50 * time.Microsecond)
					}
				}
				sent.Add(1)
			}); err != nil {
				errs <- err
			}
		}()
	}
	pubWG.Wait()
	pubsDone.Store(true)
	done := make(chan struct{})
	go func() { subWG.Wait(); close(done) }()
	idle := time.NewTicker(100 * time.Millisecond)
	defer idle.Stop()
	for {
		select {
		case <-done:
			elapsed := time.Since(start)
			if stalled() { // the last 2 s waited for messages that never came
				elapsed = time.Unix(0, lastDelivery.Load()).Sub(start)
			}
			return float64(delivered.Load()) / elapsed.Seconds(), total - delivered.Load(), nil
		case err := <-errs:
			return 0, 0, err
		case <-idle.C:
			if stalled() {
				for _, c := range subConns {
					_ = c.Drop()
				}
			}
			if time.Now().After(deadline) {
				return 0, 0, errTimeout
			}
		}
	}
}

// publishMany publishes count messages, QoS 1 with up to 64
// unacknowledged, calling pace before each.
func publishMany(c *rawmqtt.Conn, topic string, qos byte, count int, pace func()) error {
	payload := make([]byte, 64)
	acks := make(chan struct{}, 64)
	ackErr := make(chan error, 1)
	if qos > 0 {
		go func() {
			for i := 0; i < count; i++ {
				typ, _, err := c.ReadPacket()
				if err != nil {
					ackErr <- fmt.Errorf("publisher: %w", err)
					return
				}
				if typ>>4 != 4 {
					i--
					continue
				}
				<-acks
			}
			ackErr <- nil
		}()
	}
	for i := 0; i < count; i++ {
		pace()
		if qos > 0 {
			select {
			case acks <- struct{}{}:
			default:
				if err := c.Flush(); err != nil {
					return err
				}
				acks <- struct{}{}
			}
		}
		c.Publish(topic, qos, uint16(i%65535+1), payload)
		if i%16 == 15 || qos == 0 {
			if err := c.Flush(); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	if qos > 0 {
		return <-ackErr
	}
	return nil
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
			time.Sleep(wait)
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

// idleMemory opens n idle connections and returns the broker's resident
// memory growth per connection, in KiB.
func idleMemory(addr string, pid, n int) (float64, error) {
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
	time.Sleep(2 * time.Second) // let the broker settle (and a Go runtime collect)
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
