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
// changes, with the writer's process id so that a reader can tell a live
// broker's file from one left by a crash.

// statusFile is the JSON document Options.StatusFile holds.
type statusFile struct {
	PID        int       `json:"pid"`
	Updated    time.Time `json:"updated"`
	Extensions []Status  `json:"extensions"`
}

// writeStatusFile rewrites Options.StatusFile atomically (write, rename).
func (h *Host) writeStatusFile() {
	if h.opts.StatusFile == "" {
		return
	}
	doc := statusFile{PID: os.Getpid(), Updated: time.Now().UTC(), Extensions: h.Status()}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return
	}
	tmp := h.opts.StatusFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		h.log.Warn("write extension status file", "file", h.opts.StatusFile, "error", err)
		return
	}
	if err := os.Rename(tmp, h.opts.StatusFile); err != nil {
		h.log.Warn("write extension status file", "file", h.opts.StatusFile, "error", err)
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
