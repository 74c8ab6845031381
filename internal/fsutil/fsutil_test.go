package fsutil_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/internal/fsutil"
)

// TestSyncDir: a real folder syncs; a missing one fails with an error
// that names it and still matches fs.ErrNotExist.
func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := fsutil.SyncDir(dir); err != nil {
		t.Fatalf("SyncDir(%s): %v", dir, err)
	}
	missing := filepath.Join(dir, "missing")
	err := fsutil.SyncDir(missing)
	if err == nil {
		t.Fatalf("SyncDir(%s): no error", missing)
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("SyncDir(%s): %v, want fs.ErrNotExist naming the folder", missing, err)
	}
}
