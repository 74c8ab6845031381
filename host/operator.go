package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The operator's actions on an extension folder. Each is one function that
// the CLI (propolis extensions ...), and the admin API and control center
// to come, call. They act on the folder, which is the source of truth a
// running host watches: a change takes effect there within two
// WatchIntervals, and survives a restart.

// Disable marks extension id in the extensions folder dir as disabled by
// creating its DISABLED file; a running host stops it at its next looks. It
// returns the file's path. Disabling a disabled extension is not an error.
func Disable(dir, id string) (string, error) {
	folder, err := extensionFolder(dir, id)
	if err != nil {
		return "", err
	}
	marker := filepath.Join(folder, DisabledFile)
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("disable %q: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("disable %q: %w", id, err)
	}
	return marker, nil
}

// Enable removes extension id's DISABLED file from the extensions folder
// dir; a running host starts it at its next looks. It returns the file's
// path. Enabling an enabled extension is not an error.
func Enable(dir, id string) (string, error) {
	folder, err := extensionFolder(dir, id)
	if err != nil {
		return "", err
	}
	marker := filepath.Join(folder, DisabledFile)
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("enable %q: %w", id, err)
	}
	return marker, nil
}

// CheckID returns an error naming id when it is not a valid extension id
// (the manifest's id: lower-case letters, digits, '.', '_' and '-', 1 to
// 64, starting with a letter or digit). Enable and Disable check it; the
// admin API checks it before it asks every node of a cluster.
func CheckID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("extension %q: not a valid extension id", id)
	}
	return nil
}

// ErrNoExtension is wrapped by the error of Enable and Disable when the
// folder has no extension of that id (no manifest in dir/id).
var ErrNoExtension = errors.New("no " + ManifestFile)

// extensionFolder returns dir/id after checking that it holds a manifest.
func extensionFolder(dir, id string) (string, error) {
	if err := CheckID(id); err != nil {
		return "", err
	}
	folder := filepath.Join(dir, id)
	if _, err := os.Stat(filepath.Join(folder, ManifestFile)); err != nil {
		return "", fmt.Errorf("extension %q: %w in %s", id, ErrNoExtension, folder)
	}
	return folder, nil
}

// Report is the state of an extensions folder: from the running broker
// that writes statusFile, or, when none runs, from loading each extension
// once in a throwaway host (inspect).
type Report struct {
	// Live is true when a broker is running and the statuses are its own.
	Live bool
	// PID is that broker's process id.
	PID int
	// Extensions are the folders' statuses, sorted by id.
	Extensions []Status
}

// StatusReport returns the state of the extensions folder dir, read from
// statusFile when the broker that wrote it is still running. opts gives
// the service caps an offline check reports (ServiceRate, ServiceBurst).
func StatusReport(ctx context.Context, dir, statusFile string, opts Options) (Report, error) {
	sts, pid, running, err := readStatusFile(statusFile)
	if err != nil {
		return Report{}, err
	}
	if running {
		return Report{Live: true, PID: pid, Extensions: sts}, nil
	}
	sts, err = inspect(ctx, dir, opts)
	if err != nil {
		return Report{}, err
	}
	return Report{Extensions: sts}, nil
}
