package trace

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// Limits are the recorder's limits, from the configuration's trace
// section.
type Limits struct {
	// MaxFileSize is the size at which a recording's file is closed and
	// the next begun (trace.max_file_size).
	MaxFileSize int64
	// MaxTotalSize caps the files of all recordings on disk together
	// (trace.max_total_size).
	MaxTotalSize int64
}

// LimitsOf returns the limits set by the configuration's trace section.
func LimitsOf(c config.Trace) Limits {
	return Limits{MaxFileSize: int64(c.MaxFileSize), MaxTotalSize: int64(c.MaxTotalSize)}
}

// Dir is the recordings' folder in the data folder dataDir: <data>/traces.
func Dir(dataDir string) string { return filepath.Join(dataDir, "traces") }

// Recording is one recording as List, Start and Stop report it, and as its
// meta.json holds it.
type Recording struct {
	// ID names the recording and its folder: the UTC start time and a
	// random suffix, "20261130-004512-3fa2c1d0".
	ID string `json:"id"`
	// Spec is what it takes, with the defaults filled in.
	Spec Spec `json:"spec"`
	// State is "recording" or "stopped".
	State string `json:"state"`
	// StartedAt is when it started; StoppedAt when it stopped (zero while
	// recording).
	StartedAt time.Time `json:"started_at"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
	// StopReason says why it stopped: the reason given to Stop ("stopped
	// by alice"), "duration", "size limit", "total size cap", "broker
	// stopped", "interrupted" (the broker did not stop cleanly), or
	// "write failed: <error>" (a full or unwritable disk).
	StopReason string `json:"stop_reason,omitempty"`
	// Packets, Bytes and Files count the packets written, the size of its
	// files and their number.
	Packets int64 `json:"packets"`
	Bytes   int64 `json:"bytes"`
	Files   int   `json:"files"`
	// Dropped counts the packets it took but did not write because its
	// writer was too far behind (handOverLimit): the disk was slower than
	// the packets came. Clients never wait for a recording's disk.
	Dropped int64 `json:"dropped"`
}

// States of a Recording.
const (
	StateRecording = "recording"
	StateStopped   = "stopped"
)

// Stop reasons given by the recorder itself.
const (
	ReasonDuration      = "duration"
	ReasonSizeLimit     = "size limit"
	ReasonTotalCap      = "total size cap"
	ReasonBrokerStopped = "broker stopped"
	ReasonInterrupted   = "interrupted"
	reasonWriteFailed   = "write failed: "
)

// Errors of the Recorder's methods.
var (
	// ErrNotFound: no recording has the id given.
	ErrNotFound = errors.New("no such trace recording")
	// ErrNotRecording: Stop of a recording that has stopped already.
	ErrNotRecording = errors.New("trace recording not running")
	// ErrTotalCap: Start while the recordings on disk reach
	// trace.max_total_size; delete some first.
	ErrTotalCap = errors.New("trace recordings reach trace.max_total_size")
	// ErrClosed: the recorder is closed.
	ErrClosed = errors.New("trace recorder closed")
)

// Tapper is what a Recorder installs its packet tap in: *broker.Server.
type Tapper interface {
	SetPacketTap(t broker.PacketTap)
}

// flushInterval is how often a recording's writer writes its buffer to
// the file: a crash loses at most this much of a recording.
const flushInterval = time.Second

// idPattern is the form of a Recording.ID.
var idPattern = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$`)

// Recorder runs trace recordings: it is the broker's packet tap while a
// recording runs (and no tap otherwise, so that the broker pays one atomic
// load per packet), writes the packets each recording takes to its files,
// and lists, stops, deletes and zips recordings. Its methods are safe for
// concurrent use. One Recorder owns its folder.
//
// Lock order: Recorder.mu, then a recording's mu; the packet path takes a
// recording's mu only, and reinstalls the tap (Recorder.mu) after
// releasing it. Neither lock is held during disk I/O, but for Start's
// creating a folder under neither: the recordings' writers (files.go) do
// the writing, and Stop, Delete and Close wait for them holding no lock,
// so that a slow disk never holds up List, Get, Start or the clients.
type Recorder struct {
	dir    string
	limits Limits
	log    *slog.Logger

	mu     sync.Mutex
	recs   map[string]*recording
	tapper Tapper
	closed bool

	// total is the size of every recording's files on disk.
	total atomic.Int64
}

// Open opens the recordings' folder dir (Dir of the data folder), creating
// it if needed, and lists the recordings found there, all stopped: one
// that was recording when the broker last stopped without Close is
// listed as "interrupted", with its counts read from its files. A
// subfolder that is not a recording is left alone with a warning. Open
// fails if dir cannot be created or read. The Recorder records nothing
// until Attach gives it the broker.
func Open(dir string, limits Limits, log *slog.Logger) (*Recorder, error) {
	if limits.MaxFileSize <= 0 || limits.MaxTotalSize <= 0 {
		return nil, fmt.Errorf("open trace recordings %s: limits must be positive, got %+v", dir, limits)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open trace recordings: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open trace recordings: %w", err)
	}
	r := &Recorder{dir: dir, limits: limits, log: log, recs: map[string]*recording{}}
	for _, e := range entries {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			log.Warn("trace folder holds something that is not a recording; left alone", "path", filepath.Join(dir, e.Name()))
			continue
		}
		rc, err := r.load(e.Name())
		if err != nil {
			log.Warn("trace recording unreadable; left alone", "path", filepath.Join(dir, e.Name()), "error", err)
			continue
		}
		r.recs[rc.meta.ID] = rc
		r.total.Add(rc.meta.Bytes)
	}
	return r, nil
}

// OpenDataDir opens the recordings of the data folder dataDir
// (<data>/traces) with the limits of the configuration's trace section:
// Open(Dir(dataDir), LimitsOf(c), log).
func OpenDataDir(dataDir string, c config.Trace, log *slog.Logger) (*Recorder, error) {
	return Open(Dir(dataDir), LimitsOf(c), log)
}

// Attach gives the recorder the broker whose packets it records: from
// now on it installs itself as t's packet tap while a recording runs, and
// removes it when none does. Call it once, before Start.
func (r *Recorder) Attach(t Tapper) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tapper = t
	r.refreshTapLocked()
}

// Start begins a recording of s and returns it. Errors: a *SpecError
// (ErrInvalidSpec) naming the field, ErrTotalCap (less than MinMaxSize
// is left of Limits.MaxTotalSize), ErrClosed, or the error creating its
// folder or first file (nothing is then left on disk).
func (r *Recorder) Start(s Spec) (Recording, error) {
	s, m, err := normalize(s, r.limits)
	if err != nil {
		return Recording{}, err
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return Recording{}, ErrClosed
	}
	if total := r.total.Load(); total+MinMaxSize > r.limits.MaxTotalSize {
		return Recording{}, fmt.Errorf("start trace recording: %w (%s of %s on disk): delete recordings first",
			ErrTotalCap, config.ByteSize(total), config.ByteSize(r.limits.MaxTotalSize))
	}
	now := time.Now()
	id, err := newID(now)
	if err != nil {
		return Recording{}, err
	}
	rc := newRecording(r, m, Recording{ID: id, Spec: s, State: StateRecording, StartedAt: now})
	if err := rc.create(); err != nil { // no lock held: a slow disk holds up no one else
		return Recording{}, fmt.Errorf("start trace recording: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		rc.discard()
		return Recording{}, ErrClosed
	}
	r.recs[id] = rc
	go rc.run()
	rc.mu.Lock()
	rc.timer = time.AfterFunc(s.Duration, func() { _, _ = r.Stop(id, ReasonDuration) })
	rc.mu.Unlock()
	r.refreshTapLocked()
	r.log.Info("trace recording started", "recording", id, "client_pattern", s.ClientID,
		"topic_filter", s.TopicFilter, "packets", strings.Join(s.Packets, ","), "duration", s.Duration)
	return rc.snapshot(), nil
}

// lookup returns recording id, or nil.
func (r *Recorder) lookup(id string) *recording {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recs[id]
}

// Stop stops recording id, giving reason ("stopped by alice"; "" becomes
// "stopped"), and returns it once everything it took is written out.
// Errors: ErrNotFound, ErrNotRecording.
func (r *Recorder) Stop(id, reason string) (Recording, error) {
	if reason == "" {
		reason = "stopped"
	}
	rc := r.lookup(id)
	if rc == nil {
		return Recording{}, fmt.Errorf("stop trace recording %q: %w", id, ErrNotFound)
	}
	if !rc.stop(reason) {
		return rc.snapshot(), fmt.Errorf("stop trace recording %q: %w (%s)", id, ErrNotRecording, rc.snapshot().StopReason)
	}
	r.refreshTap()
	<-rc.writerDone
	return rc.snapshot(), nil
}

// Delete removes recording id and its files, stopping it first if it
// runs, and waiting for the downloads (WriteZip) reading it. Errors:
// ErrNotFound, or the error removing its folder (the recording then stays
// listed).
func (r *Recorder) Delete(id string) error {
	rc := r.lookup(id)
	if rc == nil {
		return fmt.Errorf("delete trace recording %q: %w", id, ErrNotFound)
	}
	if rc.stop("deleted") {
		r.refreshTap()
	}
	<-rc.writerDone
	rc.zip.Lock()
	defer rc.zip.Unlock()
	rc.mu.Lock()
	gone := rc.deleted
	rc.mu.Unlock()
	if gone { // deleted by another call meanwhile
		return fmt.Errorf("delete trace recording %q: %w", id, ErrNotFound)
	}
	if err := os.RemoveAll(rc.dir); err != nil {
		return fmt.Errorf("delete trace recording %q: %w", id, err)
	}
	rc.mu.Lock()
	rc.deleted = true
	rc.mu.Unlock()
	r.mu.Lock()
	delete(r.recs, id)
	r.mu.Unlock()
	r.total.Add(-rc.snapshot().Bytes)
	r.log.Info("trace recording deleted", "recording", id)
	return nil
}

// List returns every recording, newest first.
func (r *Recorder) List() []Recording {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked()
}

// listLocked is List with r.mu held.
func (r *Recorder) listLocked() []Recording {
	list := make([]Recording, 0, len(r.recs))
	for _, rc := range r.recs {
		list = append(list, rc.snapshot())
	}
	slices.SortFunc(list, func(a, b Recording) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return list
}

// Get returns recording id. Errors: ErrNotFound.
func (r *Recorder) Get(id string) (Recording, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc, ok := r.recs[id]
	if !ok {
		return Recording{}, fmt.Errorf("trace recording %q: %w", id, ErrNotFound)
	}
	return rc.snapshot(), nil
}

// TotalSize is the size of all recordings' files on disk, counted against
// Limits.MaxTotalSize.
func (r *Recorder) TotalSize() int64 { return r.total.Load() }

// Close stops every running recording ("broker stopped"), removes the
// packet tap and returns once the recordings wrote out everything they
// took. Later calls do nothing; Start then fails with ErrClosed.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var stopping []*recording
	for _, rc := range r.recs {
		if rc.stop(ReasonBrokerStopped) {
			stopping = append(stopping, rc)
		}
	}
	r.refreshTapLocked()
	r.mu.Unlock()
	for _, rc := range stopping {
		<-rc.writerDone
	}
	return nil
}

// refreshTap is refreshTapLocked taking r.mu.
func (r *Recorder) refreshTap() {
	r.mu.Lock()
	r.refreshTapLocked()
	r.mu.Unlock()
}

// refreshTapLocked installs the tap of the running recordings, or none.
// r.mu is held.
func (r *Recorder) refreshTapLocked() {
	if r.tapper == nil {
		return
	}
	var t tapSet
	for _, rc := range r.recs {
		if !rc.done.Load() {
			t.recs = append(t.recs, rc)
			t.types |= rc.m.types
		}
	}
	if len(t.recs) == 0 {
		r.tapper.SetPacketTap(nil)
		return
	}
	r.tapper.SetPacketTap(&t)
}

// stopped is called by the packet path or a writer after a recording
// stopped by itself (limits, a write error): it reinstalls the tap without
// it.
func (r *Recorder) stopped(rc *recording) {
	s := rc.snapshot()
	r.log.Warn("trace recording stopped", "recording", s.ID, "reason", s.StopReason, "packets", s.Packets, "bytes", s.Bytes)
	r.refreshTap()
}

// reserve counts n more bytes on disk if that stays within MaxTotalSize.
func (r *Recorder) reserve(n int64) bool {
	for {
		t := r.total.Load()
		if t+n > r.limits.MaxTotalSize {
			return false
		}
		if r.total.CompareAndSwap(t, t+n) {
			return true
		}
	}
}

// newID returns a recording id for a recording started at t.
func newID(t time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return t.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:]), nil
}

// tapSet is the packet tap while recordings run: the running ones when it
// was installed. It is never changed; the Recorder installs a new one.
type tapSet struct {
	recs  []*recording
	types uint16 // the union of the recordings' types
}

var _ broker.PacketTap = (*tapSet)(nil)

// Takes is the prefilter: a packet type no recording takes costs a bit
// test, a client no recording's pattern matches a path.Match per
// recording.
func (t *tapSet) Takes(clientID string, typ byte) bool {
	if t.types&(1<<typ) == 0 {
		return false
	}
	for _, rc := range t.recs {
		if rc.m.takes(clientID, typ) {
			return true
		}
	}
	return false
}

// Trace hands p, encoded once, to every recording that takes it (offer:
// no disk I/O on the client's goroutine).
func (t *tapSet) Trace(p *broker.TracedPacket) {
	var line []byte
	for _, rc := range t.recs {
		if !rc.m.matches(p) {
			continue
		}
		if line == nil {
			var err error
			if line, err = encodeLine(p); err != nil {
				rc.r.log.Warn("trace: packet not encodable", "client", p.ClientID, "type", p.Type, "error", err)
				return
			}
		}
		if rc.offer(line) {
			rc.r.stopped(rc)
		}
	}
}
