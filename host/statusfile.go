package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// The status file is how a running host tells `propolis extensions list`
// (another process) what it runs: rewritten atomically whenever a status
// changes, and every statusRefresh while the counters in it (calls,
// errors, cache hits) move, with the writer's process id so that a reader
// can tell a live broker's file from one left by a crash.

// statusRefresh is how often a watching host rewrites the status file
// when only its counters changed (refreshStatusFile).
const statusRefresh = 5 * time.Second

// statusFile is the JSON document Options.StatusFile holds.
type statusFile struct {
	PID        int       `json:"pid"`
	Updated    time.Time `json:"updated"`
	Extensions []Status  `json:"extensions"`
}

// writeStatusFile rewrites Options.StatusFile atomically (write, rename).
func (h *Host) writeStatusFile() { h.saveStatus(false) }

// refreshStatusFile rewrites the status file when what it would say
// differs from what it says (the counters moved).
func (h *Host) refreshStatusFile() { h.saveStatus(true) }

// saveStatus writes the status file, or with onlyChanged only when the
// extensions' statuses differ from the last written. One writer at a
// time; a failure is logged once until a write succeeds again (a full
// disk would otherwise log every statusRefresh).
func (h *Host) saveStatus(onlyChanged bool) {
	if h.opts.StatusFile == "" {
		return
	}
	h.statusFileMu.Lock()
	defer h.statusFileMu.Unlock()
	if onlyChanged {
		select {
		case <-h.done: // Close empties the host: its zeroed counters are not news
			return
		default:
		}
	}
	sts := h.Status()
	key, err := json.Marshal(sts)
	if err != nil || onlyChanged && string(key) == h.statusWritten {
		return
	}
	doc := statusFile{PID: os.Getpid(), Updated: time.Now().UTC(), Extensions: sts}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return
	}
	tmp := h.opts.StatusFile + ".tmp"
	err = os.WriteFile(tmp, b, 0o644)
	if err == nil {
		err = os.Rename(tmp, h.opts.StatusFile)
	}
	switch {
	case err != nil && !h.statusFailing:
		h.statusFailing = true
		h.log.Warn("write extension status file; `propolis extensions list` shows older figures until a write succeeds", "file", h.opts.StatusFile, "error", err)
	case err == nil && h.statusFailing:
		h.statusFailing = false
		h.log.Info("extension status file written again", "file", h.opts.StatusFile)
	}
	if err == nil {
		h.statusWritten = string(key)
	}
}

// readStatusFile reads a status file written by a running host. ok is
// false when there is none or its process is gone.
func readStatusFile(path string) (sts []Status, pid int, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	var doc statusFile
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	return doc.Extensions, doc.PID, processAlive(doc.PID), nil
}
