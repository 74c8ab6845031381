package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/host"
)

// maxFailures is how many failed calls of one callback the kit makes
// before it stops driving that callback (one for a deadline overrun,
// which costs a whole deadline each).
const maxFailures = 3

// answer is what one call gave, as compared between runs: the decision,
// the reason string set_reason gave and an interceptor's packet changes.
type answer struct {
	outcome  host.Outcome
	decision abi.Decision
	code     byte
	reason   string
	changes  string // host.ProbeResult.Changes, joined by ", "
	// keptFor is the seconds cache_result marked the answer for, 0 for
	// none (not compared by same).
	keptFor uint32
}

func answerOf(res host.ProbeResult) answer {
	return answer{outcome: res.Outcome, decision: res.Decision, code: res.Code, reason: res.Reason, changes: strings.Join(res.Changes, ", "),
		keptFor: res.KeptFor}
}

func (a answer) String() string {
	if !a.outcome.Answered() {
		return a.outcome.String()
	}
	s := a.decision.String()
	if a.code != 0 {
		s = fmt.Sprintf("%s %#02x", a.decision, a.code)
	}
	if a.reason != "" {
		s += fmt.Sprintf(" reason %q", a.reason)
	}
	if a.changes != "" {
		s += " changing " + a.changes
	}
	return s
}

// same reports whether a and b are the same answer: both failed (how is
// the failure checks' business), or both answered with the same decision,
// reason code, reason string and packet changes. The outcome itself is not
// compared: the same decision is rate_limited when a service call was
// refused for the rate (a matter of timing, not of state in the instance)
// and its decision's own name otherwise.
func (a answer) same(b answer) bool {
	if a.outcome.Answered() != b.outcome.Answered() {
		return false
	}
	if !a.outcome.Answered() {
		return true
	}
	return a.decision == b.decision && a.code == b.code && a.reason == b.reason && a.changes == b.changes
}

// withOutcome is String with the call's outcome, for messages comparing
// two answers.
func (a answer) withOutcome() string {
	if !a.outcome.Answered() {
		return a.String()
	}
	return fmt.Sprintf("%s (outcome %s)", a, a.outcome)
}

// cbStats gathers one callback's failures in the first run.
type cbStats struct {
	calls    int
	failures map[host.Outcome][]failure
	refused  []failure // services refused for want of a grant
	tooLarge int
	given    bool // stopped being driven after maxFailures
}

type failure struct {
	in  *input
	msg string
}

func (s *cbStats) fail(o host.Outcome, in *input, msg string) {
	if s.failures == nil {
		s.failures = map[host.Outcome][]failure{}
	}
	s.failures[o] = append(s.failures[o], failure{in, msg})
}

func (s *cbStats) failed() int {
	n := 0
	for _, f := range s.failures {
		n += len(f)
	}
	return n
}

// runner drives one probe.
type runner struct {
	r      *Report
	t      *target
	p      *host.Probe
	ctx    context.Context
	stats  map[abi.Callback]*cbStats
	reopen int // restarts after a crash-loop stop
	// repeatFail is the first call that failed in a pass after the first.
	repeatFail *failure
	// overran are the inputs whose call overran its deadline once but not
	// when tried again.
	overran []*input
}

// deadlineRetries is how many more times an input whose call overran its
// deadline is tried before the overrun counts.
const deadlineRetries = 2

// runChecks starts the extension in a probe, drives every callback it
// exports with the corpus, and checks answers, deadlines, services,
// memory and state across instances; then stops it.
func runChecks(ctx context.Context, r *Report, t *target, opts Options) {
	began := time.Now()
	p, err := host.OpenProbe(ctx, t.dir, t.manifest, host.ProbeOptions{Logger: opts.Logger, CacheDir: opts.CacheDir, Network: opts.Network})
	if err != nil {
		if strings.Contains(err.Error(), abi.Callbacks[abi.CallbackMarker].Export) {
			r.add("run", "ABI version", Fail, "%v", err)
		}
		r.Results = append(r.Results, Result{Group: "run", Name: "start and stop", Status: Fail,
			Message: fmt.Sprintf("start with the manifest's config failed: %v", err), Took: time.Since(began)})
		return
	}
	r.add("run", "ABI version", Pass, "the marker says ABI %d.%d; this host runs %d.0 to %s", abi.Major, p.Minor(), abi.Major, abi.Version)
	x := &runner{r: r, t: t, p: p, ctx: ctx, stats: map[abi.Callback]*cbStats{}}
	cbs := p.Callbacks()
	t.callbacks = cbs
	stopErr := func() error {
		if len(cbs) == 0 {
			r.add("run", "callbacks", Skip, "the module exports (or declares) no callback: nothing to drive")
			return x.p.Close(ctx)
		}
		corpus := newGen(opts.Seed).corpus(cbs, opts.Calls)
		passBegan := time.Now()
		first := x.pass(corpus, true)
		firstTook := time.Since(passBegan)
		x.report(cbs)
		if x.anyFailed() {
			r.add("run", "memory does not keep growing", Skip, "not run: calls failed above")
			r.add("run", "same answer on every instance", Skip, "not run: calls failed above")
			if slices.Contains(cbs, abi.CallbackAuthorizePublish) {
				r.add("run", keptCheck, Skip, "not run: calls failed above")
			}
			return x.p.Close(ctx)
		}
		x.stateAndMemory(corpus, first, firstTook)
		x.keptVerdicts(corpus, first)
		return x.p.Close(ctx)
	}()
	msg := fmt.Sprintf("started with the manifest's config (%s), stopped", configSummary(t.manifest))
	if x.reopen > 0 {
		msg += fmt.Sprintf("; restarted %d times after the host stopped it for a crash loop", x.reopen)
	}
	res := Result{Group: "run", Name: "start and stop", Status: Pass, Message: msg, Took: time.Since(began)}
	if stopErr != nil {
		res.Status, res.Message = Fail, fmt.Sprintf("the stop callback failed: %v", stopErr)
	}
	r.Results = append(r.Results, res)
}

// configSummary shows the manifest's config as JSON, shortened.
func configSummary(m *host.Manifest) string {
	if m.Config == nil {
		return "{}"
	}
	b, err := json.Marshal(m.Config)
	if err != nil {
		b = []byte(fmt.Sprint(m.Config))
	}
	s := string(b)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// pass calls every input in order (reversed when forward is false) and
// returns the answers, indexed by input. The first pass (record) gathers
// each callback's failures and stops driving a callback after
// maxFailures.
func (x *runner) pass(corpus []*input, record bool) []answer {
	out := make([]answer, len(corpus))
	for k := range corpus {
		in := corpus[k]
		s := x.stats[in.cb]
		if s == nil {
			s = &cbStats{}
			x.stats[in.cb] = s
		}
		if record && s.given {
			out[in.n] = answer{outcome: host.OutcomeUnavailable}
			continue
		}
		if x.p.Stopped() {
			if err := x.p.Restart(x.ctx); err != nil {
				x.r.add("run", "restart after a crash loop", Fail, "%v", err)
				s.given = true
				continue
			}
			x.reopen++
		}
		res := x.p.Call(x.ctx, in.cb, in.rec, in.extra)
		x.r.CallsMade++
		if res.Outcome == host.OutcomeUnavailable && errors.Is(res.Err, host.ErrStopped) {
			// The host stopped it for a crash loop (the failures are
			// reported already): start it again and retry.
			if err := x.p.Restart(x.ctx); err != nil {
				x.r.add("run", "restart after a crash loop", Fail, "%v", err)
				s.given = true
				continue
			}
			x.reopen++
			res = x.p.Call(x.ctx, in.cb, in.rec, in.extra)
			x.r.CallsMade++
		}
		// A deadline overrun may be the machine's load (a CI runner
		// shared with other jobs): the input is tried again, on a fresh
		// instance, and only an overrun every time counts.
		for try := 0; try < deadlineRetries && res.Outcome == host.OutcomeDeadline; try++ {
			again := x.p.Call(x.ctx, in.cb, in.rec, in.extra)
			x.r.CallsMade++
			if again.Outcome != host.OutcomeDeadline {
				x.overran = append(x.overran, in)
				res = again
			}
		}
		out[in.n] = answerOf(res)
		if !record {
			if !res.Outcome.Answered() && res.Outcome != host.OutcomeTooLarge && x.repeatFail == nil {
				x.repeatFail = &failure{in, errString(res.Err)}
			}
			continue
		}
		s.calls++
		for _, f := range res.Refused {
			s.refused = append(s.refused, failure{in, abi.HostFuncs[f].Name})
		}
		switch {
		case res.Outcome.Answered():
			continue
		case res.Outcome == host.OutcomeTooLarge:
			s.tooLarge++
			continue
		}
		s.fail(res.Outcome, in, errString(res.Err))
		if res.Outcome == host.OutcomeDeadline || s.failed() >= maxFailures {
			s.given = true
		}
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func (x *runner) anyFailed() bool {
	for _, s := range x.stats {
		if s.failed() > 0 || len(s.refused) > 0 {
			return true
		}
	}
	return false
}

// report adds each callback's results of the first pass.
func (x *runner) report(cbs []abi.Callback) {
	for _, cb := range cbs {
		s := x.stats[cb]
		if s == nil {
			s = &cbStats{}
		}
		name := abi.Callbacks[cb].Name
		note := ""
		if s.given {
			note = fmt.Sprintf(" (stopped driving it after %d failed calls)", s.failed())
		}
		x.outcome(name+": no trap", s, note, host.OutcomeTrap, "traps")
		x.outcome(name+": answers within the deadline", s, note+x.overranNote(cb), host.OutcomeDeadline,
			fmt.Sprintf("runs past its deadline (%v) every time it is tried", deadline(x.t.manifest, cb)))
		what := "answers are valid decisions"
		if !abi.Callbacks[cb].Decides() {
			what = "calls succeed"
		} else if abi.Interceptors.Has(cb) {
			what = "answers and packet changes are valid"
		}
		x.outcome(name+": "+what, s, note, host.OutcomeInvalid, "answers what ABI.md does not allow")
		if len(s.refused) > 0 {
			f := s.refused[0]
			x.r.add("run", name+": uses only granted services", Fail, "calls %s, of service %s, which the manifest does not grant (refused with NOT_PERMITTED %d times); first on %s",
				f.msg, serviceOf(f.msg), len(s.refused), f.in)
		} else {
			x.r.add("run", name+": uses only granted services", Pass, "%d calls, no service call refused", s.calls)
		}
		if fs := s.failures[host.OutcomeUnavailable]; len(fs) > 0 {
			x.r.add("run", name+": an instance is available", Fail, "%d calls found no instance; first on %s: %s", len(fs), fs[0].in, fs[0].msg)
		}
	}
}

// overranNote says which inputs of cb overran their deadline once but
// answered in time when tried again.
func (x *runner) overranNote(cb abi.Callback) string {
	n := 0
	var first *input
	for _, in := range x.overran {
		if in.cb == cb {
			if n == 0 {
				first = in
			}
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d calls overran once and answered in time when tried again, first %s: a loaded machine, or a call close to its deadline)", n, first)
}

func serviceOf(fn string) string {
	if f, ok := abi.HostFuncByName(fn); ok {
		return abi.HostFuncs[f].Service.String()
	}
	return "?"
}

func deadline(m *host.Manifest, cb abi.Callback) time.Duration {
	if cb == abi.CallbackAuthenticate {
		return time.Duration(m.Limits.AuthenticateDeadline)
	}
	return time.Duration(m.Limits.CallDeadline)
}

// outcome adds one check of a callback: failed when any call ended with
// o.
func (x *runner) outcome(name string, s *cbStats, note string, o host.Outcome, problem string) {
	fs := s.failures[o]
	if len(fs) == 0 {
		msg := fmt.Sprintf("%d calls", s.calls)
		if o == host.OutcomeInvalid && s.tooLarge > 0 {
			msg += fmt.Sprintf("; %d records were larger than the module's buffer takes (propolis_buffer answered 0: those calls fail closed)", s.tooLarge)
		}
		x.r.add("run", name, Pass, "%s%s", msg, note)
		return
	}
	x.r.add("run", name, Fail, "%s on %d of %d calls%s; first on %s: %s", problem, len(fs), s.calls, note, fs[0].in, fs[0].msg)
}

// The memory check. After the first run, the corpus is repeated on the
// same instance for a fixed budget: warm-up runs first (at least
// warmCalls calls: a garbage-collected guest grows its heap until its
// first collections), then memWindows windows of at least windowCalls
// calls each. A leak is memory that rose in most windows and in at least
// half of the second half's, or that rose in at least two windows of the
// second half and by leakPerCall bytes per call or more over them, either
// way by at least leakFloor in all, or that reached limits.memory. Memory
// that rose for a while and then stayed flat (a collector settling on its
// heap size) is not, nor is growth under leakFloor: Go's collector lets
// its heap reach 4 MiB before its first collection, so a guest making a
// little garbage per call grows steadily through the whole budget without
// leaking (the ticker test guest, whose offline storage calls log errors,
// grew 1.5 MiB). The price: a leak of less than about leakFloor over the
// budget (some 450 bytes per call for a fast extension) is not caught.
//
// An extension slow enough that the budget would take more than
// slowBudget (judged by the first run: a slow password hash, say) gets as
// many runs as fit in memoryBudget, at least minMemoryRuns: a fifth to
// warm up, the rest in windows. The threshold is far above what a loaded
// machine makes of a fast extension, so that its verdict does not depend
// on the machine.
const (
	warmCalls     = 2000
	windowCalls   = 1500
	memWindows    = 6
	leakPerCall   = 128
	leakFloor     = 4 << 20
	memoryBudget  = 4 * time.Second
	slowBudget    = 10 * time.Second
	minMemoryRuns = 5
)

// memoryPlan returns how many runs of an n-call corpus, whose first run
// took took, warm up, how many make one window, and how many windows.
func memoryPlan(n int, took time.Duration) (warm, window, windows int) {
	n = max(n, 1)
	warm, window, windows = (warmCalls+n-1)/n, (windowCalls+n-1)/n, memWindows
	if took <= 0 || took*time.Duration(warm+window*windows) <= slowBudget {
		return warm, window, windows
	}
	total := max(int(memoryBudget/took), minMemoryRuns)
	warm = max(1, total/5)
	windows = min(memWindows, total-warm)
	return warm, max(1, (total-warm)/windows), windows
}

// stateAndMemory repeats the corpus on the same instance, watching its
// memory, then runs it once reversed on a fresh instance: the answers must
// not depend on what the instance saw before.
func (x *runner) stateAndMemory(corpus []*input, first []answer, firstTook time.Duration) {
	n := len(corpus)
	warm, window, windows := memoryPlan(n, firstTook)
	mem := []uint64{x.memory()}
	answers := [][]answer{first}
	for run := 0; run < warm+window*windows && x.repeatFail == nil; run++ {
		answers = append(answers, x.pass(corpus, false))
		mem = append(mem, x.memory())
	}
	switch {
	case x.repeatFail != nil:
		f := x.repeatFail
		x.r.add("run", "repeated calls succeed", Fail, "a call failed when the corpus was repeated on the same instance (run %d): %s: %s; linear memory before it: %d KiB",
			len(answers), f.in, f.msg, mem[len(mem)-1]>>10)
		x.r.add("run", "memory does not keep growing", Skip, "not run: a repeated call failed")
	default:
		x.memoryVerdict(mem, n, warm, window)
	}
	labels := make([]string, len(answers)+1)
	for k := 1; k < len(answers); k++ {
		labels[k] = fmt.Sprintf("on the same instance after the corpus %d times", k)
	}
	if err := x.p.Restart(x.ctx); err != nil {
		x.r.add("run", "same answer on every instance", Fail, "restart for a fresh instance: %v", err)
		return
	}
	rev := slices.Clone(corpus)
	slices.Reverse(rev)
	x.repeatFail = nil
	answers = append(answers, x.pass(rev, false))
	labels[len(answers)-1] = "on a fresh instance, in reverse order"
	for k := 1; k < len(answers); k++ {
		for _, in := range corpus {
			a, b := first[in.n], answers[k][in.n]
			if a.same(b) {
				continue
			}
			x.r.add("run", "same answer on every instance", Fail,
				"depends on state kept in the instance or on nondeterminism (clock, random): %s answered %s on a fresh instance and %s %s; "+
					"keep per-client state in a host service (session attributes, storage), not in the instance (ABI.md section 1)",
				in, a.withOutcome(), b.withOutcome(), labels[k])
			return
		}
	}
	x.r.add("run", "same answer on every instance", Pass, "the %d inputs answered alike on the same instance %d times more and on a fresh one in reverse order",
		n, len(answers)-2)
}

// memoryVerdict judges the memory after each run (mem[0] after the first
// run): see the constants above.
func (x *runner) memoryVerdict(mem []uint64, n, warm, window int) {
	const name = "memory does not keep growing"
	if slices.Contains(mem, 0) {
		x.r.add("run", name, Skip, "no verdict: the instance's linear memory could not be read after every run (%s KiB)", kib(mem))
		return
	}
	base := mem[warm]
	rises, windows := 0, 0
	var ends []uint64
	for w := warm; w+window < len(mem); w += window {
		windows++
		if mem[w+window] > mem[w] {
			rises++
		}
		ends = append(ends, mem[w+window])
	}
	last := mem[len(mem)-1]
	calls := uint64(n * window * windows)
	var perCall, tailPerCall uint64
	if last > base && calls > 0 {
		perCall = (last - base) / calls
	}
	half := warm + window*(windows/2)
	if tail := uint64(n * window * (windows - windows/2)); last > mem[half] && tail > 0 {
		tailPerCall = (last - mem[half]) / tail
	}
	tailRises := 0
	for w := half; w+window < len(mem); w += window {
		if mem[w+window] > mem[w] {
			tailRises++
		}
	}
	shown := fmt.Sprintf("linear memory %d KiB after the first run, %d KiB after %d warm-up runs, then after each window of %d runs: %s KiB",
		mem[0]>>10, base>>10, warm, window, kib(ends))
	limit, peak := uint64(x.t.manifest.Limits.Memory), slices.Max(mem)
	switch {
	case limit > 0 && peak+64<<10 > limit:
		x.r.add("run", name, Fail, "leaks memory: it grew to its limit (limits.memory, %d KiB) while the same %d calls were repeated; %s",
			limit>>10, n, shown)
	case last < base+leakFloor:
		x.r.add("run", name, Pass, "grew by %d KiB after warm-up (in %d of %d windows, %d bytes per call), under the %d KiB a collector may take before its first collection; %s",
			(last-base)>>10, rises, windows, perCall, leakFloor>>10, shown)
	case rises*2 > windows && tailRises*2 >= windows-windows/2:
		x.r.add("run", name, Fail, "leaks memory: it grew in %d of %d windows of %d calls after warm-up (the same %d calls repeated), about %d bytes per call; %s",
			rises, windows, n*window, n, perCall, shown)
	case tailRises >= 2 && tailPerCall >= leakPerCall:
		x.r.add("run", name, Fail, "leaks memory: it grew by about %d bytes per call after warm-up, still %d over the last %d windows (%d KiB over %d calls, the same %d repeated; in %d of %d windows); %s",
			perCall, tailPerCall, windows-windows/2, (last-base)>>10, calls, n, rises, windows, shown)
	default:
		x.r.add("run", name, Pass, "grew in %d of %d windows after warm-up, %d bytes per call; %s", rises, windows, perCall, shown)
	}
}

func kib(mem []uint64) string {
	parts := make([]string, len(mem))
	for i, m := range mem {
		parts[i] = fmt.Sprint(m >> 10)
	}
	return strings.Join(parts, ", ")
}

// memory is the probe's instance's linear memory now.
func (x *runner) memory() uint64 { return x.p.Memory() }

// keptCheck is the name of keptVerdicts' result.
const keptCheck = "authorize_publish: kept verdicts do not depend on the payload"

// keptPayloads are the payloads keptVerdicts tries in place of an input's:
// none, one byte, text, JSON and 4 KiB of bytes.
var keptPayloads = [][]byte{nil, {0}, []byte("hello"), []byte(`{"t":21.5,"unit":"C"}`), make([]byte, 4096)}

// keptVerdicts checks the authorize_publish answers of the first pass
// that cache_result marked and that the broker would keep (an answered
// call, not rate-limited, a topic of at most abi.MaxKeptName bytes): the
// broker gives such a verdict, for the marked time, to every PUBLISH on
// the connection with the same topic, QoS, retain and will flags (ABI.md
// section 5), so asking again with another payload must give the same
// verdict. Each input is first asked again as it was (the control): an
// input whose control differs (state in the instance, which the state
// check reports) or does not answer is left out, and the other payloads
// are compared with the control, as the broker compares (decision, and
// code and reason unless NEXT). A re-ask that overruns its deadline is
// tried again as in pass; one that does not answer leaves the input out.
// An extension that marks a verdict reading the payload (a size limit, a
// schema check) fails here, naming the input and both answers.
func (x *runner) keptVerdicts(corpus []*input, first []answer) {
	if !slices.Contains(x.t.callbacks, abi.CallbackAuthorizePublish) {
		return
	}
	if x.p.Stopped() {
		if err := x.p.Restart(x.ctx); err != nil {
			x.r.add("run", keptCheck, Skip, "not run: the extension could not be started again: %v", err)
			return
		}
		x.reopen++
	}
	ask := func(in *input, rec *abi.PublishRecord) (host.ProbeResult, bool) {
		res := x.p.Call(x.ctx, in.cb, rec, in.extra)
		x.r.CallsMade++
		for try := 0; try < deadlineRetries && res.Outcome == host.OutcomeDeadline; try++ {
			res = x.p.Call(x.ctx, in.cb, rec, in.extra)
			x.r.CallsMade++
		}
		if x.p.Stopped() {
			if err := x.p.Restart(x.ctx); err == nil {
				x.reopen++
			}
		}
		return res, res.Outcome.Answered() && res.Outcome != host.OutcomeRateLimited
	}
	marked, compared, left := 0, 0, 0
	for _, in := range corpus {
		rec, ok := in.rec.(*abi.PublishRecord)
		a := first[in.n]
		if in.cb != abi.CallbackAuthorizePublish || !ok || a.keptFor == 0 || !a.outcome.Answered() ||
			a.outcome == host.OutcomeRateLimited || len(rec.Topic) > abi.MaxKeptName {
			continue
		}
		marked++
		control, ok := ask(in, rec)
		if !ok || !sameVerdict(answerOf(control), a) {
			left++
			continue
		}
		for _, p := range keptPayloads {
			again := *rec
			again.Payload = p
			res, ok := ask(in, &again)
			if !ok {
				left++
				break
			}
			compared++
			if got := answerOf(res); !sameVerdict(got, a) {
				x.r.add("run", keptCheck, Fail, "%s was answered %s and marked with cache_result for %ds, but with a payload of %d bytes instead it is answered %s: "+
					"the broker would give the kept verdict to that PUBLISH without asking. Mark only verdicts that depend on the client and the topic alone "+
					"(propolis.CacheVerdict in Go), or do not mark this one",
					in, a.withOutcome(), a.keptFor, len(p), got.withOutcome())
				return
			}
		}
	}
	note := ""
	if left > 0 {
		note = fmt.Sprintf("; %d left out: asked again as they were, they did not answer alike (the state check covers that)", left)
	}
	switch {
	case marked == 0:
		x.r.add("run", keptCheck, Skip, "no authorize_publish answer the broker would keep was marked with cache_result: every PUBLISH is a call")
	case compared == 0:
		x.r.add("run", keptCheck, Skip, "%d marked answers, none could be compared%s", marked, note)
	default:
		x.r.add("run", keptCheck, Pass, "%d marked answers asked again with %d other payloads each (%d answers compared): the same verdicts%s",
			marked, len(keptPayloads), compared, note)
	}
}

// sameVerdict reports whether a and b are the same verdict as the broker
// keeps it: the decision, and for any but NEXT (whose code and reason the
// broker ignores) the reason code and string.
func sameVerdict(a, b answer) bool {
	if a.decision != b.decision {
		return false
	}
	return a.decision == abi.DecisionNext || a.code == b.code && a.reason == b.reason
}
