package host

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
)

// pool holds an extension's instances. Instances are not goroutine-safe:
// a call takes one from idle and gives it back. The pool keeps at most
// size instances alive; a discarded one is replaced in the background.
type pool struct {
	ext  *extension
	size int
	idle chan *instance

	mu     sync.Mutex
	all    map[*instance]struct{}
	closed bool
}

func newPool(e *extension, size int) *pool {
	return &pool{ext: e, size: size, idle: make(chan *instance, size), all: make(map[*instance]struct{}, size)}
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

// get returns an idle instance, waiting up to one call deadline for one to
// come back, and never past ctx.
func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case in := <-p.idle:
		return in, nil
	default:
	}
	t := time.NewTimer(p.ext.deadline)
	defer t.Stop()
	select {
	case in := <-p.idle:
		return in, nil
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (%v)", ErrCanceled, context.Cause(ctx))
	}
}

// put returns an instance after a successful call.
func (p *pool) put(in *instance) {
	p.idle <- in
}

// discard closes an instance after a failed call and starts a
// replacement, so the pool recovers by itself. An instance closeAll
// already closed (its call outlived the stop) is not counted twice.
func (p *pool) discard(in *instance) {
	p.mu.Lock()
	_, live := p.all[in]
	delete(p.all, in)
	closed := p.closed
	p.mu.Unlock()
	if !live {
		return
	}
	p.ext.host.released(in.close())
	if closed || p.ext.stopped.Load() {
		return
	}
	go func() {
		// Retry with backoff until it works or the extension stops: a pool
		// must not shrink for good.
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
	wait := time.NewTimer(3 * p.ext.deadline)
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
