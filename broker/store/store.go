package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// FormatVersion is the data-folder format this build writes, recorded in
// the folder's FORMAT file. Open reads folders of this version and older
// (migrating older ones) and refuses newer ones with ErrNewerFormat.
const FormatVersion = 3

// ErrNewerFormat means the data folder was written by a newer propolis.
var ErrNewerFormat = errors.New("data folder written by a newer propolis")

// ClusterDir is the subfolder of the data folder where a cluster node
// (package cluster) keeps its JetStream store. The node starts before the
// store is first opened, so a fresh data folder may hold it, and nothing
// else, before FORMAT is written.
const ClusterDir = "cluster"

// ErrNotDataDir means the folder is not empty but holds no FORMAT file, so it is not a propolis data folder.
var ErrNotDataDir = errors.New("folder is not empty and has no FORMAT file: not a propolis data folder")

// ErrCorrupt means pebble refused to open the folder, the FORMAT file is unreadable, or a record does not decode.
var ErrCorrupt = errors.New("data corrupt")

// ErrClosed means the Store was used after Close.
var ErrClosed = errors.New("store closed")

// ErrInvalidName means a client id, topic, filter or extension id contains NUL (or an extension id is empty).
var ErrInvalidName = errors.New("name contains NUL or is empty")

// defaultFlushInterval is the periodic-mode WAL sync interval when
// Options.FlushInterval is zero.
const defaultFlushInterval = 100 * time.Millisecond

// cacheSize is pebble's block cache. The broker reads the store at start-up
// and rarely afterwards, so a small cache is enough.
const cacheSize = 16 << 20

// memTableSize bounds each pebble memtable; writes are small and frequent.
const memTableSize = 16 << 20

// Options configures Open.
type Options struct {
	// Dir is the data folder. Open creates it when missing.
	Dir string
	// Durability says when writes reach the disk.
	Durability Durability
	// FlushInterval is the WAL sync interval of DurabilityPeriodic;
	// default 100ms when zero. Other modes ignore it.
	FlushInterval time.Duration
	// Logger receives the store's and pebble's messages; nil means
	// slog.Default(). Pebble's chatter goes to Debug level.
	Logger *slog.Logger
	// Repair opens a folder whose write-ahead log is damaged (ErrDamagedWAL)
	// anyway: Open copies the folder aside to <Dir>.damaged-<UTC time>,
	// logs where at Warn, and lets pebble replay each log up to the damage,
	// dropping the rest (logged at Warn with the records dropped). Default
	// false: such a folder is refused. It changes nothing for a folder
	// without damage. `propolis serve --repair` sets it.
	Repair bool
	// MinFreeSpace is the free-space reserve in bytes: while the data
	// folder's file system has less free, new work is refused with
	// ErrDiskFull (see space.go). Zero means DefaultMinFreeSpace (64 MiB);
	// negative turns the guard off.
	MinFreeSpace int64
	// FreeSpace reads the free space of the data folder's file system; nil
	// means StatfsFree. Tests inject one.
	FreeSpace SpaceFunc
	// Timings, when its fields are set, receives the duration of each write
	// and of each write-ahead log fsync (see Timings). The zero value times
	// nothing and reads no clock.
	Timings Timings
}

// Store is the broker's persistent store, a pebble database in one data
// folder. All methods are safe for concurrent use.
type Store struct {
	dir  string
	log  *slog.Logger
	mode Durability

	// mu guards db: methods hold it for reading while they use db, Close
	// holds it for writing while it closes and clears db.
	mu   sync.RWMutex
	db   *pebble.DB
	lock *pebble.Lock

	guard *spaceGuard // refuses new work near a full disk; see space.go

	onWrite func(time.Duration) // Options.Timings.Write; see timeWrite

	stop      chan struct{} // closed by Close to end the periodic syncer
	done      chan struct{} // closed by the periodic syncer when it ends
	closeOnce sync.Once
	closeErr  error
}

// Open opens the data folder opts.Dir, creating it when it is missing or
// empty. The broker calls it once at start-up; it costs a read-only
// validation open of pebble, the real open and, for a folder of an older
// format, a migration (see the package documentation). It refuses, without
// changing any file, a folder of a newer format (ErrNewerFormat), a
// non-empty folder without a FORMAT file (ErrNotDataDir), a folder pebble
// cannot open (ErrCorrupt) and one whose write-ahead log is damaged other
// than by a crash (ErrDamagedWAL, which matches ErrCorrupt too) unless
// opts.Repair is set. A folder that needs more free space to open than its
// file system has (pebble replays its log into a new table and
// preallocates a new log) is refused with one line naming the folder and
// the free space, wrapping ErrDiskFull; one that opens below the reserve
// starts with the guard full (see Space). A fatal error inside pebble
// during Open becomes an error too, never a panic or an exit.
func Open(opts Options) (_ *Store, err error) {
	if opts.Dir == "" {
		return nil, errors.New("open store: no data folder given (Options.Dir is empty)")
	}
	dir := filepath.Clean(opts.Dir)
	switch opts.Durability {
	case DurabilitySync, DurabilityPeriodic, DurabilityNone:
	default:
		return nil, fmt.Errorf("open store %s: unknown durability %d", dir, int(opts.Durability))
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	interval := opts.FlushInterval
	if interval <= 0 {
		interval = defaultFlushInterval
	}
	minFree := opts.MinFreeSpace
	if minFree == 0 {
		minFree = DefaultMinFreeSpace
	}
	freeFn := opts.FreeSpace
	if freeFn == nil {
		freeFn = StatfsFree
	}
	started := new(atomic.Bool)
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = openFailed(dir, f, freeFn, minFree)
		}
	}()
	db, lock, err := openDB(dir, opts.Repair, log, started, opts.Timings.Fsync)
	if err != nil {
		var nf *newerFormatError
		if errors.As(err, &nf) {
			return nil, err
		}
		return nil, openFailed(dir, err, freeFn, minFree)
	}
	started.Store(true)
	guard := newSpaceGuard(dir, uint64(max(minFree, 0)), freeFn, log)
	s := &Store{dir: dir, log: log, mode: opts.Durability, db: db, lock: lock, guard: guard, onWrite: opts.Timings.Write}
	if sp := guard.state(); minFree > 0 && sp.Free < sp.MinFree {
		if size, err := fsSize(dir); err == nil && size <= uint64(minFree) {
			log.Warn("store.min_free_space is not smaller than the data folder's file system: every QoS 1/2 message will be refused",
				"dir", dir, "fs_bytes", size, "min_free_bytes", minFree)
		}
		guard.enterFull(sp.Free)
	}
	if s.mode == DurabilityPeriodic {
		s.stop = make(chan struct{})
		s.done = make(chan struct{})
		go s.syncLoop(interval)
	}
	return s, nil
}

// openDB checks the folder's format, validates it, restores or migrates as
// needed and opens pebble read-write. On success the caller owns both the
// database and the directory lock. onFsync, when not nil, times the
// write-ahead log's fsyncs of the read-write pebble (Timings.Fsync).
func openDB(dir string, repair bool, log *slog.Logger, started *atomic.Bool, onFsync func(time.Duration)) (_ *pebble.DB, _ *pebble.Lock, err error) {
	ents, err := listDir(dir)
	if err != nil {
		return nil, nil, err
	}
	version, err := readFormat(dir)
	if err != nil {
		return nil, nil, err
	}
	if version == 0 {
		for _, e := range ents {
			if e.Name() != formatTemp && !(e.Name() == ClusterDir && e.IsDir()) {
				return nil, nil, ErrNotDataDir
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, err
		}
		if err := writeFormat(dir, FormatVersion); err != nil {
			return nil, nil, err
		}
		version, ents = FormatVersion, nil
	}
	if version > FormatVersion {
		return nil, nil, &newerFormatError{dir: dir, have: version}
	}

	lockPath := filepath.Join(dir, pebbleLockFile)
	hadLock := exists(lockPath)
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return nil, nil, fmt.Errorf("lock folder: %w", err)
	}
	defer func() {
		if err != nil {
			_ = lock.Close()
			if !hadLock { // leave a refused folder exactly as it was
				_ = os.Remove(lockPath)
			}
		}
	}()

	if backup := backupPath(dir, version); version < FormatVersion && exists(backup) {
		// A migration from this version crashed after taking its backup:
		// the live files may be half migrated. Start again from the backup.
		if _, err := validate(backup, nil, log, started); err != nil {
			return nil, nil, fmt.Errorf("pebble refused migration backup %s: %w: %w", backup, ErrCorrupt, err)
		}
		log.Warn("data folder: previous migration did not finish, restoring from backup",
			"dir", dir, "backup", backup)
		if err := restoreBackup(dir, backup); err != nil {
			return nil, nil, err
		}
	} else if hasPebbleFiles(ents) {
		replays, err := validate(dir, lock, log, started)
		if err != nil && !(errors.Is(err, pebble.ErrDBDoesNotExist) && !holdsData(dir, ents)) {
			return nil, nil, fmt.Errorf("pebble refused the folder: %w: %w", ErrCorrupt, err)
		}
		if err == nil {
			if err := checkLogs(dir, replays, repair, log); err != nil {
				return nil, nil, err
			}
		}
	}
	if err := removeStaleBackups(dir, ents, version); err != nil {
		return nil, nil, err
	}

	if err := removeShutdown(dir); err != nil {
		return nil, nil, err
	}
	db, err := openPebble(dir, lock, false, log, started, nil, onFsync)
	if err != nil {
		return nil, nil, fmt.Errorf("pebble open: %w", err)
	}
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()
	if err := migrate(db, dir, version, log); err != nil {
		return nil, nil, err
	}
	return db, lock, nil
}

// validate opens dir read-only and closes it again, which makes pebble
// check its MANIFEST and replay its logs without writing anything. It
// returns what pebble reported of each replayed log.
func validate(dir string, lock *pebble.Lock, log *slog.Logger, started *atomic.Bool) ([]walReplay, error) {
	var (
		mu      sync.Mutex
		replays []walReplay
	)
	db, err := openPebble(dir, lock, true, log, started, func(r walReplay) {
		mu.Lock()
		defer mu.Unlock()
		replays = append(replays, r)
	}, nil)
	if err != nil {
		return nil, err
	}
	if err := recoverFatal(db.Close); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	return replays, nil
}

// checkLogs refuses a folder whose write-ahead logs checkWAL finds damaged,
// naming the first damage, or with repair copies the folder aside and logs
// what the open that follows drops.
func checkLogs(dir string, replays []walReplay, repair bool, log *slog.Logger) error {
	found, err := checkWAL(dir, replays, repair, log)
	if err != nil || len(found) == 0 {
		return err
	}
	if !repair {
		return found[0].err
	}
	aside, err := copyAside(dir)
	if err != nil {
		return err
	}
	log.Warn("data folder: damaged write-ahead log, copied the folder aside before repairing", "dir", dir, "copy", aside)
	for _, d := range found {
		log.Warn("data folder: repairing write-ahead log, dropping what follows the damage",
			"dir", dir, "file", d.err.file, "offset", d.err.offset, "records_dropped", d.lost, "damage", d.err.why)
	}
	return nil
}

// openPebble opens pebble with the store's options; started tells its
// logger whether Open has returned (see pebbleLogger.Fatalf). onReplay,
// when not nil, receives pebble's report of each write-ahead log it
// replays; onFsync, when not nil, times each write-ahead log fsync.
func openPebble(dir string, lock *pebble.Lock, readOnly bool, log *slog.Logger, started *atomic.Bool, onReplay func(walReplay), onFsync func(time.Duration)) (*pebble.DB, error) {
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref()
	el := pebble.EventListener{
		BackgroundError: func(err error) { log.Error("pebble background error", "dir", dir, "err", err) },
		DiskSlow: func(info pebble.DiskSlowInfo) {
			log.Warn("pebble disk slow", "dir", dir, "path", info.Path, "duration", info.Duration)
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			log.Warn("pebble write stall", "dir", dir, "reason", info.Reason)
		},
		WriteStallEnd: func() { log.Info("pebble write stall ended", "dir", dir) },
	}
	o := &pebble.Options{
		Cache:              cache,
		MemTableSize:       memTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log: log.With("component", "pebble", "dir", dir), started: started, onReplay: onReplay},
		EventListener:      &el,
		ReadOnly:           readOnly,
		Lock:               lock,
	}
	if onFsync != nil {
		o.FS = fsyncTimedFS{FS: vfs.Default, observe: onFsync}
	}
	var db *pebble.DB
	err := recoverFatal(func() (err error) {
		db, err = pebble.Open(dir, o)
		return err
	})
	if err == nil && !readOnly && started != nil {
		// pebble's background flushes and compactions start now, on
		// goroutines no recover reaches: a fatal error there must take the
		// one-line exit of pebbleLogger.Fatalf, not panic.
		started.Store(true)
	}
	return db, err
}

// recoverFatal runs f, turning a pebbleLogger.Fatalf panic on this
// goroutine into an error.
func recoverFatal(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	return f()
}

// pebbleLogger routes pebble's log lines to slog at Debug level; pebble
// logs every flush and compaction otherwise. It hands the line that ends
// the replay of a write-ahead log to onReplay, when set.
type pebbleLogger struct {
	log      *slog.Logger
	started  *atomic.Bool // set once Open has returned the store
	onReplay func(walReplay)
}

// Infof logs at Debug level.
func (l pebbleLogger) Infof(format string, args ...any) {
	if l.onReplay != nil {
		if r, ok := parseReplay(format, args); ok {
			l.onReplay(r)
		}
	}
	l.log.Debug(fmt.Sprintf(format, args...))
}

// Errorf logs at Error level.
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

// Fatalf is called by pebble when it cannot go on safely (a failed write
// of its log or MANIFEST, such as ENOSPC despite the free-space guard, or a
// broken invariant); its default logger exits the process there.
//
// Until pebble's read-write open has returned it panics with a fatalError,
// which Open (on the same goroutine) recovers into its error: a folder
// that cannot be opened is refused with one line, never a crash. From then
// on (pebble's background work runs on its own goroutines) pebble's state is
// unusable (its commit pipeline is stopped, other writers would hang), so
// it logs one Error line naming the folder and exits with status 2. Nothing
// acknowledged is lost: a message is acknowledged only after its write
// returned (and, in sync mode, was fsynced), and pebble never rewrites
// synced log records; the next start replays them.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if l.started == nil || !l.started.Load() {
		l.log.Error("pebble fatal error during open", "msg", msg)
		panic(fatalError(msg))
	}
	l.log.Error("store failed, exiting: pebble cannot continue; acknowledged messages are on disk, "+
		"free space in the data folder and restart", "msg", msg)
	exit(2)
}

// exit is os.Exit; a variable so that a test could observe it.
var exit = os.Exit

// fatalError is the panic value of pebbleLogger.Fatalf during Open.
type fatalError string

func (e fatalError) Error() string { return "pebble: " + string(e) }

// openFailed words a failure of Open: when the folder's file system is out
// of space (ENOSPC, or less free than the reserve) it says so in one line
// naming the folder, the free space and the reserve, wrapping ErrDiskFull.
func openFailed(dir string, err error, free SpaceFunc, minFree int64) error {
	n, ferr := free(dir)
	if ferr == nil && (errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device")) {
		return fmt.Errorf("open store %s: %w: %s free, store.min_free_space %s; free space in the folder and start again: %w",
			dir, ErrDiskFull, mib(n), mib(uint64(max(minFree, 0))), err)
	}
	return fmt.Errorf("open store %s: %w", dir, err)
}

// mib formats n bytes as MiB with one decimal.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// syncLoop is the periodic-mode syncer: it syncs the WAL every interval
// until Close.
func (s *Store) syncLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.syncWAL(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Error("store periodic sync failed", "dir", s.dir, "err", err)
			}
		}
	}
}

// syncWAL fsyncs pebble's write-ahead log, making every write before it
// durable.
func (s *Store) syncWAL() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.db.LogData(nil, pebble.Sync)
}

// Close syncs every write to disk, closes the store and, when pebble
// closed cleanly, writes the clean-shutdown marker (it reads the
// write-ahead logs once to record where their records end; see the
// package documentation). The broker calls it once at shutdown; it is safe
// to call again, later calls return the first call's result. Methods
// called after Close return ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var errs []error
		if err := s.db.LogData(nil, pebble.Sync); err != nil {
			errs = append(errs, fmt.Errorf("sync: %w", err))
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, err)
		} else if len(errs) == 0 {
			// Only now are the logs complete: mark the shutdown clean.
			if err := writeShutdown(s.dir); err != nil {
				errs = append(errs, err)
			}
		}
		s.db = nil
		if err := s.lock.Close(); err != nil {
			errs = append(errs, fmt.Errorf("unlock: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close store %s: %w", s.dir, err)
		}
	})
	return s.closeErr
}

// Dir returns the data folder the store was opened on (cleaned), for log
// lines and status pages. It is free and works after Close too.
func (s *Store) Dir() string { return s.dir }

// writeOpts returns pebble's write options for a write: a durable write in
// sync mode waits for its fsync, everything else does not.
func (s *Store) writeOpts(durable bool) *pebble.WriteOptions {
	if durable && s.mode == DurabilitySync {
		return pebble.Sync
	}
	return pebble.NoSync
}
