package host

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// Outcome is how one call into an extension ended. Later versions may
// append outcomes: an observer needs a default case (Answered and String
// cover every one).
type Outcome uint8

// Outcomes, as a CallObserver sees them. The answers of a deciding
// callback (abi.Callbacks' Decisions) are told apart: allow, next, deny,
// disconnect, named as abi.Decisions names them.
const (
	// OutcomeOK: a callback that decides nothing (an event, a tick, start,
	// stop) answered.
	OutcomeOK Outcome = iota
	// OutcomeDeny: a deciding callback answered DENY (or a start callback
	// refused to start).
	OutcomeDeny
	// OutcomeTrap: the guest trapped (or a host function trapped it on a
	// bad pointer). The instance was discarded.
	OutcomeTrap
	// OutcomeDeadline: the call ran past the extension's call deadline, or
	// the caller's context (the broker's CONNECT deadline) ended before the
	// extension answered. An instance interrupted in a call is discarded.
	OutcomeDeadline
	// OutcomeInvalid: the answer is not one ABI.md defines (or an
	// interceptor staged a change the host refused). The instance was
	// discarded.
	OutcomeInvalid
	// OutcomeUnavailable: no instance could take the call (all busy for a
	// whole call deadline, or the extension stopped).
	OutcomeUnavailable
	// OutcomeTooLarge: the guest's buffer could not take the record
	// (ErrRecordTooLarge); the callback was not called. The instance is
	// kept.
	OutcomeTooLarge
	// OutcomeAllow: a deciding callback answered ALLOW.
	OutcomeAllow
	// OutcomeNext: a deciding callback (an interceptor included) answered
	// NEXT.
	OutcomeNext
	// OutcomeDisconnect: an authorizer answered DISCONNECT.
	OutcomeDisconnect
	// OutcomeRateLimited: the callback answered, but at least one of its
	// host service calls was refused with RATE_LIMITED, so its answer was
	// made without what the service would have given. It takes the place
	// of the answer's own outcome (RATIONALE.md, "Why is a rate-limited
	// call an outcome of its own?").
	OutcomeRateLimited
	// NumOutcomes is the number of outcomes; it is not one.
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"ok", "deny", "trap", "deadline", "invalid", "unavailable", "too_large",
	"allow", "next", "disconnect", "rate_limited"}

// decisionOutcomes is the outcome of each answer of a deciding callback,
// indexed by abi.Decision.
var decisionOutcomes = [...]Outcome{
	abi.DecisionNext:       OutcomeNext,
	abi.DecisionAllow:      OutcomeAllow,
	abi.DecisionDeny:       OutcomeDeny,
	abi.DecisionDisconnect: OutcomeDisconnect,
}

// String returns the outcome's name ("ok", "allow", "trap", ...), as
// metrics label it.
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Answered reports whether the guest answered the call (whatever it
// answered): false for a trap, a deadline, an invalid answer, no instance
// and a record too large.
func (o Outcome) Answered() bool {
	switch o {
	case OutcomeOK, OutcomeAllow, OutcomeNext, OutcomeDeny, OutcomeDisconnect, OutcomeRateLimited:
		return true
	}
	return false
}

// Call describes one finished call into an extension.
type Call struct {
	// Extension is the id of the extension called.
	Extension string
	// Folder is the number of its folder (Status.Folder): a folder
	// removed and added again calls under a new one.
	Folder uint64
	// Callback is the export called.
	Callback abi.Callback
	// Took is how long the call took, waiting for an instance included,
	// when Timed. Only one in sixteen calls of the callbacks made per
	// message (authorize_publish, intercept_publish_inbound and
	// _outbound) is timed, at random; every other call is.
	Took time.Duration
	// Timed is whether Took was measured (0 otherwise).
	Timed bool
	// Outcome is how it ended.
	Outcome Outcome
}

// CallObserver hears about every call the host makes into an extension's
// callbacks, and about its start and stop callbacks. ObserveCall runs on the calling
// goroutine, often on a client's hot path: it must be fast, must not block
// and must be safe for concurrent use. Metrics plug in here; host imports
// no metrics library.
type CallObserver interface {
	ObserveCall(c Call)
}

// ExtensionObserver is a CallObserver that can also give an observer of
// one extension's calls: the host asks once per loaded extension and then
// tells that observer about the extension's calls, sparing the observer a
// lookup by id per call. folder is the extension's folder number
// (Status.Folder): a folder removed and added again under the same id
// gets a new one, and its counts start afresh. The observer given must
// stay valid for as long as the extension runs; its Call still carries
// the id and the folder.
type ExtensionObserver interface {
	CallObserver
	ForExtension(id string, folder uint64) CallObserver
}

// observerFor is the observer of extension id's calls: Options.Observer's own
// when it is an ExtensionObserver, Options.Observer otherwise (or nil).
// loadExtension asks once per extension.
func (h *Host) observerFor(id string, folder uint64) CallObserver {
	if x, ok := h.opts.Observer.(ExtensionObserver); ok {
		return x.ForExtension(id, folder)
	}
	return h.opts.Observer
}

// observe tells the observer, if any, about a call that began at began
// (clock; 0 for a call not timed).
func (h *Host) observe(e *extension, cb abi.Callback, began int64, o Outcome) {
	if obs := e.obs; obs != nil {
		c := Call{Extension: e.ID(), Folder: e.counters.folder, Callback: cb, Outcome: o}
		if began != 0 {
			c.Took, c.Timed = time.Duration(monotonic()-began), true
		}
		obs.ObserveCall(c)
	}
}

// clock returns the time a call of cb begins (monotonic nanoseconds), for
// observe, or 0 for a call not timed: every call when there is no
// observer, and all but one in timeSample (at random) of the callbacks
// made per message (perMessage). A clock read costs 32-37 ns of CPU on
// the 2-core VM (75-90 ns of wall time when it is busy), the two a tenth
// of a whole authorize_publish call; a CONNECT's or an event's call costs
// microseconds and is always timed (RATIONALE.md, "Why are per-message
// calls timed one in sixteen?").
func (h *Host) clock(cb abi.Callback) int64 {
	if h.opts.Observer == nil || perMessage.Has(cb) && rand.Uint32()%timeSample != 0 {
		return 0
	}
	return monotonic()
}

// perMessage are the callbacks called for every message (a publish, a
// delivery), timed one call in timeSample.
var perMessage = abi.CallbacksOf(abi.CallbackAuthorizePublish, abi.CallbackInterceptPublishInbound, abi.CallbackInterceptPublishOutbound)

// timeSample: one in timeSample calls of the perMessage callbacks is
// timed.
const timeSample = 16

// classify names the outcome of a call of cb: err's kind when it failed;
// otherwise OutcomeRateLimited when a host service refused it
// RATE_LIMITED, the outcome of its decision d for a deciding callback,
// OutcomeOK for the others. It is the one place outcomes are decided.
func classify(cb abi.Callback, err error, d abi.Decision, rateLimited bool) Outcome {
	switch {
	case err == nil && rateLimited:
		return OutcomeRateLimited
	case err == nil && abi.Callbacks[cb].Decides() && int(d) < len(decisionOutcomes):
		return decisionOutcomes[d]
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrDeadline), errors.Is(err, ErrCanceled):
		return OutcomeDeadline
	case errors.Is(err, ErrInvalidAnswer):
		return OutcomeInvalid
	case errors.Is(err, ErrBusy), errors.Is(err, ErrStopped):
		return OutcomeUnavailable
	case errors.Is(err, ErrRecordTooLarge):
		return OutcomeTooLarge
	}
	return OutcomeTrap
}

// record is an ABI record the host writes into guest memory.
type record interface {
	Encode(dst []byte) []byte
}

// encode writes rec into dst. The type switch calls each Encode directly,
// so that a record on the caller's stack stays there (a call through the
// interface would make every record escape to the heap, one allocation per
// PUBLISH).
func encode(rec record, dst []byte) []byte {
	switch r := rec.(type) {
	case *abi.PublishRecord:
		return r.Encode(dst)
	case *abi.SubscribeRecord:
		return r.Encode(dst)
	case *abi.ConnectRecord:
		return r.Encode(dst)
	case *abi.EventRecord:
		return r.Encode(dst)
	case *abi.StartRecord:
		return r.Encode(dst)
	case *abi.MessageRecord:
		return r.Encode(dst)
	case *abi.ConnackRecord:
		return r.Encode(dst)
	case *abi.SubscriptionRecord:
		return r.Encode(dst)
	case *abi.DisconnectRecord:
		return r.Encode(dst)
	case *laterMinor: // the conformance kit's (probe.go)
		return r.Encode(dst)
	}
	// Naming rec's type here (fmt's %T) would make every record escape.
	panic("host: a record type without an encoder in encode")
}

// answer is what one call produced.
type answer struct {
	// ext is the extension that answered: the one asked, or its successor
	// when it was replaced since the caller's chain was taken.
	ext *extension
	// decision and code are a deciding callback's answer.
	decision abi.Decision
	code     byte
	// out is what the guest set through host functions during the call.
	out callOut
	// outcome is how the call ended (classify), as the observer heard.
	outcome Outcome
}

// invoke is the one path for calls into a pooled extension's callbacks:
//
//  1. acquire an instance (of the successor, when e was replaced since the
//     caller took its chain, so that a reload refuses nothing), waiting at
//     most one call deadline and never past ctx;
//  2. write rec into the instance's buffer and run cb under the deadline
//     (and ctx, when it can end);
//  3. classify the outcome: a deciding callback's answer must be one its
//     row of abi.Callbacks allows;
//  4. give the instance back, or discard it after a failure (counted
//     towards the crash-loop stop);
//  5. count the call and tell the observer.
//
// The error is nil when the guest answered; a caller deciding on it then
// fails closed. A call the caller's context ended is not counted against
// the extension. A host service refused RATE_LIMITED during the call makes
// its outcome rate_limited here, and an interceptor's refused change
// (packet_set) makes the answer invalid here.
//
// Start and stop callbacks, made on one instance outside any pool, run
// through instance.run too and are observed by newInstance and
// pool.closeAll.
func (h *Host) invoke(ctx context.Context, e *extension, cb abi.Callback, rec record) (answer, error) {
	return h.invokeFor(ctx, e, cb, rec, broker.Conn{})
}

// invokeFor is invoke for a callback about one connection: the connection
// attribute functions act on conn while the call runs.
func (h *Host) invokeFor(ctx context.Context, e *extension, cb abi.Callback, rec record, conn broker.Conn) (answer, error) {
	began := h.clock(cb)
	if err := ctx.Err(); err != nil {
		err = fmt.Errorf("%s: %w (%v)", cb, ErrCanceled, context.Cause(ctx))
		o := classify(cb, err, 0, false)
		h.observe(e, cb, began, o)
		return answer{ext: e, outcome: o}, err
	}
	e, in, err := h.acquire(ctx, e, cb)
	if err != nil {
		o := classify(cb, err, 0, false)
		h.observe(e, cb, began, o)
		return answer{ext: e, outcome: o}, err
	}
	var res uint64
	in.conn = conn
	if abi.Interceptors.Has(cb) {
		in.pkt = packetStateOf(rec)
	}
	switch {
	case rec == nil: // a callback without a record (propolis_tick), never with a ctx that ends
		res, err = in.run(cb)
	case ctx.Done() == nil:
		res, err = in.callRecord(cb, encode(rec, in.scratch()))
	default:
		res, err = in.callWithin(ctx, cb, rec)
	}
	a := answer{ext: e}
	if err == nil && abi.Callbacks[cb].Decides() {
		a.decision, a.code, err = decision(cb, res)
	}
	if err == nil && in.out.bad != nil { // a refused packet_set: the whole answer is invalid
		err = fmt.Errorf("%s: %w: %v", cb, ErrInvalidAnswer, in.out.bad)
	}
	if err == nil && in.out.dirty { // an untouched out is the zero value: no copy of it per PUBLISH
		a.out = in.out
	}
	a.outcome = classify(cb, err, a.decision, in.out.rateLimited)
	in.conn = broker.Conn{}
	e.release(in, cb, err)
	h.observe(e, cb, began, a.outcome)
	return a, err
}

// successor returns the running extension that replaced e in its folder,
// if it takes cb; nil otherwise.
func (h *Host) successor(e *extension, cb abi.Callback) *extension {
	h.mu.Lock()
	next := h.exts[filepath.Base(e.dir)]
	h.mu.Unlock()
	if next == nil || next == e || !next.has(abi.Callbacks[cb].Bit) {
		return nil
	}
	return next
}

// callWithin runs one call that also ends when ctx does. The watchdog
// watches ctx.Done() while the call runs (no goroutine, timer or
// allocation per call) and halts the instance when it ends, within one
// watchdog tick: the error is then ErrCanceled and the instance is
// discarded. Only the guarded path has a watchdog; an unguarded call (a
// benchmark) does not end with ctx.
func (in *instance) callWithin(ctx context.Context, cb abi.Callback, rec record) (uint64, error) {
	in.caller.Store(ctx.Done())
	res, err := in.callRecord(cb, encode(rec, in.scratch()))
	in.caller.Store(noCaller)
	if in.stoppedBy == callerGone {
		return 0, fmt.Errorf("%s: %w (%v)", cb, ErrCanceled, context.Cause(ctx))
	}
	return res, err
}

// acquire takes an instance of e. A client may hold a chain from before a
// reload: when e was replaced meanwhile by a version that takes cb, the
// call goes to the successor (not a tick: a successor ticks on its own).
// For a deciding callback, failing to get an
// instance counts as a failure of the extension (one whose instances all
// hang empties its pool), unless the caller's context ended first, an
// instance was being started for it (errGrowing) or authenticate calls
// held all they may (errAuthShare); an event that finds no instance is
// dropped and counted as such.
func (h *Host) acquire(ctx context.Context, e *extension, cb abi.Callback) (*extension, *instance, error) {
	// waited is set when the call waited for an instance, of e or of its
	// successor: one wait counted per call.
	waited := false
	in, err := e.acquire(ctx, cb, &waited)
	if errors.Is(err, ErrStopped) && cb != abi.CallbackTick { // a successor ticks on its own
		if next := h.successor(e, cb); next != nil {
			e = next
			in, err = e.acquire(ctx, cb, &waited)
		}
	}
	if waited {
		e.counters.waits.Add(1)
	}
	if err == nil {
		return e, in, nil
	}
	switch {
	case cb == abi.CallbackTick && errors.Is(err, ErrStopped): // the ticks are ending
	case !abi.Callbacks[cb].Decides():
		e.dropEvent(err)
	case errors.Is(err, ErrCanceled):
	case errors.Is(err, errGrowing), errors.Is(err, errAuthShare), errors.Is(err, errNested):
		// Waiting on an instance being started (whose start may wait on
		// HTTP), or on authenticate calls waiting on their identity
		// service: the call fails closed, but the extension did nothing
		// wrong; counting it would stop it as a crash loop under load.
		// Under load this repeats for every call: the lines are spaced
		// like those of refused host services.
		e.errors.Add(1)
		if e.gate.logLimiter.Allow() {
			e.log.Warn("no instance for a call in time; not counted as a failure of the extension", "callback", cb.String(), "error", err)
		}
	case !errors.Is(err, ErrStopped):
		e.errors.Add(1)
		e.log.Warn("no instance for a call", "callback", cb.String(), "error", err)
		e.noteFailure(err)
	}
	return e, nil, fmt.Errorf("%s: %w", cb, err)
}
