package host

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
)

// pool holds an extension's instances. Instances are not goroutine-safe:
// a call takes one from idle and gives it back.
//
// How it grows and waits (ABI.md section 7, "Instances"): size instances
// (limits.pool_size) are started with the extension and always kept. A
// call that finds none idle starts one more in the background, up to max
// (limits.max_pool_size), and takes whichever instance comes first, a new
// one or one given back; it waits at most its callback's deadline, and
// never past ctx. Instances beyond size that stayed idle through a whole
// trimEvery period are stopped.
//
// Authenticate calls, which may wait on an identity service for up to
// limits.authenticate_deadline, are kept off the last size instances
// when the extension also authorizes publishes or subscriptions
// (authLimited): an authenticate call takes an instance only while the
// authenticate calls hold fewer than len(all) - size, growing the pool
// for itself otherwise. The other calls so always have size instances
// that no authenticate call holds, ready (not being started) and idle
// unless they are busy with one another. Trimming keeps one instance
// beyond size for the authentications, once one was started.
type pool struct {
	ext  *extension
	size int
	max  int
	idle chan *instance
	// hot holds one idle instance outside idle: the one the last call
	// gave back, taken by the next call with one atomic swap instead of a
	// channel receive and send (each a lock; together ~70 ns of a ~1 µs
	// call, bench/README.md). It is used only while no caller waits on
	// idle (waiters), so a waiting caller is always woken through idle;
	// see put and takeHot.
	hot atomic.Pointer[instance]
	// waiters counts the callers that may block on idle (wait, getAuth),
	// plus one for good once closeAll began: put then gives instances to
	// idle, where they are seen.
	waiters atomic.Int32
	// authLimited: authenticate calls keep off the last size instances.
	authLimited bool
	// done is closed by closeAll: waiting callers give up (ErrStopped),
	// and move to the successor, if any.
	done chan struct{}

	mu      sync.Mutex
	all     map[*instance]struct{}
	growing int // instances being started, counted against max
	closed  bool
	// authHeld counts the instances authenticate calls hold (when
	// authLimited); authWaiters the authenticate calls waiting for their
	// turn, woken by closing changed when an instance is added or an
	// authenticate call ends.
	authHeld, authWaiters int
	changed               chan struct{}

	// lowIdle is the fewest idle instances seen since the last trim;
	// trimming is 1 while a trim runs.
	lowIdle  atomic.Int32
	trimming atomic.Bool

	// afterReplace, when set (a test, before the first call), runs in
	// discard's replacement after the replacement was handed over: where
	// a call failing on it must start the next replacement.
	afterReplace func()
}

// errGrowing is ErrBusy when the pool was starting an instance for the
// call: the start took longer than the call's deadline. It fails the
// call, but is no failure of the extension (no crash-loop count).
var errGrowing = fmt.Errorf("%w while the pool was starting one more", ErrBusy)

// errNested is the error of an interceptor call given up at once, for it
// may be nested in a broker service call of the same extension (pool.wait).
var errNested = fmt.Errorf("%w while a call of the extension was in a broker service", ErrBusy)

// errAuthShare is ErrBusy for an authenticate call when the authenticate
// calls in flight hold every instance they may (max - size): they are
// waiting on their identity service, not failing.
var errAuthShare = fmt.Errorf("%w: authenticate calls hold every instance they may", ErrBusy)

// trimEvery is how long an instance beyond the pool's size may stay idle
// before it is stopped. A host reads it when it is created (a test
// shortens it).
var trimEvery = 30 * time.Second

func newPool(e *extension, size, max int) *pool {
	max = cmp.Or(max, size)
	p := &pool{ext: e, size: size, max: max, idle: make(chan *instance, max), all: make(map[*instance]struct{}, size),
		done: make(chan struct{}), changed: make(chan struct{})}
	p.lowIdle.Store(int32(max))
	authorizes := e.has(abi.Callbacks[abi.CallbackAuthorizePublish].Bit | abi.Callbacks[abi.CallbackAuthorizeSubscribe].Bit)
	if e.has(abi.Callbacks[abi.CallbackAuthenticate].Bit) && authorizes {
		if max > size {
			p.authLimited = true
		} else {
			e.log.Warn("limits.max_pool_size equals limits.pool_size: authenticate calls may hold every instance, "+
				"and publish and subscribe authorization then waits behind them", "pool_size", size)
		}
	}
	return p
}

// signalLocked wakes the waiting authenticate calls; p.mu is held.
func (p *pool) signalLocked() {
	if p.authWaiters > 0 {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// add puts a new instance into service. One added after closeAll began
// (a growth that was under way) still joins: closeAll waits for it and
// retires it like the others, stop callback included.
func (p *pool) add(in *instance) {
	p.addGrown(in, false)
}

// addGrown is add for an instance started by a growth or a replacement
// (grown): it stops counting in growing in the same critical section that
// counts it in all. Uncounting it later would let a call that fails on it
// meanwhile see the pool still growing and start no replacement: a pool
// of one instance then stayed empty for good.
func (p *pool) addGrown(in *instance, grown bool) {
	p.mu.Lock()
	p.all[in] = struct{}{}
	if grown {
		p.growing--
	}
	p.signalLocked()
	p.mu.Unlock()
	p.idle <- in
}

// get returns an idle instance for a call of cb, starting one more when
// none is idle and the pool may grow, and waiting up to cb's deadline
// (and never past ctx or the pool's closing) for one. The common case,
// an idle instance for a call other than authenticate, takes no lock, no
// timer and no allocation. An authenticate call of an authLimited pool
// goes through getAuth; releaseAuth ends it.
func (p *pool) get(ctx context.Context, cb abi.Callback, waited *bool) (*instance, error) {
	if cb == abi.CallbackAuthenticate && p.authLimited {
		return p.getAuth(ctx, waited)
	}
	if in := p.hot.Swap(nil); in != nil {
		return in, nil
	}
	select {
	case in := <-p.idle:
		p.noteIdle()
		return in, nil
	default:
	}
	return p.wait(ctx, cb, waited)
}

// takeHot is called by a caller about to block on idle, after it counted
// itself in waiters: it takes the instance in hot, if any. put stores into
// hot and then looks at waiters; a waiter counts itself and then looks at
// hot (both sequentially consistent), so one of the two sees the other and
// no instance stays in hot while a caller sleeps on idle.
func (p *pool) takeHot() *instance {
	return p.hot.Swap(nil)
}

// wait is get's slow path. An interceptor call that finds no instance
// while a call of the same extension is inside a broker service, with the
// pool at its largest, gives up at once: it may be nested in that call (a
// kick's DISCONNECT intercepted on the kicking call's goroutine), and
// would wait for the instance its own caller holds. The packet then passes
// unintercepted, which an interceptor's failure does anyway.
func (p *pool) wait(ctx context.Context, cb abi.Callback, waited *bool) (*instance, error) {
	if abi.Interceptors.Has(cb) && p.ext.inBroker.Load() > 0 && p.full() {
		return nil, errNested
	}
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	if in := p.takeHot(); in != nil {
		return in, nil
	}
	*waited = true
	t := time.NewTimer(p.ext.deadlineFor(cb))
	defer t.Stop()
	p.grow()
	select {
	case in := <-p.idle:
		p.noteIdle()
		return in, nil
	case <-t.C:
		return nil, p.busyErr()
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (%v)", ErrCanceled, context.Cause(ctx))
	case <-p.done:
		return nil, ErrStopped
	}
}

// busyErr is the error of a call that found no instance in time:
// errGrowing when one was being started.
func (p *pool) busyErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.growing > 0 {
		return errGrowing
	}
	return ErrBusy
}

// getAuth takes an instance for an authenticate call of an authLimited
// pool: only while authenticate calls hold fewer than len(all) - size,
// starting one more instance otherwise (or when none is idle).
func (p *pool) getAuth(ctx context.Context, waited *bool) (*instance, error) {
	var t *time.Timer
	waiting := false
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	defer func() {
		if waiting {
			p.mu.Lock()
			p.authWaiters--
			p.mu.Unlock()
		}
		if t != nil {
			t.Stop()
		}
	}()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrStopped
		}
		allowed := p.authHeld < len(p.all)-p.size
		if allowed {
			if in := p.takeHot(); in != nil {
				p.authHeld++
				p.mu.Unlock()
				return in, nil
			}
			select {
			case in := <-p.idle:
				p.authHeld++
				p.mu.Unlock()
				p.noteIdle()
				return in, nil
			default:
			}
		}
		p.growLocked()
		if !waiting {
			p.authWaiters++
			waiting = true
			*waited = true
		}
		changed := p.changed
		p.mu.Unlock()
		if t == nil {
			t = time.NewTimer(p.ext.authDeadline)
		}
		idle := p.idle
		if !allowed {
			idle = nil // wait for a change instead
		}
		select {
		case in := <-idle:
			p.mu.Lock()
			if p.authHeld < len(p.all)-p.size {
				p.authHeld++
				p.mu.Unlock()
				p.noteIdle()
				return in, nil
			}
			p.mu.Unlock()
			p.idle <- in // another authenticate call took the last share meanwhile
		case <-changed:
		case <-t.C:
			p.mu.Lock()
			defer p.mu.Unlock()
			switch {
			case p.growing > 0:
				return nil, errGrowing
			case p.authHeld >= p.max-p.size:
				return nil, errAuthShare
			}
			return nil, ErrBusy
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v)", ErrCanceled, context.Cause(ctx))
		case <-p.done:
			return nil, ErrStopped
		}
	}
}

// releaseAuth ends an authenticate call of an authLimited pool, before
// its instance is given back or discarded.
func (p *pool) releaseAuth() {
	p.mu.Lock()
	p.authHeld--
	p.signalLocked()
	p.mu.Unlock()
}

// count returns how many instances the pool has now.
func (p *pool) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.all)
}

// idleCount returns how many instances are idle now: in idle and hot.
func (p *pool) idleCount() int {
	n := len(p.idle)
	if p.hot.Load() != nil {
		n++
	}
	return n
}

// noteIdle records how many instances are left idle, for trim.
func (p *pool) noteIdle() {
	if n := int32(p.idleCount()); n < p.lowIdle.Load() {
		p.lowIdle.Store(n) // a lost race only keeps an instance longer
	}
}

// full reports whether the pool may not start one more instance.
func (p *pool) full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed || len(p.all)+p.growing >= p.max
}

// grow starts one more instance in the background, unless the pool has
// (or is starting) max instances already, or is closed. It joins the
// idle ones.
func (p *pool) grow() {
	p.mu.Lock()
	p.growLocked()
	p.mu.Unlock()
}

// growLocked is grow with p.mu held.
func (p *pool) growLocked() {
	if p.closed || len(p.all)+p.growing >= p.max {
		return
	}
	p.growing++
	go func() {
		// Counted in growing until added (addGrown), so that the pool
		// never exceeds max.
		in, err := p.ext.newInstance(context.Background(), "")
		if err != nil {
			p.mu.Lock()
			p.growing--
			p.mu.Unlock()
			if !p.ext.stopped.Load() {
				p.ext.log.Error("grow the pool", "error", err)
				p.ext.noteFailure(err)
			}
			return
		}
		p.addGrown(in, true)
	}()
}

// trim stops the instances beyond the pool's size that stayed idle since
// the last trim. The watchdog calls it every trimEvery, on a goroutine of
// its own (stop callbacks take time).
func (p *pool) trim() {
	if !p.trimming.CompareAndSwap(false, true) {
		return
	}
	defer p.trimming.Store(false)
	low := int(p.lowIdle.Swap(int32(p.idleCount())))
	p.mu.Lock()
	// Never below size plus what authenticate calls hold: the other
	// calls keep size instances of their own. An authLimited pool keeps
	// one more, once grown, for the next authentication: a broker with
	// few CONNECTs would otherwise start (and stop) an instance for each.
	floor := p.size + p.authHeld
	if p.authLimited {
		floor = p.size + max(p.authHeld, 1)
	}
	surplus := min(low, len(p.all)-floor)
	if p.closed { // closeAll retires them
		surplus = 0
	}
	p.mu.Unlock()
	for ; surplus > 0; surplus-- {
		select {
		case in := <-p.idle:
			p.ext.host.released(p.retire(in, true))
		default:
			return
		}
	}
	p.lowIdle.Store(int32(p.idleCount()))
}

// testAfterHotStore, when set (a test), runs in put between storing into
// hot and looking at waiters again: where a caller that began to wait
// meanwhile must be seen.
var testAfterHotStore func()

// put returns an instance after a successful call: into hot when it is
// empty and no caller waits on idle, into idle otherwise (see takeHot).
func (p *pool) put(in *instance) {
	if p.waiters.Load() == 0 && p.hot.CompareAndSwap(nil, in) {
		if testAfterHotStore != nil {
			testAfterHotStore()
		}
		if p.waiters.Load() == 0 {
			return
		}
		// A caller began to wait meanwhile: hand it over through idle,
		// unless it took the instance from hot itself.
		if in = p.hot.Swap(nil); in == nil {
			return
		}
	}
	p.idle <- in
}

// discard closes an instance after a failed call and starts a
// replacement when the pool fell below its size, so the pool recovers by
// itself. An instance closeAll already closed (its call outlived the
// stop) is not counted twice.
func (p *pool) discard(in *instance) {
	p.mu.Lock()
	_, live := p.all[in]
	delete(p.all, in)
	short := live && !p.closed && !p.ext.stopped.Load() && len(p.all)+p.growing < p.size
	if short {
		p.growing++
	}
	p.mu.Unlock()
	if !live {
		return
	}
	p.ext.host.released(in.close())
	if !short {
		return
	}
	go func() {
		added := false
		defer func() {
			if !added {
				p.mu.Lock()
				p.growing--
				p.mu.Unlock()
			}
		}()
		// Retry with backoff until it works or the pool closes (closeAll
		// waits for this goroutine): a pool must not shrink below its
		// size for good.
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			select {
			case <-p.done:
				return
			default:
			}
			repl, err := p.ext.newInstance(context.Background(), "")
			if err == nil {
				p.addGrown(repl, true)
				added = true
				if p.afterReplace != nil {
					p.afterReplace()
				}
				return
			}
			if p.ext.stopped.Load() {
				return
			}
			p.ext.log.Error("replace instance", "error", err, "retry_in", wait)
			p.ext.noteFailure(err)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			}
		}
	}()
}

// busy calls f for every instance in a guarded call right now (the
// watchdog's view).
func (p *pool) busy(f func(*instance, int64)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for in := range p.all {
		if s := in.started.Load(); s > 0 {
			f(in, s)
		}
	}
}

// closeAll wakes the callers waiting for an instance (ErrStopped: they
// move to the successor, if any), waits for calls in flight to return (up
// to three deadlines) and for instances being started to join, runs each
// instance's stop callback when graceful, and closes them all.
// Calls still running then are halted (instance.halt) and given up to
// setupLimit more to return; an instance whose call outlives even that (a
// guest blocked in a host function) is closed under it (see
// instance.close). It returns the linear memory the closed instances
// held, in bytes.
func (p *pool) closeAll(graceful bool) (size uint64) {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		p.waiters.Add(1) // from now on put gives instances to idle
	}
	p.mu.Unlock()
	if in := p.takeHot(); in != nil {
		p.idle <- in
	}
	wait := time.NewTimer(3 * max(p.ext.deadline, p.ext.authDeadline))
	defer wait.Stop()
	// A failed call's instance leaves through discard, not idle: look
	// again every tick.
	tick := time.NewTicker(watchdogTick)
	defer tick.Stop()
	halted := false
	for {
		p.mu.Lock()
		left, growing := len(p.all), p.growing
		p.mu.Unlock()
		if left == 0 && growing == 0 {
			return size
		}
		select {
		case in := <-p.idle:
			size += p.retire(in, graceful && !halted)
		case <-tick.C:
		case <-wait.C:
			if halted {
				p.mu.Lock()
				for in := range p.all {
					size += in.close()
				}
				if len(p.all) > 0 {
					p.ext.log.Warn("calls still running after the stop limit; instances closed under them", "instances", len(p.all))
				}
				p.all = map[*instance]struct{}{}
				p.mu.Unlock()
				// An instance still starting (its start bounded by the
				// set-up limit) joins idle and is retired, not gracefully.
				wait.Reset(p.ext.setupLimit())
				continue
			}
			p.mu.Lock()
			for in := range p.all {
				in.halt()
			}
			p.mu.Unlock()
			halted = true
			wait.Reset(p.ext.setupLimit())
		}
	}
}

// retire takes an idle instance out of the pool (and so out of the
// watchdog's view: its stop callback has its own limit), runs its stop
// callback when graceful, and closes it.
func (p *pool) retire(in *instance, graceful bool) uint64 {
	p.mu.Lock()
	_, live := p.all[in]
	delete(p.all, in)
	p.mu.Unlock()
	if !live { // closed under its call by closeAll, then given back
		return 0
	}
	if graceful && in.fns[abi.CallbackStop] != nil {
		in.stack[0] = 0
		began := p.ext.host.clock(abi.CallbackStop)
		_, err := in.runBounded(abi.CallbackStop, p.ext.setupLimit())
		p.ext.host.observe(p.ext, abi.CallbackStop, began, classify(abi.CallbackStop, err, 0, in.out.rateLimited))
		if err != nil {
			p.ext.log.Warn("stop callback failed", "error", err)
		}
	}
	return in.close()
}
