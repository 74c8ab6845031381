package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"golang.org/x/time/rate"

	"github.com/propolis-mqtt/propolis/abi"
)

// This file is the host's narrow seam for the conformance kit
// (host/conformance, `propolis extensions check`): the static check of a
// module with every problem listed, and a Probe, one extension loaded
// alone in a throwaway host, called one input at a time through invoke,
// the host's one call path. Nothing here is used by a serving broker.

// ModuleProblem is one way a module's exports or imports differ from the
// ABI table (abi.Callbacks, abi.HostFuncs).
type ModuleProblem struct {
	// Name is the export or import at fault, as "export propolis_buffer"
	// or "import propolis_v1.kv_get".
	Name string
	// Err says what is wrong, naming it: what the host's load refuses.
	Err error
}

// ModuleReport is what CheckModule learnt about a module without running
// it.
type ModuleReport struct {
	// Callbacks are the chain callback bits (abi.CallbackInfo.Bit) the
	// module exports with the right signature.
	Callbacks uint32
	// HasMarker is true when the module exports the ABI marker with its
	// signature.
	HasMarker bool
	// HostFuncs are the host functions of abi.ImportModule the module
	// imports with the right signature, in import order.
	HostFuncs []abi.HostFunc
	// Problems lists every problem, in the order the host's load finds
	// them (it stops at the first).
	Problems []ModuleProblem
}

// CheckModule decodes and validates bin (with wazero's interpreter, which
// compiles nothing to machine code: a Go module's 2 MB take a fraction of
// the compiler's second) and compares its exports and imports with the
// ABI table, listing every problem where loading stops at the first. A
// module that is not valid WebAssembly 2.0 gives an error.
func CheckModule(ctx context.Context, bin []byte) (ModuleReport, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(coreFeatures))
	defer rt.Close(ctx)
	c, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return ModuleReport{}, fmt.Errorf("compile: %w%s", err, featureHint(err))
	}
	return checkModuleAll(c), nil
}

// Probe is one extension loaded alone in a throwaway host, without a
// broker (host services that act on the broker answer NOT_AVAILABLE), with
// one instance (limits.pool_size and max_pool_size 1), and a wall clock
// frozen at OpenProbe (every instance reads the same time of day), for the
// conformance kit. Every call goes through invoke, under the manifest's
// deadlines and memory limit. A Probe is used by one goroutine at a time.
type Probe struct {
	h   *Host
	dir string
	m   *Manifest
	ext *extension
	obs *probeObserver
	// stopErr is the first stop callback that failed (Restart, Close).
	stopErr error
}

// ProbeResult is how one Probe.Call ended.
type ProbeResult struct {
	// Outcome classifies the call as the host's CallObserver would.
	Outcome Outcome
	// Err is the host's error for a failed call (trap, deadline, invalid
	// answer ...), nil otherwise.
	Err error
	// Decision and Code are a deciding callback's answer; Reason what
	// set_reason gave.
	Decision abi.Decision
	Code     byte
	Reason   string
	// Changes are the packet changes an interceptor staged (packet_set,
	// packet_set_int), in order, each as "FIELD=VALUE": what the kit
	// compares between instances.
	Changes []string
	// Refused lists the host service functions the call was refused
	// because the manifest does not grant their service (NOT_PERMITTED).
	Refused []abi.HostFunc
	// Memory is the instance's linear memory after the call, in bytes (0
	// when the call's failure discarded it).
	Memory uint64
	// KeptFor is the seconds cache_result marked the answer valid for (0:
	// not marked): the broker would give it again without a call.
	KeptFor uint32
}

// ProbeOptions configures OpenProbe.
type ProbeOptions struct {
	// Logger receives the extension's logs and the host's; nil discards
	// them.
	Logger *slog.Logger
	// CacheDir keeps the compiled code between probes (and runs), as
	// Options.CacheDir; "" keeps it in memory for this probe.
	CacheDir string
	// Network lets http_request reach the hosts the manifest allows. By
	// default a probe is offline: every request fails at once, as with no
	// network, so that answers do not depend on what the machine reaches.
	Network bool
}

// OpenProbe loads the extension in dir described by m (LoadManifest's,
// or one made for a bare module; its limits are taken as they are, but the
// pool is one instance). It runs _initialize, the marker and the start
// callback with the manifest's config, as a broker would; their failure is
// the error. Close runs the stop callback.
func OpenProbe(ctx context.Context, dir string, m *Manifest, opts ProbeOptions) (*Probe, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	obs := &probeObserver{}
	h, err := New(Options{Dir: filepath.Dir(dir), CacheDir: opts.CacheDir, Logger: log, Observer: obs})
	if err != nil {
		return nil, err
	}
	h.watch, h.offline = obs, !opts.Network
	h.frozenWall = time.Now().UnixNano()
	if err := h.openCache(); err != nil {
		_ = h.Close(ctx)
		return nil, err
	}
	mc := *m
	mc.Limits.PoolSize, mc.Limits.MaxPoolSize = 1, 1
	p := &Probe{h: h, dir: dir, m: &mc, obs: obs}
	if err := p.load(ctx); err != nil {
		_ = h.Close(ctx)
		return nil, err
	}
	return p, nil
}

// load loads a fresh copy of the extension and puts it in the chain, so
// that the watchdog enforces its deadlines.
func (p *Probe) load(ctx context.Context) error {
	e, err := p.h.loadExtension(ctx, p.dir, p.m, "")
	if err != nil {
		return err
	}
	// No rate limit on service calls: whether a call is over the limit
	// depends on how fast the probe runs, and an answer must depend only
	// on its input (the kit's state check). An extension treating
	// RATE_LIMITED as "refuse" answered differently after thousands of
	// calls.
	e.gate.limiter.SetLimit(rate.Inf)
	p.ext = e
	p.h.mu.Lock()
	p.h.exts[filepath.Base(p.dir)] = e
	p.h.mu.Unlock()
	p.h.rebuildChain()
	return nil
}

// Restart stops the extension (running its stop callback; Close reports
// its failure) and loads it again: fresh instances, whose start callbacks
// see instance index 0 again. The compiled code is reused. The error is
// the new load's.
func (p *Probe) Restart(ctx context.Context) error {
	p.stop()
	return p.load(ctx)
}

// Callbacks returns the chain callbacks a broker would call: exported,
// declared by declare_callbacks when the start callback called it, and
// propolis_tick only when the manifest sets a tick.
func (p *Probe) Callbacks() []abi.Callback {
	var out []abi.Callback
	for cb, info := range abi.Callbacks {
		if abi.Callback(cb) == abi.CallbackTick && p.m.Tick == 0 {
			continue
		}
		if info.Bit != 0 && p.ext.has(info.Bit) {
			out = append(out, abi.Callback(cb))
		}
	}
	return out
}

// Minor returns the ABI minor version the module's marker answered.
func (p *Probe) Minor() uint32 { return p.ext.minor.Load() }

// Memory returns the linear memory of the extension's idle instance, in
// bytes (0 when it has none idle).
func (p *Probe) Memory() uint64 { return p.ext.pool.idleMemory() }

// Manifest returns the manifest the extension runs with.
func (p *Probe) Manifest() *Manifest { return p.m }

// Stopped reports whether the host stopped the extension after a crash
// loop (ten failures within ten seconds).
func (p *Probe) Stopped() bool { return p.ext.stopped.Load() }

// Call calls cb with rec, one of abi's record types (nil for
// propolis_tick). A non-empty extra makes it a record of a later minor
// version: its minor is set above abi.Minor and extra is appended, fields
// the module must skip (ABI.md section 4).
func (p *Probe) Call(ctx context.Context, cb abi.Callback, rec interface{ Encode([]byte) []byte }, extra []byte) ProbeResult {
	var r record
	switch v := rec.(type) {
	case nil:
	case *abi.PublishRecord, *abi.SubscribeRecord, *abi.ConnectRecord, *abi.EventRecord, *abi.MessageRecord,
		*abi.ConnackRecord, *abi.SubscriptionRecord, *abi.DisconnectRecord:
		r = v
		if len(extra) > 0 {
			r = &laterMinor{rec: v, extra: extra}
		}
	default:
		return ProbeResult{Outcome: OutcomeInvalid, Err: fmt.Errorf("probe: %T is not a record of a callback", rec)}
	}
	p.ext.pool.settle(ctx, probeSettleLimit)
	p.obs.begin()
	a, err := p.h.invoke(ctx, p.ext, cb, r)
	res := ProbeResult{Err: err, Decision: a.decision, Code: a.code, Reason: a.out.reason, Refused: p.obs.end(), KeptFor: a.out.cacheFor}
	for _, ch := range a.out.packet {
		res.Changes = append(res.Changes, ch.String())
	}
	res.Outcome = a.outcome
	res.Memory = p.ext.pool.idleMemory()
	return res
}

// probeSettleLimit bounds how long Probe.Call waits for the pool to finish
// starting an instance before it calls.
const probeSettleLimit = 30 * time.Second

// settle waits, up to limit and never past ctx, until the pool is starting
// no instance (a replacement after a failed call). The conformance kit's
// probe calls one input at a time on a pool of one: without it, the call
// after a failed one waits its own call deadline for the replacement, and
// on a loaded machine an instance's start takes longer than a 100 ms
// deadline, so the kit reported "all instances busy" for an extension that
// did nothing wrong. A probe's call measures the call, not the start.
func (p *pool) settle(ctx context.Context, limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		growing := p.growing
		p.mu.Unlock()
		if growing == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-p.done:
			return
		}
	}
}

// String shows a change for the conformance kit: "FIELD=VALUE", a text
// quoted, bytes in hex, user properties as a list of key=value pairs.
func (ch packetChange) String() string {
	name := fieldName(ch.field)
	typ := abi.FieldType(0)
	if ch.field > 0 && ch.field < abi.NumFields {
		typ = abi.Fields[ch.field].Type
	}
	switch typ {
	case abi.FieldProperties:
		ps := make([]string, len(ch.props))
		for i, p := range ch.props {
			ps[i] = fmt.Sprintf("%q=%q", p.Key, p.Value)
		}
		return name + "=[" + strings.Join(ps, " ") + "]"
	case abi.FieldBytes:
		return fmt.Sprintf("%s=%x", name, ch.b)
	case abi.FieldText:
		return fmt.Sprintf("%s=%q", name, ch.s)
	}
	return fmt.Sprintf("%s=%d", name, ch.n)
}

// ReadModule reads the module at path as the host's load does: a regular
// file (not a device, FIFO or a link to one) of at most 256 MiB. The error
// names the path and the limit.
func ReadModule(path string) ([]byte, error) {
	bin, err := readRegular(path, maxModule, os.ReadFile)
	if err != nil {
		return nil, fmt.Errorf("read module %s (a module must be a regular file of at most %d MiB): %w", path, maxModule>>20, err)
	}
	return bin, nil
}

// Close stops the extension, running its stop callback, and the host. The
// error is the first stop callback's failure, if any, of this or an
// earlier load (Restart).
func (p *Probe) Close(ctx context.Context) error {
	p.stop()
	_ = p.h.Close(ctx)
	return p.stopErr
}

// stop stops the running extension and keeps the first failure of a stop
// callback. An extension the host stopped after a crash loop ran no stop
// callback (as in a broker).
func (p *Probe) stop() {
	p.h.mu.Lock()
	delete(p.h.exts, filepath.Base(p.dir))
	p.h.mu.Unlock()
	p.h.rebuildChain()
	p.obs.takeStop()
	p.ext.stop(true)
	if bad := p.obs.takeStop(); bad != nil && p.stopErr == nil {
		p.stopErr = fmt.Errorf("%s ended %s (limit: ten call deadlines, at least 2s)", abi.CallbackStop, bad.Outcome)
	}
}

// probeObserver hears the probe's calls (for the stop callbacks'
// outcomes) and the service calls refused for want of a grant. Calls
// reach it from the probe's goroutine and from the pool's (a replacement
// instance's start).
type probeObserver struct {
	mu sync.Mutex
	// badStop is the first stop callback that failed since the last
	// resetStop.
	badStop *Call
	refused []abi.HostFunc
}

// ObserveCall keeps the first stop callback that failed.
func (o *probeObserver) ObserveCall(c Call) {
	if c.Callback != abi.CallbackStop || c.Outcome == OutcomeOK {
		return
	}
	o.mu.Lock()
	if o.badStop == nil {
		o.badStop = &c
	}
	o.mu.Unlock()
}

// takeStop returns the first failed stop callback since the last call, and
// forgets it.
func (o *probeObserver) takeStop() *Call {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.badStop
	o.badStop = nil
	return c
}

// notPermitted records a service call refused for want of a grant.
func (o *probeObserver) notPermitted(f abi.HostFunc) {
	o.mu.Lock()
	o.refused = append(o.refused, f)
	o.mu.Unlock()
}

// begin starts a call: no refusal recorded yet.
func (o *probeObserver) begin() {
	o.mu.Lock()
	o.refused = o.refused[:0]
	o.mu.Unlock()
}

// end returns the refusals recorded since begin.
func (o *probeObserver) end() []abi.HostFunc {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.refused) == 0 {
		return nil
	}
	return append([]abi.HostFunc(nil), o.refused...)
}

// laterMinor is a record as a later minor version of the ABI would write
// it: rec's fields, then extra ones an older module must skip.
type laterMinor struct {
	rec   record
	extra []byte
}

// Encode encodes the record, appends the extra fields and sets the
// header's length and a minor version above abi.Minor.
func (r *laterMinor) Encode(dst []byte) []byte {
	b := encode(r.rec, dst)
	b = append(b, r.extra...)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint16(b[6:], abi.Minor+1)
	return b
}

// idleMemory returns the linear memory of the pool's idle instances, in
// bytes (a probe's pool has at most one).
func (p *pool) idleMemory() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n uint64
	for in := range p.all {
		if in.started.Load() == 0 && in.mem != nil {
			n += uint64(in.mem.Size())
		}
	}
	return n
}

// ManifestForModule returns the manifest a bare module is checked with,
// and its YAML: id from the file's name, version 0.0.0, default limits,
// the given services granted, and tick: 10s when it exports propolis_tick.
func ManifestForModule(path string, services []string) (*Manifest, []byte, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, err
	}
	base := filepath.Base(path)
	id := sanitizeID(base[:len(base)-len(filepath.Ext(base))])
	yaml := fmt.Sprintf("id: %q\nversion: \"0.0.0\"\nmodule: %q\n", id, base)
	if len(services) > 0 {
		yaml += "services:\n"
		for _, s := range services {
			yaml += fmt.Sprintf("  - %q\n", s)
		}
	}
	m, err := ParseManifest("(made for "+base+")", []byte(yaml))
	if err != nil {
		return nil, nil, err
	}
	// A module whose start declares propolis_tick is refused without a
	// manifest tick (checkTick), and one that only exports it is refused
	// with one: only starting it tells which, so a module exporting it is
	// tried once without, and given a tick if that is what it lacked.
	if bin, err := os.ReadFile(path); err == nil {
		if rep, err := CheckModule(context.Background(), bin); err == nil && rep.Callbacks&tickBit != 0 {
			p, perr := OpenProbe(context.Background(), filepath.Dir(path), m, ProbeOptions{})
			if perr == nil {
				_ = p.Close(context.Background())
			} else if errors.Is(perr, errTickNotSet) {
				yaml += "tick: 10s\n"
				m, err = ParseManifest("(made for "+base+")", []byte(yaml))
			}
		}
	}
	return m, []byte(yaml), err
}

// sanitizeID makes a valid extension id of a file name.
func sanitizeID(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < 64; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '.' || c == '_' || c == '-':
			if len(out) == 0 {
				continue
			}
		default:
			c = '-'
			if len(out) == 0 {
				continue
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return "module"
	}
	return string(out)
}
