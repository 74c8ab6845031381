package host

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/propolis-mqtt/propolis/abi"
)

// State is an extension's lifecycle state.
type State string

// States shown by Host.Status.
const (
	StateRunning  State = "running"
	StateDisabled State = "disabled"
	StateFailed   State = "failed"
)

// Crash-loop limits (ABI.md section 7).
const (
	crashLoopFailures = 10
	crashLoopWindow   = 10 * time.Second
)

// extension is one loaded, running extension: a compiled module in its own
// wazero runtime (so memory limits and closing are per extension), a pool
// of instances, and what its start callback declared.
type extension struct {
	host     *Host
	manifest *Manifest
	dir      string
	log      *slog.Logger

	// inBroker counts the calls of this extension that are inside a host
	// service acting on the broker (needsBroker). Such a service may make
	// the broker intercept a packet on the same goroutine (a kick's
	// DISCONNECT, a delivery written at once), a nested call that would
	// wait for an instance the outer call holds: see pool.wait.
	inBroker atomic.Int32

	rt       wazero.Runtime
	compiled wazero.CompiledModule
	// cache is the module's own compilation cache (cacheFor), closed
	// after rt; nil when the host's in-memory one is used. module is the
	// module's SHA-256, which names that cache's folder.
	cache  wazero.CompilationCache
	module [32]byte
	// folder is the extension's folder opened for "files: read" (nil
	// otherwise), closed with the runtime.
	folder    *os.Root
	modConfig wazero.ModuleConfig
	guarded   bool
	// interruptible is true when the module carries the host's interrupt
	// check (interrupt.go); a guarded module that could not be
	// instrumented runs under wazero's close-on-context-done instead.
	interruptible bool
	// deadline bounds a call (limits.call_deadline); authDeadline a call
	// of propolis_authenticate (limits.authenticate_deadline).
	deadline, authDeadline time.Duration
	// background: loaded while the broker served (inBackground), so its
	// module was compiled at low priority; compileNice is how many nice
	// steps below the process the compiling thread ran (0: full speed).
	background  bool
	compileNice int
	// previous is the version this one replaced (told to every instance's
	// start callback, replacements included).
	previous string
	// instances counts the instances created, for the START record's
	// instance index (0 for the first).
	instances atomic.Uint32
	// minor is the ABI minor version the first instance's marker answered.
	minor atomic.Uint32

	// callbacks is the set of callback bits (abi.CallbackInfo.Bit) the
	// host calls: exported, and declared by declare_callbacks when the
	// module called it.
	callbacks uint32
	// filters narrow authorize_publish (empty: every publish).
	filters []string
	// interceptFilters narrow intercept_publish_inbound and
	// intercept_publish_outbound (filterInbound, filterOutbound; empty:
	// every message).
	interceptFilters [2][]string
	// interceptClients narrow intercept_publish_outbound to deliveries to
	// the client ids they match (add_intercept_client; empty: every
	// subscriber); clientMatch is the same patterns, indexed for the
	// per-delivery check.
	interceptClients []string
	clientMatch      clientPatterns
	// declared is what instance 0's start callback declared; later
	// instances' declarations have no effect (see sameDeclaration).
	declared declaration

	pool *pool
	// events queues lifecycle events for deliverEvents; it is never
	// closed (a sender may race with stop): quit ends the delivery.
	events chan queuedEvent
	quit   chan struct{}

	mu       sync.Mutex
	failures []time.Time
	stopped  atomic.Bool
	// failed is set once by Host.fail: concurrent failing calls cross the
	// crash-loop threshold together, and stopped is set only later, by
	// the stop fail starts; the first one counts, logs and stops.
	failed atomic.Bool

	// gate holds the manifest's service grants and the rate limiter.
	gate *serviceGate
	// http makes the extension's outbound HTTP requests (svchttp.go).
	http *httpClient
	// authCache keeps the answers cache_result marked (authcache.go); it
	// goes with the extension, so a reload or a disable flushes it.
	authCache *authCache
	// authorizeCacheMax bounds the authorize answers kept per connection
	// (limits.authorize_cache_entries; decisions.go).
	authorizeCacheMax int

	// tickQuit ends tickLoop, which closes tickDone (tick.go); nil
	// without ticks.
	tickQuit, tickDone chan struct{}
	tickStop           sync.Once
	// ticksSkipped counts the ticks dropped because a tick was running.
	ticksSkipped atomic.Int64

	// counters are the folder's, shared with the versions before and
	// after this one (counters.go).
	counters *folderCounters
	// obs hears about this extension's calls (Host.observerFor); nil
	// without an observer.
	obs CallObserver

	// Counters. tooLarge counts the records the guest's buffer could not
	// take (ErrRecordTooLarge).
	calls, errors, dropped, tooLarge atomic.Int64
}

// ID returns the extension's id.
func (e *extension) ID() string { return e.manifest.ID }

// has reports whether the host calls the callback with bit c.
func (e *extension) has(c uint32) bool { return e.callbacks&c != 0 }

// loadExtension compiles, checks, instantiates and starts the extension in
// dir described by m. previous is the version it replaces ("" if none).
func (h *Host) loadExtension(ctx context.Context, dir string, m *Manifest, previous string) (_ *extension, err error) {
	path := filepath.Join(dir, m.Module)
	bin, err := readRegular(path, maxModule, os.ReadFile)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	e := &extension{host: h, manifest: m, dir: dir, log: h.log.With("extension", m.ID),
		deadline: time.Duration(m.Limits.CallDeadline), authDeadline: time.Duration(m.Limits.AuthenticateDeadline),
		previous: previous, gate: newServiceGate(m, h.opts.ServiceRate, h.opts.ServiceBurst),
		authCache: newAuthCache(m.Limits.AuthCacheEntries), authorizeCacheMax: m.Limits.AuthorizeCacheEntries, counters: h.countersFor(filepath.Base(dir)),
	}
	e.obs = h.observerFor(m.ID, e.counters.folder)
	if e.http, err = newHTTPClient(dir, m); err != nil {
		return nil, err
	}
	if h.offline && e.http != nil {
		e.http.tr.DialContext = refuseDial
	}
	e.guarded = !testUnguarded
	pages := uint32((int64(m.Limits.Memory) + 65535) / 65536)
	rc := runtimeConfig().WithMemoryLimitPages(pages)
	// The bytes compiled, hashed again rather than taken from the
	// scanner's fingerprint: the file may have changed since (~2 ms for a
	// Go module, once per load).
	e.module = sha256.Sum256(bin)
	cache, cacheDir, owned := h.cacheFor(e.module, m.ID)
	if cache != nil {
		rc = rc.WithCompilationCache(cache)
	}
	if owned {
		e.cache = cache
	}
	defer func() {
		if err != nil && e.folder != nil {
			_ = e.folder.Close()
		}
		if err != nil && e.rt != nil {
			_ = e.rt.Close(context.Background())
			if e.compiled != nil {
				_ = e.compiled.Close(context.Background())
			}
		}
		if err != nil && e.cache != nil {
			_ = e.cache.Close(context.Background())
		}
	}()
	e.background = isBackground(ctx)
	c, nice, err := compileAt(ctx, func(ctx context.Context) (compiled, error) {
		return compileModule(ctx, rc, bin, e.guarded, func(rt wazero.Runtime, closeOnDone bool, bin []byte) (wazero.CompiledModule, error) {
			return h.compile(ctx, rt, closeOnDone, bin, m.ID, cacheDir)
		})
	})
	e.compileNice = nice
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w%s", m.Module, err, featureHint(err))
	}
	e.rt, e.compiled, e.interruptible = c.rt, c.compiled, c.interruptible
	if c.whyNot != nil {
		e.log.Warn("module runs under wazero's slower deadline guard", "error", c.whyNot)
	}
	exported, err := checkModule(e.compiled)
	if err != nil {
		return nil, err
	}
	e.callbacks = exported
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e.rt); err != nil {
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	if err := instantiateHostFuncs(ctx, e.rt, e); err != nil {
		return nil, err
	}
	out := &logWriter{log: e.log}
	// No start function: newInstance runs _initialize itself, bounded.
	// newInstance adds the sleep, per instance (instance.nanosleep).
	e.modConfig = wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithStdout(out).WithStderr(out).WithSysWalltime().WithSysNanotime().
		WithRandSource(rand.Reader)
	if wall := h.frozenWall; wall != 0 {
		e.modConfig = e.modConfig.WithWalltime(func() (int64, int32) { return wall / 1e9, int32(wall % 1e9) }, sys.ClockResolution(1))
	}
	if m.Files == FilesRead {
		// Least privilege: the folder only, read-only; wazero refuses
		// every write, and nothing else of the host is visible.
		abs, err := filepath.Abs(e.dir)
		if err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
		// Through an os.Root, so that a symbolic link leading out of the
		// folder fails instead of being followed; an fs.FS mount has no
		// write operations at all.
		root, err := os.OpenRoot(abs)
		if err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
		e.folder = root // closed by the deferred clean-up on failure
		e.modConfig = e.modConfig.WithFSConfig(wazero.NewFSConfig().WithFSMount(root.FS(), FolderMount))
	}

	first, err := e.newInstance(ctx, previous)
	if err != nil {
		return nil, err
	}
	if first.out.declared {
		e.callbacks &= first.out.mask
	}
	e.filters, e.interceptFilters = first.out.filters, first.out.interceptFilters
	e.interceptClients, e.clientMatch = first.out.interceptClients, newClientPatterns(first.out.interceptClients)
	e.declared = declaration{declared: first.out.declared, mask: first.out.mask, filters: first.out.filters,
		interceptFilters: first.out.interceptFilters, interceptClients: first.out.interceptClients}
	e.pool = newPool(e, m.Limits.PoolSize, m.Limits.MaxPoolSize)
	e.pool.add(first)
	if err := e.checkTick(); err != nil {
		e.pool.closeAll(false)
		return nil, err
	}
	for i := 1; i < m.Limits.PoolSize; i++ {
		in, err := e.newInstance(ctx, previous)
		if err != nil {
			e.pool.closeAll(false)
			return nil, fmt.Errorf("prewarm instance %d: %w", i+1, err)
		}
		e.pool.add(in)
	}
	if e.has(abi.Callbacks[abi.CallbackOnEvent].Bit) {
		e.events, e.quit = make(chan queuedEvent, eventQueue), make(chan struct{})
		go e.deliverEvents()
	}
	return e, nil
}

// compiled is a module compiled the way the host runs it.
type compiled struct {
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	// interruptible: compiled with the host's interrupt check
	// (interrupt.go), in a runtime without wazero's guard.
	interruptible bool
	// whyNot says why a guarded module keeps wazero's guard instead.
	whyNot error
}

// compileModule compiles bin as the host runs it, in a new runtime made
// from rc, through compile (Host.compile, or a plain CompileModule):
//
//   - a guarded module is compiled with the host's interrupt check
//     (interrupt.go), in a runtime without close-on-context-done;
//   - one that cannot take it (or, were the rewrite ever wrong, does not
//     compile with it) keeps wazero's guard: the original binary, with
//     close-on-context-done;
//   - an unguarded one (benchmarks only) is compiled as it is.
//
// loadExtension and Precompile both compile through here, so the cache
// Precompile fills has the entries the host looks up. On error the
// runtime is closed.
func compileModule(ctx context.Context, rc wazero.RuntimeConfig, bin []byte, guarded bool,
	compile func(rt wazero.Runtime, closeOnDone bool, bin []byte) (wazero.CompiledModule, error)) (compiled, error) {
	var c compiled
	if guarded {
		var inst []byte
		if inst, c.whyNot = instrument(bin); c.whyNot == nil {
			c.rt = wazero.NewRuntimeWithConfig(ctx, rc.WithCloseOnContextDone(false))
			if c.compiled, c.whyNot = compile(c.rt, false, inst); c.whyNot == nil {
				c.interruptible = true
				return c, nil
			}
			_ = c.rt.Close(context.Background())
		}
	}
	c.rt = wazero.NewRuntimeWithConfig(ctx, rc.WithCloseOnContextDone(guarded))
	var err error
	if c.compiled, err = compile(c.rt, guarded, bin); err != nil {
		_ = c.rt.Close(context.Background())
		return compiled{}, err
	}
	return c, nil
}

// coreFeatures are the WebAssembly core features modules may use (ABI.md
// section 2, "Wasm features"): WebAssembly 2.0, i.e. mutable globals,
// multi-value, bulk memory, reference types, sign extension, non-trapping
// float-to-int conversion and 128-bit SIMD. Not threads (shared memory,
// atomics), tail calls, exceptions, memory64, multiple memories or GC.
// Named here, not left to wazero's default, so that a wazero upgrade
// cannot change what extensions may use.
const coreFeatures = api.CoreFeaturesV2

// runtimeConfig is the configuration every runtime of the host starts
// from: the supported core features.
func runtimeConfig() wazero.RuntimeConfig {
	return wazero.NewRuntimeConfig().WithCoreFeatures(coreFeatures)
}

// featureHint adds, to a compile error caused by a WebAssembly feature the
// host does not enable (wazero names it: "threads", "tail-call"), what the
// host does support.
func featureHint(err error) string {
	if !strings.Contains(err.Error(), "feature") {
		return ""
	}
	return " (Propolis runs the WebAssembly 2.0 core features: multi-value, bulk memory, reference types, SIMD, " +
		"sign extension, non-trapping conversions; not threads, tail calls, exceptions, memory64 or GC: see abi/ABI.md section 2)"
}

// checkModule compares the module's imports and exports with the ABI
// table and returns the callback bits it exports. Errors name the function.
func checkModule(c wazero.CompiledModule) (uint32, error) {
	r := checkModuleAll(c)
	if len(r.Problems) > 0 {
		return 0, r.Problems[0].Err
	}
	return r.Callbacks, nil
}

// checkModuleAll is checkModule listing every problem, in the order
// checkModule reports the first (CheckModule, for the conformance kit).
func checkModuleAll(c wazero.CompiledModule) ModuleReport {
	var r ModuleReport
	bad := func(name string, err error) { r.Problems = append(r.Problems, ModuleProblem{Name: name, Err: err}) }
	exports := c.ExportedFunctions()
	takesRecords, hasBuffer := false, false
	for cb, info := range abi.Callbacks {
		def, ok := exports[info.Export]
		if !ok {
			if info.Required {
				bad("export "+info.Export, fmt.Errorf("export %s: missing: not a Propolis ABI %d module", info.Export, abi.Major))
			}
			continue
		}
		hasBuffer = hasBuffer || abi.Callback(cb) == abi.CallbackBuffer
		if got := signature(def); !got.Equal(info.Sig) {
			bad("export "+info.Export, fmt.Errorf("export %s: got %s, want %s", info.Export, got, info.Sig))
			continue
		}
		r.Callbacks |= info.Bit
		r.HasMarker = r.HasMarker || abi.Callback(cb) == abi.CallbackMarker
		takesRecords = takesRecords || info.Record != 0
	}
	if _, ok := c.ExportedMemories()[abi.ExportMemory]; !ok {
		bad("export "+abi.ExportMemory, fmt.Errorf("export %s: missing", abi.ExportMemory))
	}
	if takesRecords && !hasBuffer {
		name := abi.Callbacks[abi.CallbackBuffer].Export
		bad("export "+name, fmt.Errorf("export %s: missing (required by the callbacks the module exports)", name))
	}
	for _, def := range c.ImportedFunctions() {
		mod, name, _ := def.Import()
		what := "import " + mod + "." + name
		switch mod {
		case abi.ImportModule:
			f, ok := abi.HostFuncByName(name)
			if !ok {
				bad(what, fmt.Errorf("import %s.%s: no such host function in ABI %s", mod, name, abi.Version))
				continue
			}
			if got, want := signature(def), abi.HostFuncs[f].Sig(); !got.Equal(want) {
				bad(what, fmt.Errorf("import %s.%s: got %s, want %s", mod, name, got, want))
				continue
			}
			r.HostFuncs = append(r.HostFuncs, f)
		case wasi_snapshot_preview1.ModuleName:
		default:
			bad(what, fmt.Errorf("import %s.%s: unknown module %q (the host provides %s and %s)", mod, name, mod, abi.ImportModule, wasi_snapshot_preview1.ModuleName))
		}
	}
	return r
}

// declaration is what a start callback declared with declare_callbacks,
// add_publish_filter, add_intercept_filter and add_intercept_client.
type declaration struct {
	declared         bool
	mask             uint32
	filters          []string
	interceptFilters [2][]string
	interceptClients []string
}

// sameDeclaration reports whether a later instance's start callback
// declared what instance 0's did. Only instance 0's declaration configures
// the extension (ABI.md, propolis_start); a later instance declaring
// something else is logged, since one of the two is not what its author
// meant.
func (e *extension) sameDeclaration(o *callOut) bool {
	d := e.declared
	return d.declared == o.declared && d.mask == o.mask && slices.Equal(d.filters, o.filters) &&
		slices.Equal(d.interceptFilters[0], o.interceptFilters[0]) && slices.Equal(d.interceptFilters[1], o.interceptFilters[1]) &&
		slices.Equal(d.interceptClients, o.interceptClients)
}

// signature converts a wazero function definition to an abi.Signature.
func signature(def api.FunctionDefinition) abi.Signature {
	conv := func(ts []api.ValueType) []abi.ValType {
		out := make([]abi.ValType, len(ts))
		for i, t := range ts {
			out[i] = abi.ValType(t)
		}
		return out
	}
	return abi.Signature{Params: conv(def.ParamTypes()), Results: conv(def.ResultTypes())}
}

// testUnguarded runs new extensions without the deadline guard; only the
// benchmarks set it, to measure what the guard costs. No manifest can.
var testUnguarded bool

// deadlineFor returns how long a call of cb may run: the authenticate
// deadline for propolis_authenticate, the call deadline for the others.
func (e *extension) deadlineFor(cb abi.Callback) time.Duration {
	if cb == abi.CallbackAuthenticate {
		return e.authDeadline
	}
	return e.deadline
}

// acquire takes an instance for a call of cb, waiting at most cb's
// deadline and never past ctx; release returns it, or discards it after an
// error. Both are for Host.invoke only.
func (e *extension) acquire(ctx context.Context, cb abi.Callback, waited *bool) (*instance, error) {
	if e.stopped.Load() {
		return nil, ErrStopped
	}
	return e.pool.get(ctx, cb, waited)
}

func (e *extension) release(in *instance, cb abi.Callback, err error) {
	if cb == abi.CallbackAuthenticate && e.pool.authLimited {
		e.pool.releaseAuth()
	}
	e.calls.Add(1)
	if err == nil {
		e.pool.put(in)
		return
	}
	if errors.Is(err, ErrRecordTooLarge) { // the guest said no; it is not broken
		e.pool.put(in)
		if n := e.tooLarge.Add(1); n == 1 || n%1000 == 0 {
			e.log.Warn("record too large for the extension's buffer; decision failed closed, event dropped, packet left unintercepted",
				"callback", cb.String(), "records_refused", n, "error", err)
		}
		if !abi.Callbacks[cb].Decides() {
			e.dropped.Add(1)
		}
		return
	}
	e.pool.discard(in)
	if errors.Is(err, ErrCanceled) { // the caller gave up; the extension did nothing wrong
		e.log.Debug("call interrupted by the caller's deadline; instance discarded", "callback", cb.String(), "error", err)
		return
	}
	e.errors.Add(1)
	if !abi.Interceptors.Has(cb) { // the interceptors log it with the client, rate-limited
		e.log.Warn("extension call failed; instance discarded", "callback", cb.String(), "error", err)
	}
	e.noteFailure(err)
}

// noteFailure counts a failure and stops the extension when it keeps
// failing (crash loop).
func (e *extension) noteFailure(cause error) {
	now := time.Now()
	e.mu.Lock()
	e.failures = append(e.failures, now)
	for len(e.failures) > 0 && now.Sub(e.failures[0]) > crashLoopWindow {
		e.failures = e.failures[1:]
	}
	loop := len(e.failures) >= crashLoopFailures
	e.mu.Unlock()
	if loop {
		e.host.fail(e, fmt.Errorf("crash loop: %d failures within %v, last: %w", crashLoopFailures, crashLoopWindow, cause))
	}
}

// stop takes the extension out of service: new calls fail, calls in
// flight finish (up to a few deadlines), each instance's stop callback
// runs, then the runtime and the compiled module are closed, and a large
// release of memory is returned to the OS (Host.released). Safe to call
// more than once.
//
// The compiled module must be closed on its own: with a compilation cache
// the compiled code belongs to the cache's engine, which keeps it (counted
// once per CompileModule) until the module is closed, so each version ever
// loaded would stay in memory with a cache shared by every runtime (the
// host's in memory). A module's own cache (e.cache) is closed too, which
// frees what it holds whatever the count (a load whose cache write failed
// compiled twice: compile).
func (e *extension) stop(graceful bool) {
	if e.stopped.Swap(true) {
		return
	}
	e.stopTicks()
	if e.quit != nil {
		close(e.quit)
	}
	e.authCache.flush("")
	// The watchdog keeps enforcing deadlines on calls still running in
	// the stopping pool, which is out of the chain already.
	e.host.watchStopping(e, true)
	size := e.pool.closeAll(graceful)
	e.host.watchStopping(e, false)
	// After closeAll: requests of calls (and stop callbacks) still running
	// until then leave their connections idle only now.
	e.http.close()
	_ = e.rt.Close(context.Background())
	_ = e.compiled.Close(context.Background())
	if e.cache != nil {
		_ = e.cache.Close(context.Background())
	}
	if e.folder != nil {
		_ = e.folder.Close()
	}
	e.host.released(size)
}

// logWriter routes a guest's stdout/stderr to the broker log, a line at a
// time, tagged with the extension id.
type logWriter struct {
	log  *slog.Logger
	mu   sync.Mutex
	line []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range p {
		if b == '\n' || len(w.line) >= abi.MaxLogLine {
			w.log.Info(string(w.line), "source", "guest")
			w.line = w.line[:0]
			if b == '\n' {
				continue
			}
		}
		w.line = append(w.line, b)
	}
	return len(p), nil
}
