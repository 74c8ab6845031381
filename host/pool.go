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
// trimEvery period are stopped. Authenticate calls, which may wait on an
// identity service for up to limits.authenticate_deadline, hold at most
// max - size instances at once (authSlots) when the extension also
// authorizes publishes or subscriptions, so that those calls always find
// an instance or room for a new one, and never wait behind authenticate
// calls.
type pool struct {
	ext  *extension
	size int
	max  int
	idle chan *instance
	// authSlots holds a token per authenticate call in flight, when they
	// are bounded (max - size of them); nil when they are not.
	authSlots chan struct{}

	mu      sync.Mutex
	all     map[*instance]struct{}
	growing int // instances being started, counted against max
	closed  bool

	// lowIdle is the fewest idle instances seen since the last trim;
	// trimming is 1 while a trim runs.
	lowIdle  atomic.Int32
	trimming atomic.Bool
}

// trimEvery is how long an instance beyond the pool's size may stay idle
// before it is stopped. A host reads it when it is created (a test
// shortens it).
var trimEvery = 30 * time.Second

func newPool(e *extension, size, max int) *pool {
	max = cmp.Or(max, size)
	p := &pool{ext: e, size: size, max: max, idle: make(chan *instance, max), all: make(map[*instance]struct{}, size)}
	p.lowIdle.Store(int32(max))
	authorizes := e.has(abi.Callbacks[abi.CallbackAuthorizePublish].Bit | abi.Callbacks[abi.CallbackAuthorizeSubscribe].Bit)
	if e.has(abi.Callbacks[abi.CallbackAuthenticate].Bit) && authorizes {
		if max > size {
			p.authSlots = make(chan struct{}, max-size)
		} else {
			e.log.Warn("limits.max_pool_size equals limits.pool_size: authenticate calls may hold every instance, "+
				"and publish and subscribe authorization then waits behind them", "pool_size", size)
		}
	}
	return p
}

// add puts a new instance into service.
func (p *pool) add(in *instance) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		in.close()
		return
	}
	p.all[in] = struct{}{}
	p.mu.Unlock()
	p.idle <- in
}

// get returns an idle instance for a call of cb, starting one more when
// none is idle and the pool may grow, and waiting up to cb's deadline
// (and never past ctx) for one. An authenticate call first takes one of
// the pool's authenticate slots, if they are bounded, within the same
// wait; release gives it back. The common case, an idle instance (and a
// free slot), takes no timer and no allocation.
func (p *pool) get(ctx context.Context, cb abi.Callback) (*instance, error) {
	slot := cb == abi.CallbackAuthenticate && p.authSlots != nil
	held := false
	if slot {
		select {
		case p.authSlots <- struct{}{}:
			held = true
		default:
		}
	}
	if !slot || held {
		select {
		case in := <-p.idle:
			p.noteIdle()
			return in, nil
		default:
		}
	}
	in, taken, err := p.wait(ctx, cb, slot && !held)
	if err != nil && (held || taken) {
		<-p.authSlots
	}
	return in, err
}

// wait is get's slow path: it takes an authenticate slot when needSlot,
// then an instance, starting one more if the pool may grow, all within
// cb's deadline and ctx. taken reports whether it took a slot.
func (p *pool) wait(ctx context.Context, cb abi.Callback, needSlot bool) (in *instance, taken bool, err error) {
	t := time.NewTimer(p.ext.deadlineFor(cb))
	defer t.Stop()
	if needSlot {
		select {
		case p.authSlots <- struct{}{}:
			taken = true
		case <-t.C:
			return nil, false, ErrBusy
		case <-ctx.Done():
			return nil, false, fmt.Errorf("%w (%v)", ErrCanceled, context.Cause(ctx))
		}
		select {
		case in := <-p.idle:
			p.noteIdle()
			return in, true, nil
		default:
		}
	}
	p.grow()
	select {
	case in := <-p.idle:
		p.noteIdle()
		return in, taken, nil
	case <-t.C:
		return nil, taken, ErrBusy
	case <-ctx.Done():
		return nil, taken, fmt.Errorf("%w (%v)", ErrCanceled, context.Cause(ctx))
	}
}

// count returns how many instances the pool has now.
func (p *pool) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.all)
}

// noteIdle records how many instances are left idle, for trim.
func (p *pool) noteIdle() {
	if n := int32(len(p.idle)); n < p.lowIdle.Load() {
		p.lowIdle.Store(n) // a lost race only keeps an instance longer
	}
}

// grow starts one more instance in the background, unless the pool has
// (or is starting) max instances already. It joins the idle ones.
func (p *pool) grow() {
	p.mu.Lock()
	if p.closed || len(p.all)+p.growing >= p.max {
		p.mu.Unlock()
		return
	}
	p.growing++
	p.mu.Unlock()
	go func() {
		in, err := p.ext.newInstance(context.Background(), "")
		defer func() { // counted until added, so that the pool never exceeds max
			p.mu.Lock()
			p.growing--
			p.mu.Unlock()
		}()
		if err != nil {
			if !p.ext.stopped.Load() {
				p.ext.log.Error("grow the pool", "error", err)
				p.ext.noteFailure(err)
			}
			return
		}
		p.add(in)
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
	low := int(p.lowIdle.Swap(int32(len(p.idle))))
	p.mu.Lock()
	surplus := min(low, len(p.all)-p.size)
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
	p.lowIdle.Store(int32(len(p.idle)))
}

// put returns an instance after a successful call.
func (p *pool) put(in *instance) {
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
		defer func() {
			p.mu.Lock()
			p.growing--
			p.mu.Unlock()
		}()
		// Retry with backoff until it works or the extension stops: a pool
		// must not shrink below its size for good.
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			if p.ext.stopped.Load() {
				return
			}
			repl, err := p.ext.newInstance(context.Background(), "")
			if err == nil {
				p.add(repl)
				return
			}
			p.ext.log.Error("replace instance", "error", err, "retry_in", wait)
			p.ext.noteFailure(err)
			time.Sleep(wait)
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

// closeAll waits for calls in flight to return (up to three deadlines),
// runs each instance's stop callback when graceful, and closes them all.
// Calls still running then are halted (instance.halt) and given up to
// setupLimit more to return; an instance whose call outlives even that (a
// guest blocked in a host function) is closed under it (see
// instance.close). It returns the linear memory the closed instances
// held, in bytes.
func (p *pool) closeAll(graceful bool) (size uint64) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	wait := time.NewTimer(3 * max(p.ext.deadline, p.ext.authDeadline))
	defer wait.Stop()
	// A failed call's instance leaves through discard, not idle: look
	// again every tick.
	tick := time.NewTicker(watchdogTick)
	defer tick.Stop()
	halted := false
	for {
		p.mu.Lock()
		left := len(p.all)
		p.mu.Unlock()
		if left == 0 {
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
				p.ext.log.Warn("calls still running after the stop limit; instances closed under them", "instances", len(p.all))
				p.all = map[*instance]struct{}{}
				p.mu.Unlock()
				return size
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
	delete(p.all, in)
	p.mu.Unlock()
	if graceful && in.fns[abi.CallbackStop] != nil {
		in.stack[0] = 0
		began := p.ext.host.clock()
		_, err := in.runBounded(abi.CallbackStop, p.ext.setupLimit())
		p.ext.host.observe(p.ext, abi.CallbackStop, began, classify(err, false))
		if err != nil {
			p.ext.log.Warn("stop callback failed", "error", err)
		}
	}
	return in.close()
}
