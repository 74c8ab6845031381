// Package fsutil has the file-system steps that several packages need to
// make a write durable. It has one job: fsyncing a folder after a file in
// it was created, renamed or removed (a file's own Sync does not make its
// name durable).
package fsutil

import (
	"fmt"
	"os"
)

// SyncDir fsyncs the folder dir so that creations, renames and removals
// in it survive a crash. The error names the folder (and matches
// fs.ErrNotExist when it is missing).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err // *fs.PathError: it names the folder
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}
