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
)

// A recording's folder, <dir>/<id>/, holds:
//
//	meta.json      the Recording, written at start and at stop (atomically:
//	               a temporary file renamed over it)
//	000001.jsonl   its packets, one Line per line; the next file begins
//	000002.jsonl   when one would pass Limits.MaxFileSize
//
// Packets are buffered and written every flushInterval and at stop. Bytes
// count what was handed to the buffer, so that the limits hold for what
// the files will hold.

// metaFile is the name of a recording's meta.json.
const metaFile = "meta.json"

// fileName is the name of a recording's file number n (from 1).
func fileName(n int) string { return fmt.Sprintf("%06d.jsonl", n) }

// writeBuffer is the size of a recording's write buffer.
const writeBuffer = 64 << 10

// recording is one recording of a Recorder.
type recording struct {
	r   *Recorder
	m   matcher
	dir string
	// done is set once it stopped (under mu); the tap and the flusher read
	// it without the lock.
	done atomic.Bool

	mu        sync.Mutex
	meta      Recording
	f         *os.File // the file being written, nil once stopped
	w         *bufio.Writer
	fileBytes int64 // size of f
	timer     *time.Timer
}

// snapshot returns a copy of its Recording.
func (rc *recording) snapshot() Recording {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.meta
}

// create makes the folder of a new recording, its first file and its
// meta.json.
func (rc *recording) create() error {
	if err := os.Mkdir(rc.dir, 0o750); err != nil {
		return err
	}
	if err := rc.openFile(1); err != nil {
		return err
	}
	return rc.writeMeta()
}

// openFile begins file number n. rc.mu is held (or rc is not shared yet).
func (rc *recording) openFile(n int) error {
	f, err := os.OpenFile(filepath.Join(rc.dir, fileName(n)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	rc.f, rc.fileBytes, rc.meta.Files = f, 0, n
	if rc.w == nil {
		rc.w = bufio.NewWriterSize(f, writeBuffer)
	} else {
		rc.w.Reset(f)
	}
	return nil
}

// write appends line (a Line and its newline) to the recording and
// reports whether that stopped it: the line would pass its MaxSize or the
// total cap (the line is not written), or writing failed. Called by the
// packet tap.
func (rc *recording) write(line []byte) (stopped bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.f == nil {
		return false
	}
	n := int64(len(line))
	if rc.meta.Bytes+n > rc.meta.Spec.MaxSize {
		return rc.stopLocked(ReasonSizeLimit)
	}
	if !rc.r.reserve(n) {
		return rc.stopLocked(ReasonTotalCap)
	}
	if rc.fileBytes > 0 && rc.fileBytes+n > rc.r.limits.MaxFileSize {
		if err := rc.rotateLocked(); err != nil {
			rc.r.total.Add(-n)
			return rc.stopLocked(reasonWriteFailed + err.Error())
		}
	}
	if _, err := rc.w.Write(line); err != nil {
		// A failed flush inside Write: what the buffer held may be
		// partly on disk; the counts keep what was handed over.
		rc.meta.Bytes += n
		rc.fileBytes += n
		return rc.stopLocked(reasonWriteFailed + err.Error())
	}
	rc.meta.Bytes += n
	rc.meta.Packets++
	rc.fileBytes += n
	return false
}

// rotateLocked closes the current file and begins the next. rc.mu is held.
func (rc *recording) rotateLocked() error {
	if err := rc.w.Flush(); err != nil {
		return err
	}
	if err := rc.f.Close(); err != nil {
		rc.f = nil
		return err
	}
	rc.f = nil
	return rc.openFile(rc.meta.Files + 1)
}

// flush writes out the buffer of a running recording; a failure stops it,
// and flush reports whether it did.
func (rc *recording) flush() (stopped bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.f == nil {
		return false
	}
	if err := rc.w.Flush(); err != nil {
		return rc.stopLocked(reasonWriteFailed + err.Error())
	}
	return false
}

// stop stops a running recording with reason and reports whether it was
// running.
func (rc *recording) stop(reason string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.stopLocked(reason)
}

// stopLocked stops the recording if it runs: writes out its buffer,
// closes its file and writes its meta.json. A failure to write is logged
// and kept in the stop reason (the first reason stays). It reports
// whether the recording was running. rc.mu is held.
func (rc *recording) stopLocked(reason string) bool {
	if rc.done.Load() {
		return false
	}
	rc.done.Store(true)
	if rc.timer != nil {
		rc.timer.Stop()
	}
	if rc.f != nil {
		err := rc.w.Flush()
		if cerr := rc.f.Close(); err == nil {
			err = cerr
		}
		if err != nil && !strings.HasPrefix(reason, reasonWriteFailed) {
			reason += "; " + reasonWriteFailed + err.Error()
		}
		rc.f = nil
		rc.w = nil
	}
	rc.meta.State = StateStopped
	rc.meta.StoppedAt = time.Now()
	rc.meta.StopReason = reason
	if err := rc.writeMeta(); err != nil {
		rc.r.log.Warn("trace recording: meta.json not written", "recording", rc.meta.ID, "error", err)
	}
	if !strings.HasPrefix(reason, reasonWriteFailed) && reason != ReasonSizeLimit && reason != ReasonTotalCap {
		rc.r.log.Info("trace recording stopped", "recording", rc.meta.ID, "reason", reason,
			"packets", rc.meta.Packets, "bytes", rc.meta.Bytes)
	}
	return true
}

// writeMeta writes meta.json atomically. rc.mu is held.
func (rc *recording) writeMeta() error {
	b, err := json.MarshalIndent(rc.meta, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(rc.dir, metaFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, filepath.Join(rc.dir, metaFile))
}

// files lists the recording's packet files, in order, with their sizes
// on disk. A running recording's buffer is written out first, so that the
// files hold every packet counted. Files hold whole lines up to the sizes
// returned. stopped says that writing out failed, which stopped it.
func (rc *recording) files() (meta Recording, list []fileInfo, stopped bool, err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.f != nil {
		if err := rc.w.Flush(); err != nil {
			stopped = rc.stopLocked(reasonWriteFailed + err.Error())
		}
	}
	list, err = packetFiles(rc.dir)
	return rc.meta, list, stopped, err
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
	rc := &recording{r: r, dir: dir}
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
	for _, f := range list {
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
		if err := rc.writeMeta(); err != nil {
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
