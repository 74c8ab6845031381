package access

import (
	"log/slog"
	"sync"
	"time"
)

// Throttles of what a stranger can make the broker write: warn lines of
// failed logins and unknown tokens (Access), audit lines of refused
// requests (package admin).
const (
	warnEvery = time.Second
	warnBurst = 20
)

// throttle lets through a burst of events, then one per every, counting
// the ones it drops. Safe for concurrent use.
type throttle struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu      sync.Mutex
	b       bucket
	dropped int
}

// newThrottle returns a full throttle; now nil means time.Now.
func newThrottle(every time.Duration, burst int, now func() time.Time) *throttle {
	if now == nil {
		now = time.Now
	}
	return &throttle{every: every, burst: burst, now: now, b: bucket{tokens: float64(burst), last: now()}}
}

// allow reports whether one more event may be written, and how many were
// dropped since the last one allowed (0 when refused).
func (t *throttle) allow() (ok bool, dropped int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.fill(t.now(), t.every, t.burst)
	if t.b.tokens < 1 {
		t.dropped++
		return false, 0
	}
	t.b.tokens--
	dropped, t.dropped = t.dropped, 0
	return true, dropped
}

// log writes msg at warn unless throttled; a line after dropped ones says
// how many ("dropped": lines of this kind not written).
func (t *throttle) log(log *slog.Logger, msg string, args ...any) {
	ok, dropped := t.allow()
	if !ok {
		return
	}
	if dropped > 0 {
		args = append(args, "dropped", dropped)
	}
	log.Warn(msg, args...)
}

// Throttle limits the audit lines of refused requests, which anyone who
// reaches the endpoint can cause: Allow lets a burst through, then one per
// interval, and says how many it refused since the last one it allowed.
// Safe for concurrent use.
type Throttle struct{ t *throttle }

// NewThrottle returns a Throttle of burst events, then one per every.
func NewThrottle(every time.Duration, burst int) *Throttle {
	return &Throttle{t: newThrottle(every, burst, nil)}
}

// Allow reports whether one more event may be written, and how many were
// refused since the last one allowed.
func (t *Throttle) Allow() (ok bool, dropped int) { return t.t.allow() }
