// Package conformance is the extension authors' conformance kit behind
// `propolis extensions check PATH`: it checks a module, or an extension
// folder, against the ABI without an operator's broker. It validates the
// module and manifest statically, then drives every callback the module
// exports with a seeded corpus of valid inputs and edge cases through the
// host's one call path (host.Probe), and, on request, runs the extension
// in an embedded broker with real MQTT 3.1.1 and 5 clients.
//
// Every check gives a Result (a name, pass, fail or skip, and a message
// naming the problem and the input that caused it); the text, JUnit and
// JSON writers render the same Results.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/host"
)

// Options configures Check. The zero value checks with DefaultCalls
// inputs per callback, seed 0 and no MQTT scenarios.
type Options struct {
	// Seed seeds the corpus: the same seed gives the same inputs, so a
	// failure can be replayed.
	Seed uint64
	// Calls is how many inputs each exported callback gets; 0 means
	// DefaultCalls. When every call succeeds, the corpus is repeated on
	// the same instance for a fixed budget of calls (the memory check) and
	// run once more, reversed, on a fresh instance (the state check).
	Calls int
	// MQTT also runs the extension in an embedded broker on a loopback
	// port and drives it with real MQTT 3.1.1 and 5 clients.
	MQTT bool
	// Username and Password are the credentials the MQTT clients send;
	// "" means "kit" and "kit-password". An authenticating
	// extension that refuses them leaves the later scenarios undriven
	// (reported, not failed).
	Username, Password string
	// CacheDir keeps the compiled code of the modules checked between
	// runs (wazero's compilation cache, as the broker's); "" compiles each
	// module anew, about a second for a Go module.
	CacheDir string
	// Logger receives the extension's own logs and the host's; nil
	// discards them.
	Logger *slog.Logger
	// Network lets the extension's http_request reach the hosts its
	// manifest allows (a test identity service, say). Without it every
	// request fails at once, as with no network.
	Network bool
}

// DefaultCalls is the number of inputs per callback when Options.Calls is
// 0: enough to meet every edge case several times, small enough for a
// few seconds per extension.
const DefaultCalls = 100

// Status is a check's verdict.
type Status string

// The verdicts. A skipped check could not run (an earlier one failed, or
// the module does not export what it checks); it does not fail the run.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is one check's verdict.
type Result struct {
	// Group is "static", "run" or "mqtt".
	Group string `json:"group"`
	// Name names the check: "imports", "authenticate: answers are valid
	// decisions".
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Message says what was found: for a failure, the problem and the
	// input that triggered it.
	Message string `json:"message,omitempty"`
	// Took is how long the check ran, when it ran on its own.
	Took time.Duration `json:"took_ns,omitempty"`
}

// Report is the outcome of Check.
type Report struct {
	// Path is what was checked; Extension its id.
	Path      string `json:"path"`
	Extension string `json:"extension"`
	// Seed and Calls replay the run: `propolis extensions check --seed
	// SEED --calls CALLS PATH`.
	Seed  uint64 `json:"seed"`
	Calls int    `json:"calls"`
	// Network is Options.Network, for the replay.
	Network bool `json:"network"`
	// MQTT and Username are Options.MQTT and Options.Username, for the
	// replay; PasswordSet is whether Options.Password was given (the
	// password itself is never in the report).
	MQTT        bool   `json:"mqtt"`
	Username    string `json:"username,omitempty"`
	PasswordSet bool   `json:"password_set,omitempty"`
	// CallsMade counts the calls into the extension.
	CallsMade int           `json:"calls_made"`
	Results   []Result      `json:"results"`
	Took      time.Duration `json:"took_ns"`
}

// Passed reports whether no check failed.
func (r *Report) Passed() bool { return r.Failed() == 0 }

// Failed counts the failed checks.
func (r *Report) Failed() int {
	n := 0
	for _, x := range r.Results {
		if x.Status == Fail {
			n++
		}
	}
	return n
}

func (r *Report) add(group, name string, st Status, format string, a ...any) {
	r.Results = append(r.Results, Result{Group: group, Name: name, Status: st, Message: fmt.Sprintf(format, a...)})
}

// ErrPath is returned by Check for a PATH that is neither a module nor an
// extension folder.
var ErrPath = errors.New("not a .wasm file or an extension folder")

// target is what is checked: the folder the module lives in, its
// manifest (made up for a bare module) and its bytes.
type target struct {
	dir      string
	module   string
	manifest *host.Manifest
	bare     bool
	bin      []byte
	// yaml is the made-up manifest of a bare module.
	yaml []byte
	// static is true for the module of a folder whose manifest is bad:
	// checked, never run.
	static bool
	// callbacks are the callbacks the started module takes (runChecks
	// fills it in; nil when it did not start).
	callbacks []abi.Callback
}

// Check checks the module or extension folder at path. The error is for a
// path that cannot be checked at all; everything found in the module or
// the manifest is a failed Result in the Report.
func Check(ctx context.Context, path string, opts Options) (*Report, error) {
	began := time.Now()
	if opts.Calls <= 0 {
		opts.Calls = DefaultCalls
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	r := &Report{Path: path, Seed: opts.Seed, Calls: opts.Calls, Network: opts.Network, MQTT: opts.MQTT, Username: opts.Username,
		PasswordSet: opts.Password != ""}
	defer func() { r.Took = time.Since(began) }()
	var t *target
	switch {
	case fi.IsDir():
		if _, err := os.Stat(filepath.Join(path, host.ManifestFile)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check %s: %w (no %s in it)", path, ErrPath, host.ManifestFile)
		}
		t = checkFolder(r, path)
	case strings.EqualFold(filepath.Ext(path), ".wasm"):
		t = checkBare(r, path)
	default:
		return nil, fmt.Errorf("check %s: %w", path, ErrPath)
	}
	if t == nil {
		r.add("run", "start and stop", Skip, "not run: the static checks above failed")
		return r, nil
	}
	r.Extension = t.manifest.ID
	runChecks(ctx, r, t, opts)
	if opts.MQTT {
		mqttChecks(ctx, r, t, opts)
	}
	return r, nil
}
