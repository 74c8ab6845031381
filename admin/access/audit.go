package access

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Audit is the audit log: one JSON line per state-changing action of the
// admin API (login, logout, failed login, disconnect, invalidate, retained
// delete, extension enable and disable, trace start, stop, delete and
// download), appended and fsynced before the API answers. Safe for
// concurrent use.
type Audit struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

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
	// Result is "ok", "denied" (no permission, bad credentials,
	// rate-limited) or "error".
	Result string `json:"result"`
	// Error is why it was not "ok"; "" when it was.
	Error string `json:"error"`
}

// OpenAudit opens (creating, mode 0600) the audit log at path for
// appending, making its folder if needed.
func OpenAudit(path string) (*Audit, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	return &Audit{f: f, path: path}, nil
}

// Path returns the file's path.
func (a *Audit) Path() string { return a.path }

// Write appends e (Time set to now when zero) and fsyncs the file. The
// error names the file; the caller logs it (the action was taken).
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
	if _, err := a.f.Write(line); err != nil {
		return fmt.Errorf("audit log %s: %w", a.path, err)
	}
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
