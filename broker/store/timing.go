package store

import (
	"strings"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// Timings receives how long the store's writes and its write-ahead log's
// fsyncs took, for metrics (the broker keeps histograms of them). Either
// field may be nil. Both are called on the writing goroutine (Write: the
// caller of a store method; Fsync: pebble's log writer, or the periodic
// syncer), so they must be cheap and must not call the store.
type Timings struct {
	// Write gets the duration of each write the store hands pebble: one
	// Set, Delete or batch commit, from the call to pebble's return. A
	// durable write in sync mode includes its wait for the fsync it shares
	// with concurrent writers. Writes refused before pebble (ErrDiskFull,
	// ErrClosed, a bad name) are not timed; the migration's are not either.
	Write func(time.Duration)
	// Fsync gets the duration of each fsync of a write-ahead log file
	// (pebble's fsync or fdatasync of its *.log files: the durable writes'
	// group commits, the periodic syncer's, a log's last sync at rotation).
	// Fsyncs of tables and the manifest (flushes, compactions) are not
	// reported: they are not on a publisher's path.
	Fsync func(time.Duration)
}

// timeWrite reports the time since start to Timings.Write, when set; a
// write path calls it as `defer s.timeWrite(s.writeStart())`.
func (s *Store) timeWrite(start time.Time) {
	if s.onWrite != nil {
		s.onWrite(time.Since(start))
	}
}

// writeStart reads the clock only when writes are timed.
func (s *Store) writeStart() time.Time {
	if s.onWrite == nil {
		return time.Time{}
	}
	return time.Now()
}

// fsyncTimedFS is pebble's file system with each write-ahead log file's
// Sync and SyncData timed (Timings.Fsync). It wraps the files pebble creates
// or reuses for writing; everything else is vfs.Default's.
type fsyncTimedFS struct {
	vfs.FS
	observe func(time.Duration)
}

// Create wraps a new write-ahead log file.
func (fs fsyncTimedFS) Create(name string) (vfs.File, error) {
	f, err := fs.FS.Create(name)
	return fs.wrap(name, f, err)
}

// ReuseForWrite wraps a recycled write-ahead log file.
func (fs fsyncTimedFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname)
	return fs.wrap(newname, f, err)
}

// OpenReadWrite wraps a write-ahead log file opened for writing.
func (fs fsyncTimedFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, opts...)
	return fs.wrap(name, f, err)
}

func (fs fsyncTimedFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return fsyncTimedFile{File: f, observe: fs.observe}, nil
}

// fsyncTimedFile times the full syncs of one write-ahead log file.
type fsyncTimedFile struct {
	vfs.File
	observe func(time.Duration)
}

// Sync is fsync(2), timed.
func (f fsyncTimedFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	f.observe(time.Since(start))
	return err
}

// SyncData is fdatasync(2), timed.
func (f fsyncTimedFile) SyncData() error {
	start := time.Now()
	err := f.File.SyncData()
	f.observe(time.Since(start))
	return err
}

// SyncTo is timed when it synced the whole file (fullSync); a partial,
// asynchronous sync is not an fsync a writer waits for.
func (f fsyncTimedFile) SyncTo(length int64) (bool, error) {
	start := time.Now()
	full, err := f.File.SyncTo(length)
	if full {
		f.observe(time.Since(start))
	}
	return full, err
}

// DiskUsage returns the bytes the store's files take on disk (pebble's
// tables, write-ahead logs including recycled ones, manifest), from
// pebble's metrics: it walks pebble's in-memory file lists, no system
// call, so a metrics scrape may call it. It returns 0 after Close.
func (s *Store) DiskUsage() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return 0
	}
	return s.db.Metrics().DiskSpaceUsage()
}
