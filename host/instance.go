package host

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// Errors a call into an extension can end with, besides a trap.
var (
	// ErrDeadline: the call ran past the extension's call deadline.
	ErrDeadline = errors.New("call deadline exceeded")
	// ErrInvalidAnswer: the guest returned something ABI.md does not define.
	ErrInvalidAnswer = errors.New("invalid answer")
	// ErrBusy: no instance became free within the call deadline.
	ErrBusy = errors.New("all instances busy")
	// ErrStopped: the extension is no longer running.
	ErrStopped = errors.New("extension stopped")
	// ErrCanceled: the caller's context (the broker's deadline for a
	// CONNECT) ended before the extension answered. Not counted against
	// the extension.
	ErrCanceled = errors.New("caller's deadline passed")
	// ErrRecordTooLarge: the guest's propolis_buffer answered 0, saying it
	// cannot hold the record. The callback was not called and the decision
	// fails closed, but the instance is kept and the crash-loop count left
	// alone: a module with a bounded buffer is not broken (ABI.md section
	// 4, "Record size").
	ErrRecordTooLarge = errors.New("record too large for the extension's buffer")
)

// callOut collects what the guest set through host functions during one
// callback. It is reset only when a host function touched it, so the
// common publish path pays nothing.
type callOut struct {
	dirty         bool
	reason        string
	declared      bool   // declare_callbacks was called
	mask          uint32 // what it declared
	filters       []string
	sessionExpiry *uint32
	receiveMax    uint16
	keepalive     *uint16
	maxQueued     uint16
	noThrottling  bool // set_overload_throttling(0), ABI 1.3
	connack       []broker.UserProperty
	perms         []abi.Permission
	// result is a host service's result that did not fit the guest's
	// buffer, kept for take_result until the callback ends.
	result []byte
	held   bool
	// cacheFor is what cache_result set: seconds to keep the
	// authentication answer, 0 for not at all.
	cacheFor uint32
	// packet is the changes an interceptor staged with packet_set and
	// packet_set_int, in order, copied out of guest memory; bad is the
	// first change refused, which makes the call an invalid answer
	// (packetset.go).
	packet []packetChange
	bad    error
	// interceptFilters are what add_intercept_filter set, per publish
	// interceptor (filterInbound, filterOutbound).
	interceptFilters [2][]string
	// interceptClients are the client id patterns add_intercept_client
	// set, in order.
	interceptClients []string
	// rateLimited: a host service call was refused RATE_LIMITED (the
	// call's outcome is then OutcomeRateLimited).
	rateLimited bool
}

func (o *callOut) reset() {
	if o.dirty {
		*o = callOut{}
	}
}

// instance is one instantiated module. It is used by one goroutine at a
// time (it lives in its extension's pool between calls).
type instance struct {
	ext   *extension
	mod   api.Module
	mem   api.Memory
	fns   [abi.NumCallbacks]api.Function
	stack [1]uint64

	bufPtr, bufCap uint32

	// ctx carries the instance to host functions. halt stops a running
	// call for good: it sets interrupt, the global the host compiled into
	// the guest (interrupt.go), or, for a module that keeps wazero's
	// guard, cancels ctx so that wazero closes the module.
	ctx       context.Context
	cancel    context.CancelFunc
	interrupt api.MutableGlobal
	// started is the number of the guarded call in flight (from calls),
	// 0 when idle; the watchdog swaps it to 0 (overdue) or callerGone
	// (the caller's context ended) when it halts the call. A number, not
	// a clock reading: reading the clock on every call cost about as much
	// as the rest of the guard (bench/README.md, "Where the gate's time
	// goes"); the watchdog times each call from its first sight of it.
	started atomic.Int64
	// limit is how long the call in flight may run (its callback's
	// deadline), in nanoseconds, for the watchdog; set before started.
	limit atomic.Int64
	// began is when the call in flight began (monotonic), read by
	// http_request to bound a request by what is left of the deadline. It
	// is set only for the callbacks that may call it (abi.InHTTP): the
	// publish path pays no clock read.
	began int64
	// calls numbers the guarded calls (run; one goroutine at a time).
	calls int64
	// seen is the call the watchdog last saw in flight, seenAt when it
	// first saw it (monotonic). Only the watchdog touches them.
	seen, seenAt int64
	// caller is the Done channel of the context of the call in flight
	// (callWithin), noCaller otherwise; the watchdog watches it.
	caller atomic.Value
	// stoppedBy is what run found the watchdog had swapped started to
	// (0 or callerGone) when it halted the call; -2 when it did not.
	stoppedBy int64

	// cb is the callback running now (set by run; CallbackInitialize
	// before the first); host functions check it against abi.HostFuncs.
	cb  abi.Callback
	out callOut
	// conn is the connection the running callback is about (invokeFor),
	// zero outside such a call; connection attribute functions act on it.
	conn broker.Conn
	// pkt is what packet_set checks a change against: the packet as the
	// running interceptor got it (invokeFor).
	pkt packetState
}

type instanceKey struct{}

// instanceFrom returns the instance a host function runs for.
func instanceFrom(ctx context.Context) *instance {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	return in
}

var clockBase = time.Now()

// monotonic returns nanoseconds since process start (never 0 after start).
func monotonic() int64 { return int64(time.Since(clockBase)) + 1 }

// newInstance instantiates the extension's module, runs its _initialize,
// checks its marker, allocates its record buffer and runs its start
// callback. These calls, made before the instance is in a pool the
// watchdog looks at, are bounded together by setupLimit.
func (e *extension) newInstance(ctx context.Context, previous string) (*instance, error) {
	ictx, cancel := context.WithTimeout(ctx, instantiateTimeout)
	defer cancel()
	in := &instance{ext: e, stoppedBy: notStopped}
	in.caller.Store(noCaller)
	in.ctx, in.cancel = context.WithCancel(context.WithValue(context.Background(), instanceKey{}, in))
	mod, err := e.rt.InstantiateModule(ictx, e.compiled, e.modConfig.WithNanosleep(in.nanosleep))
	if err != nil {
		in.cancel()
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	index := e.instances.Add(1) - 1 // the START record's instance index
	in.mod, in.mem = mod, mod.Memory()
	for cb, info := range abi.Callbacks {
		in.fns[cb] = mod.ExportedFunction(info.Export)
	}
	fail := func(err error) (*instance, error) {
		in.close()
		return nil, err
	}
	if e.interruptible {
		g, ok := mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
		if !ok {
			return fail(fmt.Errorf("export %s: missing after instrumentation", interruptExport))
		}
		in.interrupt = g
	}
	setup := time.AfterFunc(e.setupLimit(), in.halt)
	defer setup.Stop()
	if in.mem == nil {
		return fail(fmt.Errorf("export %q: missing", abi.ExportMemory))
	}
	if in.fns[abi.CallbackInitialize] != nil {
		if _, err := in.run(abi.CallbackInitialize); err != nil {
			return fail(err)
		}
	}
	minor, err := in.run(abi.CallbackMarker)
	if err != nil {
		return fail(err)
	}
	if uint32(minor) > abi.Minor {
		return fail(fmt.Errorf("export %s: module is built for ABI 1.%d, this broker runs up to %s", abi.CallbackMarker, uint32(minor), abi.Version))
	}
	if need, ok := e.manifest.neededMinor(); ok && uint32(minor) < need {
		return fail(fmt.Errorf("export %s: module is built for ABI 1.%d, older than the manifest's abi %q: rebuild the module against a %s SDK, or lower abi to \"1.%d\"",
			abi.CallbackMarker, uint32(minor), e.manifest.ABI, e.manifest.ABI, uint32(minor)))
	}
	if index == 0 {
		e.minor.Store(uint32(minor))
	}
	if in.fns[abi.CallbackBuffer] != nil {
		if err := in.growBuffer(abi.DefaultBufferCapacity); err != nil {
			return fail(err)
		}
	}
	if in.fns[abi.CallbackStart] != nil {
		cfg, _ := configJSON(e.manifest.Config)
		if previous == "" {
			previous = e.previous
		}
		rec := abi.StartRecord{ExtensionID: e.manifest.ID, ExtensionVersion: e.manifest.Version,
			BrokerVersion: e.host.opts.BrokerVersion, PreviousVersion: previous, Config: cfg, Instance: index}
		began := e.host.clock(abi.CallbackStart)
		res, err := in.callRecord(abi.CallbackStart, rec.Encode(in.scratch()))
		o := classify(abi.CallbackStart, err, 0, in.out.rateLimited)
		if err == nil && uint32(res) != 0 {
			o = OutcomeDeny // a refusal to start
		}
		e.host.observe(e, abi.CallbackStart, began, o)
		if err != nil {
			return fail(err)
		}
		if uint32(res) != 0 {
			reason := in.out.reason
			if reason == "" {
				reason = "no reason given"
			}
			return fail(fmt.Errorf("%w: %s", errRefusedStart, reason))
		}
		if index > 0 && !e.sameDeclaration(&in.out) {
			e.log.Warn("a later instance's start declared other callbacks, filters or client patterns than instance 0's; ignored",
				"instance", index, "callbacks", abi.CallbackNames(in.out.mask), "filters", in.out.filters,
				"intercept_filters", in.out.interceptFilters, "intercept_clients", in.out.interceptClients)
		}
	}
	if !setup.Stop() { // the limit passed just as the last call returned
		return fail(fmt.Errorf("set up: %w (%v)", ErrDeadline, e.setupLimit()))
	}
	return in, nil
}

// setupLimit bounds the calls that set an instance up or tear it down
// (initialize, marker, buffer, start, stop): ten call deadlines, at least
// 2 s.
func (e *extension) setupLimit() time.Duration {
	return max(10*e.deadline, 2*time.Second)
}

// runBounded runs a callback under its own time limit, for calls made
// outside the watchdog's view (stop). An instance the limit stopped is
// halted for good.
func (in *instance) runBounded(cb abi.Callback, limit time.Duration) (uint64, error) {
	t := time.AfterFunc(limit, in.halt)
	res, err := in.run(cb)
	if !t.Stop() && err == nil {
		err = fmt.Errorf("%s: %w (%v)", cb, ErrDeadline, limit)
	}
	return res, err
}

// halt stops the instance's running call (if any) at its next loop
// iteration or function entry, and every later call: the instance must
// be discarded. Safe from any goroutine, and more than once.
func (in *instance) halt() {
	if in.interrupt != nil {
		in.interrupt.Set(1)
	}
	in.cancel()
}

// nanosleep is the guest's sleep (WASI poll_oneoff, clock subscriptions):
// real, but never longer than one call deadline, and cut short when the
// instance is halted, since a guest blocked in a host function does not
// reach its interrupt check.
func (in *instance) nanosleep(ns int64) {
	t := time.NewTimer(min(time.Duration(ns), in.callLimit()))
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.ctx.Done():
	}
}

// callLimit is how long the call in flight may run: its callback's
// deadline (the call deadline before the first guarded call).
func (in *instance) callLimit() time.Duration {
	if l := in.limit.Load(); l > 0 {
		return time.Duration(l)
	}
	return in.ext.deadline
}

// Values of instance.started and instance.stoppedBy.
const (
	// callerGone: the watchdog halted the call because its caller's
	// context ended.
	callerGone = -1
	// notStopped: the watchdog has not halted the instance.
	notStopped = -2
)

// noCaller is instance.caller outside callWithin: a channel never closed
// (atomic.Value cannot hold nil).
var noCaller = (<-chan struct{})(make(chan struct{}))

// errRefusedStart marks a start callback that declined to start.
var errRefusedStart = errors.New("refused to start")

// instantiateTimeout bounds instantiation and start of one instance.
const instantiateTimeout = 10 * time.Second

// scratch returns the guest buffer as an empty slice whose capacity is
// exactly the buffer, so a record can be encoded in place. A record that
// outgrows it is reallocated by append, and callRecord copies it after
// asking the guest for a larger buffer.
func (in *instance) scratch() []byte {
	if in.bufCap == 0 {
		return nil
	}
	view, ok := in.mem.Read(in.bufPtr, in.bufCap)
	if !ok {
		return nil
	}
	return view[:0:in.bufCap]
}

// callRecord makes sure rec sits in the guest buffer and calls the
// callback with its length.
func (in *instance) callRecord(cb abi.Callback, rec []byte) (uint64, error) {
	n := uint32(len(rec))
	if n > in.bufCap || in.bufCap == 0 {
		if err := in.growBuffer(n); err != nil {
			return 0, err
		}
		if !in.mem.Write(in.bufPtr, rec) {
			return 0, fmt.Errorf("%w: %s buffer outside memory", ErrInvalidAnswer, abi.CallbackBuffer)
		}
	}
	in.stack[0] = uint64(n)
	return in.run(cb)
}

// growBuffer asks the guest for a buffer of at least n bytes.
func (in *instance) growBuffer(n uint32) error {
	if in.fns[abi.CallbackBuffer] == nil {
		return fmt.Errorf("%w: module exports no %s", ErrInvalidAnswer, abi.CallbackBuffer)
	}
	n = max(n, abi.DefaultBufferCapacity)
	in.stack[0] = uint64(n)
	res, err := in.run(abi.CallbackBuffer)
	if err != nil {
		return err
	}
	ptr := uint32(res)
	if ptr == 0 { // "cannot": the previous buffer stays valid
		return fmt.Errorf("%w: %s(%d) answered 0", ErrRecordTooLarge, abi.CallbackBuffer, n)
	}
	if uint64(ptr)+uint64(n) > uint64(in.mem.Size()) {
		return fmt.Errorf("%w: %s(%d) returned %#x, outside memory of %d bytes", ErrInvalidAnswer, abi.CallbackBuffer, n, ptr, in.mem.Size())
	}
	in.bufPtr, in.bufCap = ptr, n
	return nil
}

// run calls the export for cb with in.stack as its parameters and returns
// its first result. It is the only place that enters a guest. Host.invoke
// is the only path to it for calls to a pooled extension; newInstance
// (_initialize, marker, buffer, start) and pool.closeAll (stop) call it on
// an instance outside any pool.
func (in *instance) run(cb abi.Callback) (uint64, error) {
	fn := in.fns[cb]
	if fn == nil {
		return 0, fmt.Errorf("export %s: missing", cb)
	}
	if cb != abi.CallbackBuffer {
		in.out.reset()
	}
	prev := in.cb
	in.cb = cb
	guarded := in.ext.guarded
	if abi.InHTTP.Has(cb) {
		in.began = monotonic()
	}
	var began int64
	if guarded {
		in.calls++
		began = in.calls
		if cb != abi.CallbackBuffer { // a buffer call inside a call keeps the call's limit
			in.limit.Store(int64(in.ext.deadlineFor(cb)))
		}
		in.started.Store(began)
	}
	err := fn.CallWithStack(in.ctx, in.stack[:])
	// The watchdog halts only by swapping started from the call's number
	// to 0 or callerGone first; if the swap here fails, it won the race
	// and the instance is halted even if the call completed.
	cancelled := guarded && !in.started.CompareAndSwap(began, 0)
	if cancelled {
		in.stoppedBy = in.started.Swap(0)
	}
	in.cb = prev
	if err != nil || cancelled {
		if cancelled || in.ctx.Err() != nil {
			return 0, fmt.Errorf("%s: %w (%v)", cb, ErrDeadline, in.callLimit())
		}
		return 0, fmt.Errorf("%s: %w", cb, err)
	}
	return in.stack[0], nil
}

// decision decodes a deciding callback's result; anything ABI.md does not
// define for cb (its row of abi.Callbacks lists its decisions) is an error.
func decision(cb abi.Callback, res uint64) (abi.Decision, byte, error) {
	d, code, ok := abi.DecodeDecision(uint32(res))
	if !ok || res>>32 != 0 || !abi.Callbacks[cb].Decisions.Has(d) {
		return 0, 0, fmt.Errorf("%s: %w: decision %#x", cb, ErrInvalidAnswer, res)
	}
	return d, code, nil
}

// close halts the instance, so that a call still running in it stops at
// its next check (instrumented) or context check (wazero's guard), then
// releases its module, and returns the size of its linear memory, for
// Host.released.
//
// Closing the module under a call still running (pool.closeAll's last
// resort) does not crash the process: wazero only marks the module closed
// and drops its system context (a WASI function then panics, which
// wazero's call turns into an error); its linear memory is Go memory and
// the compiled code stays mapped while the running call references it.
func (in *instance) close() uint64 {
	in.halt()
	var size uint64
	if in.mem != nil {
		size = uint64(in.mem.Size())
	}
	_ = in.mod.Close(context.Background())
	return size
}
