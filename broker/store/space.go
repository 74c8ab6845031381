package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the free-space guard. Pebble treats a failed write of its
// write-ahead log as fatal (Logger.Fatalf), so a full disk must never be
// reached through pebble: the guard refuses new work while the data
// folder's file system has less than Options.MinFreeSpace free, leaving that
// reserve to pebble's own needs (a new preallocated WAL, memtable flushes,
// compactions). See RATIONALE.md, "Why a free-space reserve?".

// ErrDiskFull means a write was refused because the data folder's file
// system has less free space than the configured reserve
// (Options.MinFreeSpace). Nothing was written; the write may succeed once
// space is freed.
var ErrDiskFull = errors.New("not enough free disk space (store.min_free_space reached)")

// DefaultMinFreeSpace is the reserve used when Options.MinFreeSpace is
// zero: 64 MiB, about twice what one memtable rotation may need at once (a
// new WAL preallocated to 110% of the 16 MiB memtable, plus the flushed
// table, plus a compaction's output before its inputs are deleted).
const DefaultMinFreeSpace = 64 << 20

// Space-guard refresh: the free space is read again (one statfs) when
// spaceRefreshBytes were admitted since the last reading or
// spaceRefreshInterval passed, whichever comes first; in between, admitted
// bytes are subtracted from the last reading.
const (
	spaceRefreshBytes    = 1 << 20
	spaceRefreshInterval = 100 * time.Millisecond
)

// SpaceFunc returns the bytes available to an unprivileged writer on the
// file system holding dir. Options.FreeSpace lets tests inject one.
type SpaceFunc func(dir string) (uint64, error)

// StatfsFree is the default SpaceFunc: statfs(2) of dir, available blocks
// times block size.
func StatfsFree(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// fsSize returns the size of the file system holding dir, for Open's
// warning about a reserve the file system cannot hold.
func fsSize(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Blocks) * uint64(st.Bsize), nil
}

// Space is the state of the free-space guard, for health checks and
// metrics. Store.Space returns it.
type Space struct {
	// Full is true while new QoS 1/2 work is refused with ErrDiskFull.
	Full bool
	// Free is the free space last read (statfs), minus what was admitted
	// since, in bytes.
	Free uint64
	// MinFree is the reserve, Options.MinFreeSpace, in bytes.
	MinFree uint64
	// Refused counts the writes refused with ErrDiskFull since Open.
	Refused uint64
	// FullSince is when the guard last became full; zero while not full.
	FullSince time.Time
}

// spaceGuard decides whether a write may go to pebble. It is safe for
// concurrent use; the common path (not near the reserve, reading fresh) is
// a few atomic operations.
type spaceGuard struct {
	dir     string
	log     *slog.Logger
	minFree uint64
	free    SpaceFunc
	now     func() time.Time

	pending atomic.Int64  // bytes admitted since the last reading
	readAt  atomic.Int64  // time of the last reading, Unix nanoseconds
	last    atomic.Uint64 // free bytes at the last reading
	full    atomic.Bool
	refused atomic.Uint64

	mu        sync.Mutex // serializes readings and state changes
	fullSince time.Time
}

// newSpaceGuard returns a guard of dir with the reserve minFree (0 turns
// the guard off) and takes a first reading.
func newSpaceGuard(dir string, minFree uint64, free SpaceFunc, log *slog.Logger) *spaceGuard {
	if free == nil {
		free = StatfsFree
	}
	g := &spaceGuard{dir: dir, log: log, minFree: minFree, free: free, now: time.Now}
	if minFree > 0 {
		g.refresh(true)
	}
	return g
}

// admit reports whether n more bytes may be written. A critical write (a
// copy of a message already acknowledged, a session record) may dip into
// half of the reserve; other writes must leave the whole reserve free.
// Refusals return ErrDiskFull and are counted.
func (g *spaceGuard) admit(n int, critical bool) error {
	if g.minFree == 0 {
		return nil
	}
	if g.pending.Load()+int64(n) >= spaceRefreshBytes || g.now().UnixNano()-g.readAt.Load() >= int64(spaceRefreshInterval) {
		g.refresh(false)
	}
	since := g.pending.Add(int64(n))
	limit := g.minFree
	if critical {
		limit /= 2
	}
	if free := g.last.Load(); free < limit+uint64(max(since, 0)) || !critical && g.full.Load() {
		g.pending.Add(-int64(n))
		g.refused.Add(1)
		if !critical {
			g.enterFull(free)
		}
		return ErrDiskFull
	}
	return nil
}

// refresh reads the free space again unless another goroutine just did
// (force reads anyway), and leaves the full state once the free space is
// back above the reserve plus an eighth of it, so that the state does not
// flap around the limit.
func (g *spaceGuard) refresh(force bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if !force && g.pending.Load() < spaceRefreshBytes/2 && now.UnixNano()-g.readAt.Load() < int64(spaceRefreshInterval) {
		return
	}
	free, err := g.free(g.dir)
	if err != nil {
		// Keep the last reading; retry at the next interval.
		g.log.Warn("store free space unknown", "dir", g.dir, "err", err)
		g.readAt.Store(now.UnixNano())
		return
	}
	g.last.Store(free)
	g.pending.Store(0)
	g.readAt.Store(now.UnixNano())
	if g.full.Load() && free >= g.minFree+g.minFree/8 {
		g.full.Store(false)
		g.log.Info("store disk space recovered, accepting QoS 1/2 messages again", "dir", g.dir,
			"free_bytes", free, "min_free_bytes", g.minFree, "refused", g.refused.Load(),
			"full_for", now.Sub(g.fullSince).Round(time.Millisecond))
		g.fullSince = time.Time{}
	}
}

// enterFull switches to the full state, logging once at Warn.
func (g *spaceGuard) enterFull(free uint64) {
	if g.full.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.full.Swap(true) {
		return
	}
	g.fullSince = g.now()
	g.log.Warn("STORE DISK FULL: refusing QoS 1/2 messages, retained messages and new subscriptions until space is freed",
		"dir", g.dir, "free_bytes", free, "min_free_bytes", g.minFree)
}

// state returns the guard's state, reading the free space again if the
// last reading is stale (so that a health check sees space come back even
// without traffic).
func (g *spaceGuard) state() Space {
	if g.minFree > 0 {
		g.refresh(false)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	since := uint64(max(g.pending.Load(), 0))
	free := g.last.Load()
	if free > since {
		free -= since
	} else {
		free = 0
	}
	return Space{Full: g.full.Load(), Free: free, MinFree: g.minFree, Refused: g.refused.Load(), FullSince: g.fullSince}
}

// Space returns the free-space guard's state: whether new writes are
// refused, the free space and the reserve. Health checks and metrics call
// it from any goroutine; it costs at most one statfs (when the last reading
// is older than 100ms). With Options.MinFreeSpace negative (the guard off)
// Full is always false and Free zero.
func (s *Store) Space() Space { return s.guard.state() }
