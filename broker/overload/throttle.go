package overload

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limit names a per-client limit, as metrics label its hits
// (propolis_client_limit_hits_total{limit}).
type Limit int

// The per-client limits.
const (
	// LimitPublishRate: PUBLISH packets per second (Limits.PublishRate).
	LimitPublishRate Limit = iota
	// LimitBytesRate: bytes read per second (Limits.BytesRate).
	LimitBytesRate
	// LimitSubscriptions: subscriptions per client (counted by the broker,
	// HitSubscriptions).
	LimitSubscriptions
	numLimits
)

// String returns the limit's label: "publish_rate", "bytes_rate" or
// "subscriptions".
func (l Limit) String() string {
	switch l {
	case LimitPublishRate:
		return "publish_rate"
	case LimitBytesRate:
		return "bytes_rate"
	case LimitSubscriptions:
		return "subscriptions"
	}
	return "unknown"
}

// Limits are an operator's per-client limits; a zero field is no limit.
type Limits struct {
	// PublishRate is the PUBLISH packets per second a client may send, with
	// PublishBurst more at once (at least 1).
	PublishRate  float64
	PublishBurst int
	// BytesRate is the bytes per second read from a client.
	BytesRate float64
}

// Policy says when Adjust throttles and lifts (see the package doc).
type Policy struct {
	// ThrottleLevel: at or above it, the heaviest senders are throttled.
	ThrottleLevel float64
	// ReleaseLevel: below it, throttled clients get their rate back; above
	// 0 (the lowest level), or nobody is ever released (config checks it).
	ReleaseLevel float64
	// MinRate, in bytes per second: clients sending less are never
	// throttled, and nobody is throttled below it.
	MinRate float64
}

// Stats are a Throttler's running figures.
type Stats struct {
	// Throttled is the number of clients whose stress bucket is on.
	Throttled int
	// Waited is the total time readers waited, for any bucket.
	Waited time.Duration
	// Hits counts, per Limit, the waits a limit caused (the subscription
	// limit: the refused subscriptions).
	Hits [numLimits]int64
}

// Hit returns Hits[l].
func (s Stats) Hit(l Limit) int64 { return s.Hits[l] }

// Throttler holds every connected client's buckets. Safe for concurrent
// use; Adjust runs on one goroutine at a time.
type Throttler struct {
	mu      sync.Mutex
	clients map[*Client]struct{}

	throttled atomic.Int64
	waited    atomic.Int64 // nanoseconds
	hits      [numLimits]atomic.Int64
}

// NewThrottler returns an empty Throttler.
func NewThrottler() *Throttler {
	return &Throttler{clients: map[*Client]struct{}{}}
}

// Client is one connection's buckets. Wait runs on the connection's reader
// goroutine; the rest of its state belongs to Adjust.
type Client struct {
	t         *Throttler
	protected bool          // the stress bucket may apply
	pub       *rate.Limiter // the operator's limits; nil: none
	bytes     *rate.Limiter

	read   atomic.Int64                 // bytes read since the last Adjust
	stress atomic.Pointer[rate.Limiter] // nil while not throttled

	// Adjust's own:
	limit  float64 // the stress bucket's rate, bytes/s
	before float64 // the rate it sent at when throttled
}

// Add registers a client with the operator's limits; protected says that
// the stress bucket may apply to it (its listener's overload protection is
// on and its authenticator did not turn it off). Remove it when the
// connection ends.
func (t *Throttler) Add(l Limits, protected bool) *Client {
	c := &Client{t: t, protected: protected}
	if l.PublishRate > 0 {
		c.pub = rate.NewLimiter(rate.Limit(l.PublishRate), max(l.PublishBurst, 1))
	}
	if l.BytesRate > 0 {
		c.bytes = rate.NewLimiter(rate.Limit(l.BytesRate), bucketBurst(l.BytesRate))
	}
	t.mu.Lock()
	t.clients[c] = struct{}{}
	t.mu.Unlock()
	return c
}

// bucketBurst is the burst of a bytes bucket of r bytes/s: a tenth of a
// second's worth, at least 4 KiB (a few reads of the broker's 2 KiB read
// buffer). Reads larger than it wait in several steps (reserve).
func bucketBurst(r float64) int { return max(int(r/10), 4<<10) }

// Remove forgets c (its connection ended); a throttled c stops counting.
func (t *Throttler) Remove(c *Client) {
	t.mu.Lock()
	_, ok := t.clients[c]
	delete(t.clients, c)
	t.mu.Unlock()
	if ok && c.stress.Swap(nil) != nil {
		t.throttled.Add(-1)
	}
}

// HitSubscriptions counts a subscription refused for the subscription
// limit.
func (t *Throttler) HitSubscriptions() { t.hits[LimitSubscriptions].Add(1) }

// Stats returns the running figures.
func (t *Throttler) Stats() Stats {
	s := Stats{Throttled: int(t.throttled.Load()), Waited: time.Duration(t.waited.Load())}
	for i := range s.Hits {
		s.Hits[i] = t.hits[i].Load()
	}
	return s
}

// Throttled reports whether c's stress bucket is on.
func (c *Client) Throttled() bool { return c.stress.Load() != nil }

// Wait is Pay(done, nil, Charge(n, publishes)): it accounts for n bytes
// just read and blocks until c's buckets allow them.
func (c *Client) Wait(done <-chan struct{}, n, publishes int) time.Duration {
	return c.Pay(done, nil, c.Charge(n, publishes))
}

// Charge accounts for n bytes just read from c's connection, ending
// publishes PUBLISH packets, and returns when c's buckets allow them (and
// everything charged before): the zero time when no bucket asks for a
// wait. It does not block, so the reader can hand what it read on at once
// and Pay before its next read. Its cost when no bucket applies is one
// atomic add and three loads.
func (c *Client) Charge(n, publishes int) time.Time {
	c.read.Add(int64(n))
	stress := c.stress.Load()
	if c.pub == nil && c.bytes == nil && stress == nil {
		return time.Time{}
	}
	now := time.Now()
	var d time.Duration
	if c.pub != nil && publishes > 0 {
		if w := reserve(c.pub, now, publishes); w > 0 {
			d = w
			c.t.hits[LimitPublishRate].Add(1)
		}
	}
	if c.bytes != nil && n > 0 {
		if w := reserve(c.bytes, now, n); w > 0 {
			d = max(d, w)
			c.t.hits[LimitBytesRate].Add(1)
		}
	}
	if stress != nil && n > 0 {
		d = max(d, reserve(stress, now, n))
	}
	if d <= 0 {
		return time.Time{}
	}
	return now.Add(d)
}

// Pay blocks until until (from Charge), or until done closes or wake
// receives (nil: never), and returns the time it waited; it does not wait
// for a zero or past until. A wait cut short leaves the debt as it was:
// the caller pays it later (Charge's reservations add up).
func (c *Client) Pay(done, wake <-chan struct{}, until time.Time) time.Duration {
	if until.IsZero() {
		return 0
	}
	now := time.Now()
	d := until.Sub(now)
	if d <= 0 {
		return 0
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-done:
		d = time.Since(now)
	case <-wake:
		d = time.Since(now)
	}
	c.t.waited.Add(int64(d))
	return d
}

// reserve takes n tokens from l at now, in steps of at most its burst, and
// returns how long the caller must wait for all of them.
func reserve(l *rate.Limiter, now time.Time, n int) time.Duration {
	var d time.Duration
	b := l.Burst()
	for n > 0 {
		k := min(n, b)
		r := l.ReserveN(now, k)
		if !r.OK() {
			return 0
		}
		d = r.DelayFrom(now) // reservations queue: the last one's delay is the total
		n -= k
	}
	return d
}

// Adjust applies p to the stress level, given the time since its previous
// call (see the package doc). It returns the clients it started and stopped
// throttling, for logs.
func (t *Throttler) Adjust(level float64, p Policy, elapsed time.Duration) (started, lifted int) {
	if elapsed <= 0 {
		return 0, 0
	}
	// Held throughout, so that a client Remove takes is not throttled
	// after it (its count would never go down).
	t.mu.Lock()
	defer t.mu.Unlock()
	clients := make([]*Client, 0, len(t.clients))
	for c := range t.clients {
		clients = append(clients, c)
	}

	secs := elapsed.Seconds()
	seen := make(map[*Client]float64, len(clients))
	for _, c := range clients {
		seen[c] = float64(c.read.Swap(0)) / secs
	}

	switch {
	case level >= p.ThrottleLevel:
		for _, c := range clients {
			if l := c.stress.Load(); l != nil {
				c.limit = max(c.limit/2, p.MinRate)
				l.SetLimit(rate.Limit(c.limit))
				l.SetBurst(bucketBurst(c.limit))
			}
		}
		for _, c := range heaviest(clients, seen, p.MinRate) {
			c.before = seen[c]
			c.limit = max(seen[c]/2, p.MinRate)
			c.stress.Store(rate.NewLimiter(rate.Limit(c.limit), bucketBurst(c.limit)))
			t.throttled.Add(1)
			started++
		}
	case level < p.ReleaseLevel:
		for _, c := range clients {
			l := c.stress.Load()
			if l == nil {
				continue
			}
			c.limit *= 2
			if c.limit >= c.before {
				if c.stress.CompareAndSwap(l, nil) {
					t.throttled.Add(-1)
					lifted++
				}
				continue
			}
			l.SetLimit(rate.Limit(c.limit))
			l.SetBurst(bucketBurst(c.limit))
		}
	}
	return started, lifted
}

// heaviest returns the protected, unthrottled clients to throttle: the
// fewest of the protected clients, heaviest first, that together sent at
// least half the bytes the protected clients sent, leaving out those that
// sent less than minRate (and the throttled ones, which still count in the
// total). Unprotected clients neither rank nor count: one heavy exempt
// client must not make the others' share look small.
func heaviest(clients []*Client, seen map[*Client]float64, minRate float64) []*Client {
	var total float64
	sorted := make([]*Client, 0, len(clients))
	for _, c := range clients {
		if !c.protected {
			continue
		}
		total += seen[c]
		sorted = append(sorted, c)
	}
	if total <= 0 {
		return nil
	}
	slices.SortFunc(sorted, func(a, b *Client) int {
		switch {
		case seen[a] > seen[b]:
			return -1
		case seen[a] < seen[b]:
			return 1
		}
		return 0
	})
	var out []*Client
	var sum float64
	for _, c := range sorted {
		if sum >= total/2 || seen[c] < minRate {
			break
		}
		sum += seen[c]
		if c.stress.Load() == nil {
			out = append(out, c)
		}
	}
	return out
}
