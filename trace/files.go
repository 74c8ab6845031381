package trace

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/internal/fsutil"
)

// A recording's folder, <dir>/<id>/, holds:
//
//	meta.json      the Recording, written at start and at stop (atomically:
//	               a temporary file synced, renamed over it, the folder
//	               synced)
//	000001.jsonl   its packets, one Line per line; the next file begins
//	000002.jsonl   when one would pass Limits.MaxFileSize
//
// The packet path (tapSet.Trace, on the clients' goroutines) only hands
// encoded lines over (offer): it checks the limits, counts the line and
// appends it to the recording's queue, under the recording's lock, with no
// disk I/O. One writer goroutine per running recording (run) takes the
// queue, writes it through a 64 KiB buffer, rotates the files, writes the
// buffer out every flushInterval, and at stop writes out everything handed
// over, closes the file and writes meta.json. The queue is bounded
// (handOverLimit): while the writer is that far behind (a slow or hung
// disk), a packet is dropped and counted in Recording.Dropped instead of
// waiting. Bytes and Packets count what was handed over, so that the
// limits hold for what the files will hold.

// metaFile is the name of a recording's meta.json.
const metaFile = "meta.json"

// fileName is the name of a recording's file number n (from 1).
func fileName(n int) string { return fmt.Sprintf("%06d.jsonl", n) }

// writeBuffer is the size of a recording's write buffer.
const writeBuffer = 64 << 10

// handOverLimit bounds the bytes of the lines handed over to a recording
// and not yet written: beyond it packets are dropped. A line larger than
// it is taken when nothing is waiting.
const handOverLimit = 4 << 20

// recording is one recording of a Recorder.
type recording struct {
	r   *Recorder
	m   matcher
	dir string
	// done is set once it stopped (under mu); the tap reads it without
	// the lock.
	done atomic.Bool

	mu      sync.Mutex
	meta    Recording
	timer   *time.Timer
	queue   [][]byte // lines handed over, not yet taken by the writer
	pending int64    // bytes of the lines handed over and not yet written
	deleted bool     // its folder was removed by Delete

	wake       chan struct{}        // a line was queued (capacity 1)
	syncReq    chan chan filesReply // WriteZip: write out and list the files
	stopReq    chan struct{}        // closed by stopLocked
	writerDone chan struct{}        // closed when the writer exited (at once for a loaded recording)
	zip        sync.RWMutex         // held for reading by WriteZip while it reads the files, for writing by Delete

	// The writer goroutine's own (and create's, before it starts).
	f         *os.File
	w         *bufio.Writer
	fileBytes int64 // size of f
}

// filesReply is the writer's answer to a syncReq.
type filesReply struct {
	list []fileInfo
	err  error
}

// newRecording is a recording of rc's Recorder about to start, not yet
// created on disk.
func newRecording(r *Recorder, m matcher, meta Recording) *recording {
	return &recording{r: r, m: m, dir: filepath.Join(r.dir, meta.ID), meta: meta,
		wake: make(chan struct{}, 1), syncReq: make(chan chan filesReply),
		stopReq: make(chan struct{}), writerDone: make(chan struct{})}
}

// snapshot returns a copy of its Recording.
func (rc *recording) snapshot() Recording {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.meta
}

// create makes the folder of a new recording, its first file and its
// meta.json; on failure it leaves nothing behind (the folder removed).
func (rc *recording) create() error {
	if err := os.Mkdir(rc.dir, 0o750); err != nil {
		return err
	}
	err := rc.openFile(1)
	if err == nil {
		err = writeMeta(rc.dir, rc.meta)
	}
	if err != nil {
		rc.discard()
		return err
	}
	return nil
}

// discard closes the file of a recording that never ran and removes its
// folder.
func (rc *recording) discard() {
	if rc.f != nil {
		_ = rc.f.Close()
		rc.f = nil
	}
	if err := os.RemoveAll(rc.dir); err != nil {
		rc.r.log.Warn("trace recording: folder of a failed start not removed", "path", rc.dir, "error", err)
	}
}

// openFile begins file number n. The writer's (or create's).
func (rc *recording) openFile(n int) error {
	f, err := os.OpenFile(filepath.Join(rc.dir, fileName(n)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	rc.f, rc.fileBytes = f, 0
	rc.mu.Lock()
	rc.meta.Files = n
	rc.mu.Unlock()
	if rc.w == nil {
		rc.w = bufio.NewWriterSize(f, writeBuffer)
	} else {
		rc.w.Reset(f)
	}
	return nil
}

// offer hands line (a Line and its newline) over to the recording's
// writer and reports whether that stopped it: the line would pass its
// MaxSize or the total cap (the line is not taken). While the writer is
// handOverLimit behind, the line is dropped and counted. Called by the
// packet tap on a client's goroutine: no disk I/O.
func (rc *recording) offer(line []byte) (stopped bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.done.Load() {
		return false
	}
	n := int64(len(line))
	if rc.pending > 0 && rc.pending+n > handOverLimit {
		if rc.meta.Dropped == 0 {
			rc.r.log.Warn("trace recording: writing falls behind (slow disk?); packets dropped and counted",
				"recording", rc.meta.ID, "waiting", rc.pending)
		}
		rc.meta.Dropped++
		return false
	}
	if rc.meta.Bytes+n > rc.meta.Spec.MaxSize {
		return rc.stopLocked(ReasonSizeLimit)
	}
	if !rc.r.reserve(n) {
		return rc.stopLocked(ReasonTotalCap)
	}
	rc.queue = append(rc.queue, line)
	rc.pending += n
	rc.meta.Bytes += n
	rc.meta.Packets++
	select {
	case rc.wake <- struct{}{}:
	default:
	}
	return false
}

// run is the writer goroutine of a running recording, from Start until
// it stopped and wrote out what was handed over.
func (rc *recording) run() {
	defer close(rc.writerDone)
	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	for {
		var reply chan filesReply
		select {
		case <-rc.wake:
			if err := rc.writeQueue(); err != nil {
				rc.fail(err)
				return
			}
			continue
		case <-tick.C:
		case reply = <-rc.syncReq:
		case <-rc.stopReq:
			rc.finish()
			return
		}
		err := rc.writeQueue()
		if err == nil {
			err = rc.w.Flush()
		}
		if err != nil {
			rc.fail(err)
			return
		}
		if reply != nil {
			list, err := packetFiles(rc.dir)
			reply <- filesReply{list, err}
		}
	}
}

// writeQueue takes the lines handed over and writes them to the buffer,
// beginning the next file when one would pass MaxFileSize. The writer's.
func (rc *recording) writeQueue() error {
	rc.mu.Lock()
	q := rc.queue
	rc.queue = nil
	rc.mu.Unlock()
	var written int64
	defer func() {
		rc.mu.Lock()
		rc.pending -= written
		rc.mu.Unlock()
	}()
	for _, line := range q {
		n := int64(len(line))
		if rc.fileBytes > 0 && rc.fileBytes+n > rc.r.limits.MaxFileSize {
			if err := rc.rotate(); err != nil {
				return err
			}
		}
		if _, err := rc.w.Write(line); err != nil {
			return err
		}
		rc.fileBytes += n
		written += n
	}
	return nil
}

// rotate closes the current file and begins the next. The writer's.
func (rc *recording) rotate() error {
	if err := rc.w.Flush(); err != nil {
		return err
	}
	err := rc.f.Close()
	rc.f = nil
	if err != nil {
		return err
	}
	return rc.openFile(rc.snapshot().Files + 1)
}

// fail stops the recording after a write failed ("write failed: <err>"),
// the packets handed over but not written lost (they stay counted), and
// has the Recorder remove it from the tap. The writer's, as it exits.
func (rc *recording) fail(err error) {
	rc.mu.Lock()
	stopped := rc.stopLocked(reasonWriteFailed + err.Error())
	if !stopped { // stopping already: keep its reason, add the failure
		rc.meta.StopReason += "; " + reasonWriteFailed + err.Error()
	}
	rc.queue = nil
	rc.mu.Unlock()
	if rc.f != nil {
		_ = rc.f.Close()
		rc.f = nil
	}
	rc.writeStopMeta()
	if stopped {
		rc.r.stopped(rc)
	}
}

// finish writes out everything handed over to a recording that stopped,
// closes its file and writes its meta.json; a failure is kept in the
// stop reason. The writer's, as it exits.
func (rc *recording) finish() {
	err := rc.writeQueue()
	if ferr := rc.w.Flush(); err == nil {
		err = ferr
	}
	if cerr := rc.f.Close(); err == nil {
		err = cerr
	}
	rc.f = nil
	if err != nil {
		rc.mu.Lock()
		rc.meta.StopReason += "; " + reasonWriteFailed + err.Error()
		rc.mu.Unlock()
	}
	rc.writeStopMeta()
	s := rc.snapshot()
	if s.StopReason != ReasonSizeLimit && s.StopReason != ReasonTotalCap {
		rc.r.log.Info("trace recording stopped", "recording", s.ID, "reason", s.StopReason,
			"packets", s.Packets, "bytes", s.Bytes, "dropped", s.Dropped)
	}
}

// writeStopMeta writes the meta.json of a stopped recording, logging a
// failure.
func (rc *recording) writeStopMeta() {
	s := rc.snapshot()
	if err := writeMeta(rc.dir, s); err != nil {
		rc.r.log.Warn("trace recording: meta.json not written", "recording", s.ID, "error", err)
	}
}

// stop stops a running recording with reason and reports whether it was
// running; its writer then writes out what was handed over (wait for
// writerDone).
func (rc *recording) stop(reason string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.stopLocked(reason)
}

// stopLocked marks the recording stopped with reason if it runs, and
// tells its writer to finish; no disk I/O. It reports whether the
// recording was running. rc.mu is held.
func (rc *recording) stopLocked(reason string) bool {
	if rc.done.Load() {
		return false
	}
	rc.done.Store(true)
	if rc.timer != nil {
		rc.timer.Stop()
	}
	rc.meta.State = StateStopped
	rc.meta.StoppedAt = time.Now()
	rc.meta.StopReason = reason
	close(rc.stopReq)
	return true
}

// writeMeta writes meta as dir's meta.json atomically and durably: a
// temporary file, synced, renamed over it, and the folder synced.
func writeMeta(dir string, meta Recording) error {
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, metaFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, metaFile))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return fsutil.SyncDir(dir)
}

// files lists the recording's packet files, in order, with their sizes
// on disk, holding whole lines: a running recording's writer writes out
// what was handed over first and lists them, so that the sizes end at a
// line's end although it goes on writing.
func (rc *recording) files() (meta Recording, list []fileInfo, err error) {
	reply := make(chan filesReply, 1)
	select {
	case rc.syncReq <- reply:
		select {
		case fr := <-reply:
			return rc.snapshot(), fr.list, fr.err
		case <-rc.writerDone: // it failed meanwhile
		}
	case <-rc.writerDone:
	}
	list, err = packetFiles(rc.dir)
	return rc.snapshot(), list, err
}

// fileInfo is one packet file and its size.
type fileInfo struct {
	name string
	size int64
}

// packetFiles lists the packet files in dir, in order.
func packetFiles(dir string) ([]fileInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var list []fileInfo
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		list = append(list, fileInfo{name: e.Name(), size: fi.Size()})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	return list, nil
}

// load reads recording id found in the folder at Open. Its byte and file
// counts are taken from the files; one that was still recording (the
// broker stopped without Close) becomes stopped, "interrupted", with its
// packets counted from the files, and its meta.json is rewritten.
func (r *Recorder) load(id string) (*recording, error) {
	dir := filepath.Join(r.dir, id)
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	rc := &recording{r: r, dir: dir, stopReq: make(chan struct{}), writerDone: make(chan struct{})}
	close(rc.stopReq)
	close(rc.writerDone)
	if err := json.Unmarshal(b, &rc.meta); err != nil {
		return nil, fmt.Errorf("%s: %w", metaFile, err)
	}
	if rc.meta.ID != id {
		return nil, fmt.Errorf("%s: id %q is not the folder's name", metaFile, rc.meta.ID)
	}
	rc.done.Store(true)
	list, err := packetFiles(dir)
	if err != nil {
		return nil, err
	}
	rc.meta.Bytes, rc.meta.Files = 0, len(list)
	var last time.Time
	for i, f := range list {
		if f.size, err = r.cutPartialLine(filepath.Join(dir, f.name), f.size); err != nil {
			return nil, err
		}
		list[i] = f
		rc.meta.Bytes += f.size
		if fi, err := os.Stat(filepath.Join(dir, f.name)); err == nil && fi.ModTime().After(last) {
			last = fi.ModTime()
		}
	}
	if rc.meta.State != StateStopped {
		lines, err := countLines(dir, list)
		if err != nil {
			return nil, err
		}
		rc.meta.Packets = lines
		rc.meta.State = StateStopped
		rc.meta.StopReason = ReasonInterrupted
		rc.meta.StoppedAt = last
		if last.IsZero() {
			rc.meta.StoppedAt = rc.meta.StartedAt
		}
		if err := writeMeta(dir, rc.meta); err != nil {
			r.log.Warn("trace recording: meta.json not written", "recording", id, "error", err)
		}
		r.log.Warn("trace recording was interrupted (the broker did not stop cleanly)", "recording", id, "packets", lines)
	}
	return rc, nil
}

// countLines counts the newlines of the files in dir.
func countLines(dir string, list []fileInfo) (int64, error) {
	var n int64
	buf := make([]byte, 64<<10)
	for _, fi := range list {
		f, err := os.Open(filepath.Join(dir, fi.name))
		if err != nil {
			return 0, err
		}
		for {
			k, err := f.Read(buf)
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			if err == io.EOF {
				break
			}
			if err != nil {
				_ = f.Close()
				return 0, err
			}
		}
		_ = f.Close()
	}
	return n, nil
}

// cutPartialLine cuts the file at path, size bytes long, back to the end
// of its last whole line, and returns its new size: a crash (kill -9) can
// leave a line half written, as the buffer is written out when full, not
// at a line's end. The cut is logged.
func (r *Recorder) cutPartialLine(path string, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return size, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, err
	}
	r.log.Warn("trace recording: partial last line cut (the broker did not stop cleanly)", "path", path, "bytes", size-end)
	return end, nil
}
