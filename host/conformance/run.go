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

// answer is what one call gave, as compared between runs.
type answer struct {
	outcome  host.Outcome
	decision abi.Decision
	code     byte
}

func (a answer) String() string {
	switch a.outcome {
	case host.OutcomeOK, host.OutcomeDeny:
		if a.code != 0 {
			return fmt.Sprintf("%s %#02x", a.decision, a.code)
		}
		return a.decision.String()
	}
	return a.outcome.String()
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
	stopErr := func() error {
		if len(cbs) == 0 {
			r.add("run", "callbacks", Skip, "the module exports (or declares) no callback: nothing to drive")
			return x.p.Close(ctx)
		}
		corpus := newGen(opts.Seed).corpus(cbs, opts.Calls)
		first := x.pass(corpus, true)
		x.report(cbs)
		if x.anyFailed() {
			r.add("run", "memory does not keep growing", Skip, "not run: calls failed above")
			r.add("run", "same answer on every instance", Skip, "not run: calls failed above")
			return x.p.Close(ctx)
		}
		x.stateAndMemory(corpus, first)
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
		out[in.n] = answer{outcome: res.Outcome, decision: res.Decision, code: res.Code}
		if !record {
			switch res.Outcome {
			case host.OutcomeOK, host.OutcomeDeny, host.OutcomeTooLarge:
			default:
				if x.repeatFail == nil {
					x.repeatFail = &failure{in, errString(res.Err)}
				}
			}
			continue
		}
		s.calls++
		for _, f := range res.Refused {
			s.refused = append(s.refused, failure{in, abi.HostFuncs[f].Name})
		}
		switch res.Outcome {
		case host.OutcomeOK, host.OutcomeDeny:
			continue
		case host.OutcomeTooLarge:
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

// Bounds of the memory check. The corpus is repeated on one instance
// until a run ends with its memory flat (pass), or until, having grown on
// every run, the memory grew by more than leakFloor and more than it held
// after the first run (a leak: a garbage-collected guest collects before
// its heap doubles, so it flattens first), or until maxMemoryCalls calls or
// maxRuns runs (no verdict: still growing, slowly).
const (
	maxMemoryCalls = 20000
	maxRuns        = 100
	leakFloor      = 8 << 20
)

// stateAndMemory repeats the corpus on the same instance, watching its
// memory, then runs it once reversed on a fresh instance: the answers must
// not depend on what the instance saw before.
func (x *runner) stateAndMemory(corpus []*input, first []answer) {
	n := len(corpus)
	mem := []uint64{x.memory()}
	answers := [][]answer{first}
	flat, leak := false, false
	for len(answers) < maxRuns && n*len(answers) < maxMemoryCalls && x.repeatFail == nil {
		answers = append(answers, x.pass(corpus, false))
		m := x.memory()
		mem = append(mem, m)
		if m <= mem[len(mem)-2] {
			flat = len(mem) >= 3
			if flat {
				break
			}
			continue
		}
		grew := true
		for i := 1; i < len(mem); i++ {
			grew = grew && mem[i] > mem[i-1]
		}
		if grew && m-mem[0] > max(leakFloor, mem[0]) {
			leak = true
			break
		}
	}
	runs, calls := len(mem)-1, uint64(n*(len(mem)-1))
	switch {
	case x.repeatFail != nil:
		f := x.repeatFail
		x.r.add("run", "repeated calls succeed", Fail, "a call failed when the corpus was repeated on the same instance (run %d): %s: %s; linear memory before it: %d KiB",
			len(answers), f.in, f.msg, mem[len(mem)-1]>>10)
		x.r.add("run", "memory does not keep growing", Skip, "not run: a repeated call failed")
	case leak:
		x.r.add("run", "memory does not keep growing", Fail, "linear memory grew on every one of %d runs of the same %d calls, from %d to %d KiB (about %d bytes per call): a leak",
			runs, n, mem[0]>>10, mem[len(mem)-1]>>10, (mem[len(mem)-1]-mem[0])/calls)
	case flat:
		x.r.add("run", "memory does not keep growing", Pass, "linear memory after the first run and each of %d more of the same %d calls: %s KiB",
			runs, n, kib(mem))
	default:
		x.r.add("run", "memory does not keep growing", Pass, "no verdict: linear memory still grew slowly after %d runs of the same %d calls, from %d to %d KiB (about %d bytes per call); raise --calls to judge",
			runs, n, mem[0]>>10, mem[len(mem)-1]>>10, (mem[len(mem)-1]-mem[0])/calls)
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
			if a == b {
				continue
			}
			x.r.add("run", "same answer on every instance", Fail,
				"keeps state between calls in the instance (globals or memory): %s answered %s on a fresh instance and %s %s; "+
					"keep per-client state in a host service (session attributes, storage), not in the instance (ABI.md section 1)",
				in, a, b, labels[k])
			return
		}
	}
	x.r.add("run", "same answer on every instance", Pass, "the %d inputs answered alike on the same instance %d times more and on a fresh one in reverse order",
		n, len(answers)-2)
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
