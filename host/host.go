package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/propolis-mqtt/propolis/broker"
)

// Options configures New.
type Options struct {
	// Dir is the extensions folder: one sub-folder per extension.
	Dir string
	// CacheDir holds wazero's compilation cache, so a module is compiled
	// once across restarts; "" keeps it in memory.
	CacheDir string
	// BrokerVersion is told to extensions at start.
	BrokerVersion string
	// Logger receives the host's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Host runs the extensions of one folder. It implements the broker's
// broker.Authenticator and broker.EventListener; every method is safe for
// concurrent use.
type Host struct {
	opts  Options
	log   *slog.Logger
	cache wazero.CompilationCache

	mu     sync.Mutex
	exts   map[string]*Extension // running, by id
	status map[string]*Status    // every folder seen, by folder name
	chain  atomic.Pointer[chain]

	done chan struct{}
	wg   sync.WaitGroup
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
	Calls, Errors int64
}

// New creates a host with no extension (every CONNECT refused) and starts
// its deadline watchdog. It touches no file: call LoadAll to load the
// folder, and Close when done.
func New(opts Options) (*Host, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	h := &Host{opts: opts, log: log, exts: map[string]*Extension{}, status: map[string]*Status{}, done: make(chan struct{})}
	h.chain.Store(&chain{})
	h.wg.Add(1)
	go h.watchdog()
	return h, nil
}

// DisabledFile marks an extension folder as not to be loaded.
const DisabledFile = "DISABLED"

// LoadAll loads every extension folder in start-priority order (higher
// first). A folder that cannot be loaded is marked failed and logged; it
// never stops the others. A missing extensions folder means no extension.
func (h *Host) LoadAll(ctx context.Context) error {
	if h.cache == nil {
		if err := h.openCache(); err != nil {
			return err
		}
	}
	ents, err := os.ReadDir(h.opts.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		h.log.Warn("extensions folder does not exist", "dir", h.opts.Dir)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read extensions folder: %w", err)
	}
	type cand struct {
		dir string
		m   *Manifest
	}
	var cands []cand
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		name := ent.Name()
		dir := filepath.Join(h.opts.Dir, name)
		if _, err := os.Stat(filepath.Join(dir, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
			continue // not an extension folder
		}
		m, err := LoadManifest(dir)
		if err != nil {
			h.setFailed(name, nil, err)
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, DisabledFile)); err == nil {
			h.setStatus(name, &Status{ID: m.ID, Version: m.Version, State: StateDisabled, Reason: DisabledFile + " file present",
				Priority: m.Priority, StartPriority: m.StartPriority})
			h.log.Info("extension disabled", "extension", m.ID)
			continue
		}
		cands = append(cands, cand{dir, m})
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].m.StartPriority != cands[j].m.StartPriority {
			return cands[i].m.StartPriority > cands[j].m.StartPriority
		}
		return cands[i].m.ID < cands[j].m.ID
	})
	for _, c := range cands {
		h.start(ctx, c.dir, c.m, "")
	}
	return nil
}

// openCache opens the on-disk compilation cache (in memory without
// CacheDir).
func (h *Host) openCache() error {
	if h.opts.CacheDir == "" {
		h.cache = wazero.NewCompilationCache()
		return nil
	}
	if err := os.MkdirAll(h.opts.CacheDir, 0o755); err != nil {
		return fmt.Errorf("compilation cache %s: %w", h.opts.CacheDir, err)
	}
	c, err := wazero.NewCompilationCacheWithDir(h.opts.CacheDir)
	if err != nil {
		return fmt.Errorf("compilation cache %s: %w", h.opts.CacheDir, err)
	}
	h.cache = c
	return nil
}

// start loads one extension and puts it into the chain, or records why
// it failed.
func (h *Host) start(ctx context.Context, dir string, m *Manifest, previous string) *Extension {
	began := time.Now()
	e, err := h.loadExtension(ctx, dir, m, previous)
	name := filepath.Base(dir)
	if err != nil {
		h.setFailed(name, m, err)
		return nil
	}
	h.mu.Lock()
	h.exts[m.ID] = e
	h.mu.Unlock()
	h.setStatus(name, e.status(StateRunning, ""))
	h.rebuildChain()
	e.log.Info("extension started", "version", m.Version, "priority", m.Priority,
		"callbacks", callbackNames(e.callbacks), "took", time.Since(began).Round(time.Millisecond))
	return e
}

// fail stops a running extension after repeated failures.
func (h *Host) fail(e *Extension, reason error) {
	h.mu.Lock()
	if h.exts[e.ID()] != e {
		h.mu.Unlock()
		return
	}
	delete(h.exts, e.ID())
	h.mu.Unlock()
	h.rebuildChain()
	h.setFailed(filepath.Base(e.dir), e.manifest, reason)
	go e.stop(false)
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
	h.status[name] = st
	h.mu.Unlock()
}

// status reports a running extension.
func (e *Extension) status(state State, reason string) *Status {
	return &Status{ID: e.ID(), Version: e.manifest.Version, State: state, Reason: reason,
		Priority: e.manifest.Priority, StartPriority: e.manifest.StartPriority, Callbacks: callbackNames(e.callbacks)}
}

// Status lists every extension folder seen, sorted by id.
func (h *Host) Status() []Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Status, 0, len(h.status))
	for name, st := range h.status {
		s := *st
		if e, ok := h.exts[st.ID]; ok && filepath.Base(e.dir) == name {
			s.Calls, s.Errors = e.calls.Load(), e.errors.Load()
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Close stops every extension (running their stop callbacks) and the
// watchdog.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	exts := make([]*Extension, 0, len(h.exts))
	for _, e := range h.exts {
		exts = append(exts, e)
	}
	h.exts = map[string]*Extension{}
	h.mu.Unlock()
	h.rebuildChain()
	for _, e := range exts {
		e.stop(true)
	}
	select {
	case <-h.done:
	default:
		close(h.done)
	}
	h.wg.Wait()
	if h.cache == nil {
		return nil
	}
	return h.cache.Close(ctx)
}

// watchdog cancels guarded calls that run past their extension's deadline.
// One goroutine for the whole host; it looks every few milliseconds.
func (h *Host) watchdog() {
	defer h.wg.Done()
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		now := monotonic()
		for _, e := range h.chain.Load().all {
			if !e.guarded {
				continue
			}
			limit := int64(e.deadline)
			e.pool.busy(func(in *instance, started int64) {
				if now-started > limit {
					in.cancel()
				}
			})
		}
	}
}

// watchdogTick is how often the watchdog looks: deadlines are enforced to
// within this much.
const watchdogTick = 5 * time.Millisecond

func callbackNames(bits int32) []string {
	var out []string
	for _, c := range []struct {
		bit  int32
		name string
	}{{1, "authenticate"}, {2, "authorize_publish"}, {4, "authorize_subscribe"}, {8, "on_event"}} {
		if bits&c.bit != 0 {
			out = append(out, c.name)
		}
	}
	return out
}
