package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Audit is the audit log: one JSON line per state-changing action of the
// admin API (login, logout, failed login, disconnect, invalidate, retained
// delete, extension enable and disable, trace start, stop, delete and
// download), appended and fsynced. The API writes an "attempt" line
// before it acts, and does not act when that line cannot be written; the
// result line follows. A write that fails half way is cut back, so the
// next line starts on a line of its own.
//
// The file is rotated when it reaches MaxAuditSize: audit.log becomes
// audit.log.1, audit.log.1 becomes audit.log.2 and so on; the oldest
// beyond AuditFiles is removed. So the log never takes more than
// (AuditFiles+1) x MaxAuditSize of disk, whatever a stranger does (the
// API also throttles the lines of refused requests). Safe for concurrent
// use.
type Audit struct {
	mu   sync.Mutex
	f    *os.File
	size int64
	path string
	max  int64
}

// MaxAuditSize is the size at which the audit log is rotated, and
// AuditFiles the number of rotated files kept.
const (
	MaxAuditSize = 64 << 20
	AuditFiles   = 4
)

// Entry is one line of the audit log.
type Entry struct {
	// Time is when the action was taken (RFC 3339 with nanoseconds).
	Time time.Time `json:"time"`
	// User and Auth are who took it (Principal.User, Principal.Auth); for
	// a failed login, the user name given and "login".
	User string `json:"user"`
	Auth string `json:"auth"`
	// Remote is the peer's IP address.
	Remote string `json:"remote"`
	// Action is what was done: "login", "login_failed", "logout",
	// "client.disconnect", "session.invalidate", "retained.delete",
	// "extension.enable", "extension.disable", "trace.start",
	// "trace.stop", "trace.delete", "trace.download".
	Action string `json:"action"`
	// Target is what it was done to: a client id, topic, extension id or
	// recording id; "" when none.
	Target string `json:"target"`
	// Result is "attempt" (written before the action), "ok", "denied"
	// (no permission, bad credentials, rate-limited, CSRF, Host, Origin)
	// or "error".
	Result string `json:"result"`
	// Error is why it was not "ok"; "" when it was.
	Error string `json:"error"`
	// Details are the request's parameters, on the result line of an
	// action that takes any (client.disconnect: prevent_will,
	// reason_code, reason; trace.start: the recording's spec); never a
	// secret. Left out when none.
	Details map[string]any `json:"details,omitempty"`
}

// OpenAudit opens (creating, mode 0600) the audit log at path for
// appending, making its folder if needed.
func OpenAudit(path string) (*Audit, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	a := &Audit{path: path, max: MaxAuditSize}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

// open opens a.path for appending; a.mu is held (or a is new).
func (a *Audit) open() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	a.f, a.size = f, st.Size()
	return nil
}

// rotate renames the full file to .1 (shifting the older ones, removing
// the one beyond AuditFiles) and opens a new one; a.mu is held.
func (a *Audit) rotate() error {
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	a.f = nil
	_ = os.Remove(a.path + "." + strconv.Itoa(AuditFiles))
	for i := AuditFiles - 1; i >= 1; i-- {
		if err := os.Rename(a.path+"."+strconv.Itoa(i), a.path+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("audit log %s: rotate: %w", a.path, err)
		}
	}
	if err := os.Rename(a.path, a.path+".1"); err != nil {
		return fmt.Errorf("audit log %s: rotate: %w", a.path, err)
	}
	return a.open()
}

// Path returns the file's path.
func (a *Audit) Path() string { return a.path }

// Write appends e (Time set to now when zero) and fsyncs the file. The
// error names the file; a write that failed part way is cut back. The
// file is rotated first when it has reached its size limit.
func (a *Audit) Write(e Entry) error {
	if a == nil {
		return nil
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return fmt.Errorf("audit log %s: closed", a.path)
	}
	if a.size >= a.max {
		if err := a.rotate(); err != nil {
			return err
		}
	}
	if n, err := a.f.Write(line); err != nil {
		if n > 0 {
			// Cut the partial line back, or the next line would continue it.
			_ = a.f.Truncate(a.size)
		}
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	a.size += int64(len(line))
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
	return nil
}

// Close closes the file; later writes fail.
func (a *Audit) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
