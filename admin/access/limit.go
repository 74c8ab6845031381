package access

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// LoginLimits are the token buckets of failed logins (and failed basic
// auth): one per remote IP and one per user name. A failure takes a token
// of both; while either is empty, attempts are refused with 429 without
// checking the password (which also bounds the PBKDF2 work an attacker can
// cause).
type LoginLimits struct {
	// PerIPBurst failures from one IP at once, then one per PerIPEvery.
	// Defaults 10 and 6s (10 a minute).
	PerIPBurst int
	PerIPEvery time.Duration
	// PerUserBurst failures for one user name at once, then one per
	// PerUserEvery. Defaults 5 and 12s (5 a minute).
	PerUserBurst int
	PerUserEvery time.Duration
}

// DefaultLoginLimits are the limits of a zero LoginLimits.
var DefaultLoginLimits = LoginLimits{PerIPBurst: 10, PerIPEvery: 6 * time.Second, PerUserBurst: 5, PerUserEvery: 12 * time.Second}

// maxLimited bounds the buckets kept per kind; full buckets are dropped
// first (they hold no information).
const maxLimited = 100000

// limiter holds the buckets.
type limiter struct {
	l   LoginLimits
	now func() time.Time

	mu    sync.Mutex
	ips   map[string]*rate.Limiter
	users map[string]*rate.Limiter
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
	return &limiter{l: l, now: now, ips: map[string]*rate.Limiter{}, users: map[string]*rate.Limiter{}}
}

// check returns an error when ip or user has no attempt left.
func (l *limiter) check(ip, user string) *RateLimitedError {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, b := range []struct {
		key string
		lim *rate.Limiter
	}{{"ip " + ip, l.ips[ip]}, {"user " + quote(user), l.users[user]}} {
		if b.lim == nil || b.lim.TokensAt(now) >= 1 {
			continue
		}
		r := b.lim.ReserveN(now, 1)
		wait := r.DelayFrom(now)
		r.CancelAt(now)
		if wait < time.Second {
			wait = time.Second
		}
		return &RateLimitedError{Key: b.key, RetryAfter: wait}
	}
	return nil
}

// fail takes a token from the buckets of ip and user.
func (l *limiter) fail(ip, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	take(l.ips, ip, rate.Every(l.l.PerIPEvery), l.l.PerIPBurst, now)
	take(l.users, user, rate.Every(l.l.PerUserEvery), l.l.PerUserBurst, now)
}

// take takes a token from m[key], making the bucket if needed.
func take(m map[string]*rate.Limiter, key string, r rate.Limit, burst int, now time.Time) {
	lim, ok := m[key]
	if !ok {
		if len(m) >= maxLimited {
			for k, v := range m {
				if v.TokensAt(now) >= float64(burst) {
					delete(m, k)
				}
			}
		}
		lim = rate.NewLimiter(r, burst)
		m[key] = lim
	}
	lim.AllowN(now, 1)
}
