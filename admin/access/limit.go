package access

import (
	"container/list"
	"net"
	"sync"
	"time"
)

// LoginLimits are the token buckets of login attempts (and basic auth
// attempts): one per remote IP (an IPv6 address counts by its /64, which
// one host can rotate through freely), and one per user name and remote
// IP (known or not: a bucket shared by unknown names would tell which
// names exist). An attempt takes a token of both buckets before the
// password is checked, and gets both back when the password was right: so
// only failures are counted, and concurrent attempts cannot all pass
// while one PBKDF2 runs. While either bucket is empty, attempts are
// refused with 429 without checking the password. Failures from one IP
// never refuse a right password from another.
type LoginLimits struct {
	// PerIPBurst failures from one IP at once, then one per PerIPEvery.
	// Defaults 10 and 6s (10 a minute).
	PerIPBurst int
	PerIPEvery time.Duration
	// PerUserBurst failures for one user name from one IP at once, then
	// one per PerUserEvery. Defaults 5 and 12s (5 a minute).
	PerUserBurst int
	PerUserEvery time.Duration
}

// DefaultLoginLimits are the limits of a zero LoginLimits.
var DefaultLoginLimits = LoginLimits{PerIPBurst: 10, PerIPEvery: 6 * time.Second, PerUserBurst: 5, PerUserEvery: 12 * time.Second}

// maxLimited bounds the buckets kept per kind; the least recently used
// goes first. User names are at most passwd.MaxUser bytes, so the
// buckets hold a few MiB at most. An attacker who rotates through more
// keys than this makes the limiter forget buckets, which start full
// again: the per-IP bucket still limits each IP (or /64).
const maxLimited = 10000

// bucket is a token bucket: tokens at time last, refilled one per every,
// up to burst.
type bucket struct {
	tokens float64
	last   time.Time
}

// fill brings b to now.
func (b *bucket) fill(now time.Time, every time.Duration, burst int) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens += float64(d) / float64(every)
		b.last = now
	}
	if b.tokens > float64(burst) {
		b.tokens = float64(burst)
	}
}

// lru is a map of buckets bounded to maxLimited, dropping the least
// recently used.
type lru struct {
	every time.Duration
	burst int
	order *list.List // of *lruEntry, most recent first
	byKey map[string]*list.Element
}

type lruEntry struct {
	key string
	b   bucket
}

func newLRU(every time.Duration, burst int) *lru {
	return &lru{every: every, burst: burst, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns key's bucket, filled to now, making a full one if needed.
func (m *lru) get(key string, now time.Time) *bucket {
	if e, ok := m.byKey[key]; ok {
		m.order.MoveToFront(e)
		b := &e.Value.(*lruEntry).b
		b.fill(now, m.every, m.burst)
		return b
	}
	if m.order.Len() >= maxLimited {
		old := m.order.Back()
		m.order.Remove(old)
		delete(m.byKey, old.Value.(*lruEntry).key)
	}
	e := m.order.PushFront(&lruEntry{key: key, b: bucket{tokens: float64(m.burst), last: now}})
	m.byKey[key] = e
	return &e.Value.(*lruEntry).b
}

// len returns the number of buckets kept.
func (m *lru) len() int { return m.order.Len() }

// limiter holds the buckets.
type limiter struct {
	l   LoginLimits
	now func() time.Time

	mu    sync.Mutex
	ips   *lru // by ipKey
	users *lru // by user name (or unknownUser) and ipKey
}

// newLimiter returns a limiter with l, defaults filled in.
func newLimiter(l LoginLimits, now func() time.Time) *limiter {
	d := DefaultLoginLimits
	if l.PerIPBurst == 0 {
		l.PerIPBurst, l.PerIPEvery = d.PerIPBurst, d.PerIPEvery
	}
	if l.PerUserBurst == 0 {
		l.PerUserBurst, l.PerUserEvery = d.PerUserBurst, d.PerUserEvery
	}
	return &limiter{l: l, now: now, ips: newLRU(l.PerIPEvery, l.PerIPBurst), users: newLRU(l.PerUserEvery, l.PerUserBurst)}
}

// ipKey returns the key of ip's bucket: the address itself, or its /64
// for IPv6.
func ipKey(ip string) string {
	a := net.ParseIP(ip)
	if a == nil || a.To4() != nil {
		return ip
	}
	return a.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// ticket is an attempt's tokens, given back by refund when it succeeded.
type ticket struct {
	l        *limiter
	ip, user string
}

// reserve takes a token from ip's bucket and from the bucket of user at
// ip, or returns an error naming the empty one, taking nothing.
func (l *limiter) reserve(ip, user string) (*ticket, *RateLimitedError) {
	ik := ipKey(ip)
	uk := user + "\x00" + ik
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	bi, bu := l.ips.get(ik, now), l.users.get(uk, now)
	for _, b := range []struct {
		key   string
		b     *bucket
		every time.Duration
	}{{"ip " + ik, bi, l.l.PerIPEvery}, {"user " + quote(user) + " from ip " + ik, bu, l.l.PerUserEvery}} {
		if b.b.tokens >= 1 {
			continue
		}
		wait := time.Duration((1 - b.b.tokens) * float64(b.every))
		if wait < time.Second {
			wait = time.Second
		}
		return nil, &RateLimitedError{Key: b.key, RetryAfter: wait}
	}
	bi.tokens--
	bu.tokens--
	return &ticket{l: l, ip: ik, user: uk}, nil
}

// failIP takes a token from ip's bucket alone (an unknown bearer token),
// or reports that it is empty.
func (l *limiter) failIP(ip string) *RateLimitedError {
	ik := ipKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.ips.get(ik, l.now())
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) * float64(l.l.PerIPEvery))
		if wait < time.Second {
			wait = time.Second
		}
		return &RateLimitedError{Key: "ip " + ik, RetryAfter: wait}
	}
	b.tokens--
	return nil
}

// refund gives back the tokens of a successful attempt.
func (t *ticket) refund() {
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	bi, bu := l.ips.get(t.ip, now), l.users.get(t.user, now)
	bi.tokens = min(bi.tokens+1, float64(l.l.PerIPBurst))
	bu.tokens = min(bu.tokens+1, float64(l.l.PerUserBurst))
}
