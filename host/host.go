package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// Options configures New.
type Options struct {
	// Dir is the extensions folder: one sub-folder per extension.
	Dir string
	// CacheDir holds wazero's compilation cache, so a module is compiled
	// once across restarts: a folder per module (cache.go). "" keeps it
	// in memory.
	CacheDir string
	// PruneCache says this host is CacheDir's only user (a broker's data
	// folder, which one broker at a time opens): after each scan that
	// changed something, the folders of modules no extension folder holds
	// any more are removed. Leave it false when hosts share CacheDir (the
	// conformance kit's --cache, tests): a host cannot tell which modules
	// the others use, and a folder removed while another host compiles
	// into it fails that load.
	PruneCache bool
	// BrokerVersion is told to extensions at start.
	BrokerVersion string
	// Logger receives the host's logs; nil means slog.Default().
	Logger *slog.Logger
	// StatusFile, if set, is rewritten with every extension's Status (JSON)
	// whenever one changes, for `propolis extensions list`.
	StatusFile string
	// Observer, if set, hears about every call into an extension.
	Observer CallObserver
	// ServiceRate and ServiceBurst cap every extension's host service
	// calls (per second, and at once); 0 means DefaultServiceRate and
	// DefaultServiceBurst. An extension's manifest may ask for less.
	ServiceRate  float64
	ServiceBurst int
}

// Host runs the extensions of one folder. It implements the broker's
// broker.Authenticator and broker.EventListener; every method is safe for
// concurrent use.
type Host struct {
	opts Options
	log  *slog.Logger
	// cache is the in-memory compilation cache every extension shares
	// without CacheDir; with it, each load opens its module's own
	// (cacheFor). cacheOpen: openCache ran.
	cache     wazero.CompilationCache
	cacheOpen bool

	mu     sync.Mutex
	exts   map[string]*extension // running, by id (= folder name)
	status map[string]*Status    // every folder seen, by folder name
	// counters are each folder's counters that outlive its versions
	// (counters.go), by folder name; dropped with the folder's status.
	counters map[string]*folderCounters
	// folderSeq numbers the folders' counters as countersFor makes them
	// (Status.Folder).
	folderSeq uint64
	chain     atomic.Pointer[chain]
	svc       atomic.Pointer[servicesRef] // the broker's services; see services.go
	// authKeys computes the authentication cache's keys (authcache.go).
	authKeys *authKeyer
	// statusFileMu serialises the status file's writers; statusWritten
	// is the statuses last written (JSON), statusFailing whether the last
	// write failed (statusfile.go).
	statusFileMu  sync.Mutex
	statusWritten string
	statusFailing bool
	// statusEvery is statusRefresh (tests shorten it before Watch).
	statusEvery time.Duration
	// now is a coarse clock (monotonic ns) the watchdog sets every tick,
	// for the authorization cache's expiries (coarseNow).
	now atomic.Int64

	// secured is whether a security extension was serving when last
	// checked (checkSecurity), and securityKnown whether LoadAll has set
	// it; both under mu.
	secured, securityKnown bool

	// folders is the scanner's view of the folder; only the scanning
	// goroutine (LoadAll, then Watch) touches it.
	folders map[string]*folderState
	scanMu  sync.Mutex
	// readDir and readFile are how the scanner opens the folder and its
	// manifests (os.ReadDir and os.ReadFile; tests make them fail, as
	// running out of file descriptors does); scanFailing is whether the
	// last scan could not read the folder. All under scanMu.
	readDir     func(string) ([]os.DirEntry, error)
	readFile    func(string) ([]byte, error)
	scanFailing bool

	done chan struct{}
	// stopping lists the extensions being stopped (out of the chain, calls
	// maybe still running), for the watchdog; watchdogQuit ends it, once
	// every extension stopped.
	stopMu       sync.Mutex
	stopping     []*extension
	watchdogQuit chan struct{}
	// freeReq asks freeMemory to return freed memory to the OS (see
	// released); buffered 1, so requests coalesce.
	freeReq chan struct{}
	wg      sync.WaitGroup
	// trimEvery is how often pools give back instances beyond their size
	// that stayed idle (pool.trim).
	trimEvery time.Duration
	// watch, set only by OpenProbe before anything loads, hears the
	// service calls refused for want of a grant.
	watch *probeObserver
	// offline, set only by OpenProbe before anything loads (unless
	// ProbeOptions.Network), makes every extension's http_request fail at
	// once, as with no network: a probe runs an extension alone, and its
	// answers should not depend on (or wait for) what the machine reaches.
	offline bool
	// frozenWall, set only by OpenProbe before anything loads, is the
	// wall clock (Unix nanoseconds) every instance reads: a probe compares
	// the answers of instances made at different times, and an answer
	// that stamps or checks the time of day must not differ by the
	// milliseconds between them. 0 is the real clock. The monotonic clock
	// stays real (a Go guest's runtime paces itself by it).
	frozenWall int64
}

var (
	_ broker.Authenticator = (*Host)(nil)
	_ broker.EventListener = (*Host)(nil)
)

// Status describes one extension folder, for logs, the CLI and tests.
type Status struct {
	ID            string
	Version       string
	State         State
	Reason        string // why it is failed or disabled
	Priority      int
	StartPriority int
	Callbacks     []string // the callbacks the host calls
	// InterceptInboundFilters and InterceptOutboundFilters narrow the
	// publish interceptors (add_intercept_filter); empty: every message.
	InterceptInboundFilters  []string
	InterceptOutboundFilters []string
	// InterceptOutboundClients narrow the outbound publish interceptor
	// to deliveries to the client ids they match (add_intercept_client);
	// empty: every subscriber.
	InterceptOutboundClients []string
	Calls, Errors            int64
	Dropped                  int64 // events dropped (queue full, no instance, or too large)
	// TooLarge counts the records the extension's propolis_buffer could
	// not take: those calls were not made and failed closed.
	TooLarge int64
	// Services are the host services the manifest grants; ServiceRate and
	// ServiceBurst the rate limit in effect (the manifest's wish within the
	// operator's cap).
	Services []string
	// HTTPHosts are the hosts the manifest lets it call (http.hosts).
	HTTPHosts    []string
	ServiceRate  float64
	ServiceBurst int
	// Tick is the manifest's tick interval (0: none); TicksSkipped counts
	// the ticks dropped because the previous one was still running.
	Tick         time.Duration
	TicksSkipped int64
	// AuthCacheHits counts the CONNECTs answered from the extension's
	// authentication cache (no call made), AuthCacheEntries the answers
	// it keeps.
	AuthCacheHits    int64
	AuthCacheEntries int
	// AuthorizeCacheHits counts the PUBLISH and SUBSCRIBE authorizations
	// answered from answers the extension marked with cache_result (no
	// call made); the answers are kept per connection.
	AuthorizeCacheHits int64
	// Instances is how many instances the extension's pool has now:
	// limits.pool_size, more while it has grown (up to
	// limits.max_pool_size).
	Instances int
	// The counters below are the folder's: they outlive reloads (every
	// version adds to them) and go when the folder goes (counters.go).
	//
	// InstanceWaits counts the calls that found no idle instance and
	// waited for one; CrashLoopStops the times a version was stopped
	// after a crash loop; Reloads the times a new version replaced the
	// running one.
	InstanceWaits, CrashLoopStops, Reloads int64
	// Folder tells this folder's counters apart from those of a folder of
	// the same name removed before (a new number each time the host sees
	// the folder anew; 0 before it was first loaded). The counters of one
	// Folder only grow: a reader keeping its own counts per extension
	// (the metrics' calls) starts them afresh when Folder changes.
	Folder uint64
	// ServiceCalls counts the host service calls by service and status
	// (refusals included: NOT_PERMITTED, RATE_LIMITED, NOT_AVAILABLE),
	// the non-zero counts only, in abi's table order.
	ServiceCalls []ServiceCalls
}

// New creates a host with no extension (every CONNECT refused) and starts
// its deadline watchdog. It touches no file: call LoadAll to load the
// folder, and Close when done.
func New(opts Options) (*Host, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	h := &Host{opts: opts, log: log, exts: map[string]*extension{}, status: map[string]*Status{}, counters: map[string]*folderCounters{},
		folders: map[string]*folderState{}, done: make(chan struct{}), freeReq: make(chan struct{}, 1),
		watchdogQuit: make(chan struct{}), authKeys: newAuthKeyer(), trimEvery: trimEvery, statusEvery: statusRefresh,
		readDir: os.ReadDir, readFile: os.ReadFile}
	h.chain.Store(&chain{})
	h.wg.Add(2)
	go h.watchdog()
	go h.freeMemory()
	return h, nil
}

// DisabledFile marks an extension folder as not to be loaded.
const DisabledFile = "DISABLED"

// LoadAll loads every extension folder in start-priority order (higher
// first), synchronously: the broker opens its listeners after it. A folder
// that cannot be loaded is marked failed and logged; it never stops the
// others. A missing extensions folder means no extension. Watch then keeps
// the host in step with the folder.
func (h *Host) LoadAll(ctx context.Context) error {
	if !h.cacheOpen {
		h.seedCache()
		if err := h.openCache(); err != nil {
			return err
		}
	}
	if _, err := os.Stat(h.opts.Dir); errors.Is(err, fs.ErrNotExist) {
		h.log.Warn("extensions folder does not exist; watching for it", "dir", h.opts.Dir)
	} else if err != nil {
		return fmt.Errorf("read extensions folder: %w", err)
	}
	h.scan(ctx, true)
	h.mu.Lock() // from now on a change is logged (the broker's start-up banner covers the start)
	h.secured, h.securityKnown = h.serving(), true
	h.mu.Unlock()
	return nil
}

// openCache makes the on-disk compilation cache's folder (each module's
// cache in it is opened by cacheFor), or the in-memory cache without
// CacheDir.
func (h *Host) openCache() error {
	h.cacheOpen = true
	if h.opts.CacheDir == "" {
		h.cache = wazero.NewCompilationCache()
		return nil
	}
	if err := os.MkdirAll(h.opts.CacheDir, 0o755); err != nil {
		return fmt.Errorf("compilation cache %s: %w", h.opts.CacheDir, err)
	}
	return nil
}

// start loads one extension and puts it into the chain, replacing the
// running version of the same folder, if any, only once the new one has
// started: the chain swaps atomically, so no call finds neither. If the new
// version fails, the old one keeps running and the error is returned.
func (h *Host) start(ctx context.Context, dir string, m *Manifest) error {
	began := time.Now()
	name := filepath.Base(dir)
	h.mu.Lock()
	old := h.exts[name]
	h.mu.Unlock()
	previous := ""
	if old != nil {
		previous = old.manifest.Version
	}
	e, err := h.loadExtension(ctx, dir, m, previous)
	if err != nil {
		return err
	}
	// The replaced version's ticks end before e's begin, so two versions
	// never tick at once; e's start before anything else can see (and
	// stop) it.
	if old != nil {
		old.stopTicks()
	}
	e.startTicks()
	h.mu.Lock()
	h.exts[name] = e
	h.mu.Unlock()
	h.rebuildChain()
	h.setStatus(name, e.status(StateRunning, ""))
	if old != nil {
		e.counters.reloads.Add(1)
		h.checkSecurity(e.ID(), "reloaded")
		go old.stop(true) // its calls in flight finish; the scanner goes on
		e.log.Info("extension reloaded", "version", m.Version, "previous", previous, "priority", m.Priority,
			"callbacks", abi.CallbackNames(e.callbacks), "took", time.Since(began).Round(time.Millisecond),
			"compile_nice", e.compileNice)
		return nil
	}
	e.log.Info("extension started", "version", m.Version, "priority", m.Priority,
		"callbacks", abi.CallbackNames(e.callbacks), "took", time.Since(began).Round(time.Millisecond),
		"compile_nice", e.compileNice)
	h.checkSecurity(e.ID(), "started")
	return nil
}

// stopFolder takes the folder's running extension, if any, out of service;
// cause ("removed", "disabled") is for the log.
func (h *Host) stopFolder(name, cause string) *extension {
	h.mu.Lock()
	e := h.exts[name]
	delete(h.exts, name)
	h.mu.Unlock()
	if e != nil {
		h.rebuildChain()
		h.checkSecurity(e.ID(), cause)
		e.stop(true)
	}
	return e
}

// fail stops a running extension after repeated failures.
//
// The stopped extension stays in the chain: every decision that would
// consult it is denied (fail closed) until the operator replaces, disables
// or removes it. Removing it instead would let through what it was there
// to refuse.
func (h *Host) fail(e *extension, reason error) {
	name := filepath.Base(e.dir)
	h.mu.Lock()
	current := h.exts[name] == e
	h.mu.Unlock()
	if !current || e.stopped.Load() || !e.failed.CompareAndSwap(false, true) {
		return
	}
	e.counters.crashLoopStops.Add(1)
	h.setFailed(name, e.manifest, fmt.Errorf("%w; its decisions are denied until it is replaced, disabled or removed", reason))
	go func() {
		e.stop(false)
		h.checkSecurity(e.ID(), "stopped after a crash loop")
	}()
}

func (h *Host) setFailed(name string, m *Manifest, err error) {
	st := &Status{ID: name, State: StateFailed, Reason: err.Error()}
	if m != nil {
		st.ID, st.Version, st.Priority, st.StartPriority = m.ID, m.Version, m.Priority, m.StartPriority
	}
	h.setStatus(name, st)
	h.log.Error("extension failed", "extension", st.ID, "error", err)
}

func (h *Host) setStatus(name string, st *Status) {
	h.mu.Lock()
	if st == nil {
		delete(h.status, name)
		delete(h.counters, name)
	} else {
		h.status[name] = st
	}
	h.mu.Unlock()
	h.writeStatusFile()
}

// status reports a running extension.
func (e *extension) status(state State, reason string) *Status {
	return &Status{ID: e.ID(), Version: e.manifest.Version, State: state, Reason: reason,
		Priority: e.manifest.Priority, StartPriority: e.manifest.StartPriority, Callbacks: abi.CallbackNames(e.callbacks),
		Services: e.gate.grantNames(), HTTPHosts: e.manifest.HTTP.Hosts, ServiceRate: e.gate.rate, ServiceBurst: e.gate.burst,
		Tick: time.Duration(e.manifest.Tick), InterceptInboundFilters: e.interceptFilters[filterInbound],
		InterceptOutboundFilters: e.interceptFilters[filterOutbound], InterceptOutboundClients: e.interceptClients}
}

// Status lists every extension folder seen, sorted by id.
func (h *Host) Status() []Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Status, 0, len(h.status))
	for name, st := range h.status {
		s := *st
		if e, ok := h.exts[name]; ok {
			s.Calls, s.Errors = e.calls.Load(), e.errors.Load()
			s.Dropped, s.TooLarge = e.dropped.Load(), e.tooLarge.Load()
			s.TicksSkipped = e.ticksSkipped.Load()
			s.AuthCacheHits, s.AuthCacheEntries = e.authCache.hits.Load(), e.authCache.len()
			s.AuthorizeCacheHits = e.authCache.authorizeHits()
			s.Instances = e.pool.count()
		}
		if c := h.counters[name]; c != nil {
			s.InstanceWaits, s.CrashLoopStops, s.Reloads = c.waits.Load(), c.crashLoopStops.Load(), c.reloads.Load()
			s.Folder = c.folder
			s.ServiceCalls = c.serviceCalls()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Close stops watching the folder, then every extension (running their
// stop callbacks), then the watchdog.
func (h *Host) Close(ctx context.Context) error {
	select {
	case <-h.done:
		return nil
	default:
		close(h.done)
	}
	h.scanMu.Lock() // wait for a scan in progress
	h.scanMu.Unlock()
	h.statusFileMu.Lock() // and for a status file refresh
	h.statusFileMu.Unlock()
	h.mu.Lock()
	exts := make([]*extension, 0, len(h.exts))
	for _, e := range h.exts {
		exts = append(exts, e)
	}
	h.exts = map[string]*extension{}
	h.mu.Unlock()
	h.rebuildChain()
	for _, e := range exts {
		e.stop(true)
	}
	close(h.watchdogQuit)
	h.wg.Wait()
	if h.cache == nil {
		return nil
	}
	return h.cache.Close(ctx)
}

// coarseNow returns the watchdog's clock, at most a watchdog tick old
// (monotonic ns): the authorization cache reads it per PUBLISH, where a
// clock read would cost more than the cache's hit. Before the first tick
// and after the watchdog ended (Close) it reads the clock.
func (h *Host) coarseNow() int64 {
	if n := h.now.Load(); n != 0 {
		return n
	}
	return monotonic()
}

// watchdog halts guarded calls that run past their extension's deadline,
// or whose caller's context (callWithin) ended.
// One goroutine for the whole host; it looks every few milliseconds. It
// times a call from the first tick that sees it in flight (the hot path
// reads no clock), so an overdue call is halted between its deadline and
// its deadline plus two ticks after it began.
func (h *Host) watchdog() {
	defer h.wg.Done()
	defer h.now.Store(0) // coarseNow reads the clock from now on
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	var watched []*extension
	lastTrim := time.Now()
	for {
		select {
		case <-h.watchdogQuit:
			return
		case <-t.C:
		}
		now := monotonic()
		h.now.Store(now)
		if time.Since(lastTrim) >= h.trimEvery {
			lastTrim = time.Now()
			for _, e := range h.chain.Load().all {
				if !e.stopped.Load() {
					go e.pool.trim()
				}
			}
		}
		watched = append(watched[:0], h.chain.Load().all...)
		h.stopMu.Lock()
		watched = append(watched, h.stopping...)
		h.stopMu.Unlock()
		for _, e := range watched {
			if !e.guarded {
				continue
			}
			e.pool.busy(func(in *instance, started int64) {
				if in.seen != started { // a call this tick sees first
					in.seen, in.seenAt = started, now
				}
				if now-in.seenAt > int64(in.callLimit()) {
					if in.started.CompareAndSwap(started, 0) {
						in.halt()
					}
					return
				}
				select {
				case <-in.caller.Load().(<-chan struct{}):
					if in.started.CompareAndSwap(started, callerGone) {
						in.halt()
					}
				default:
				}
			})
		}
	}
}

// watchStopping adds e to (on) or removes it from the extensions the
// watchdog watches besides the chain's.
func (h *Host) watchStopping(e *extension, on bool) {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	if on {
		h.stopping = append(h.stopping, e)
		return
	}
	h.stopping = slices.DeleteFunc(h.stopping, func(x *extension) bool { return x == e })
}

// watchdogTick is how often the watchdog looks: deadlines are enforced to
// within two of these (see watchdog).
const watchdogTick = 5 * time.Millisecond
