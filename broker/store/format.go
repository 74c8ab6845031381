package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/propolis-mqtt/propolis/internal/fsutil"
)

// Names of the files and folders the store keeps beside pebble's own.
const (
	formatFile      = "FORMAT"
	formatTemp      = "FORMAT.tmp"
	formatMagic     = "propolis-data"
	backupPrefix    = "migration-backup-v"
	backupTmpSuffix = ".tmp"
	pebbleLockFile  = "LOCK"
)

// newerFormatError is returned when the FORMAT file names a version this
// build cannot read. It matches ErrNewerFormat under errors.Is.
type newerFormatError struct {
	dir  string
	have int
}

func (e *newerFormatError) Error() string {
	return fmt.Sprintf("data folder %s has format %d, this build reads up to %d: upgrade propolis",
		e.dir, e.have, FormatVersion)
}

func (e *newerFormatError) Is(target error) bool { return target == ErrNewerFormat }

// readFormat returns the version in dir's FORMAT file, 0 with a nil error
// when there is no FORMAT file (or no dir), and an error wrapping ErrCorrupt
// when the file cannot be read or parsed.
func readFormat(dir string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(dir, formatFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w: %w", formatFile, ErrCorrupt, err)
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 2 || fields[0] != formatMagic {
		return 0, fmt.Errorf("read %s: content %q is not %q: %w", formatFile, raw, formatMagic+" N", ErrCorrupt)
	}
	v, err := strconv.Atoi(fields[1])
	if err != nil || v < 1 {
		return 0, fmt.Errorf("read %s: bad version %q: %w", formatFile, fields[1], ErrCorrupt)
	}
	return v, nil
}

// writeFormat atomically replaces dir's FORMAT file with version v. A
// crash leaves either the old or the new file, plus perhaps a stray
// FORMAT.tmp that the next Open ignores and overwrites.
func writeFormat(dir string, v int) error {
	if err := writeAtomic(dir, formatFile, formatTemp, fmt.Sprintf("%s %d\n", formatMagic, v)); err != nil {
		return fmt.Errorf("write %s: %w", formatFile, err)
	}
	return nil
}

// writeAtomic replaces dir/name with content: it writes dir/temp, fsyncs
// it, renames it over name and fsyncs dir.
func writeAtomic(dir, name, temp, content string) error {
	tmp := filepath.Join(dir, temp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}

// isOwnEntry reports whether a folder entry belongs to the store rather
// than to pebble: the FORMAT file, the clean-shutdown marker, their temp
// files, and migration backups.
func isOwnEntry(name string) bool {
	switch name {
	case formatFile, formatTemp, shutdownFile, shutdownTemp:
		return true
	}
	return strings.HasPrefix(name, backupPrefix)
}

// listDir returns the entries of dir, or nil when dir does not exist.
func listDir(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ents, err
}

// hasPebbleFiles reports whether dir holds anything besides the store's own
// entries.
func hasPebbleFiles(ents []os.DirEntry) bool {
	for _, e := range ents {
		if !isOwnEntry(e.Name()) {
			return true
		}
	}
	return false
}

// holdsData reports whether dir holds a file pebble could have stored data
// in: a table, or a non-empty write-ahead log. A folder without one can be
// recreated without losing anything.
func holdsData(dir string, ents []os.DirEntry) bool {
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".sst") {
			return true
		}
		if strings.HasSuffix(name, ".log") {
			if info, err := e.Info(); err != nil || info.Size() > 0 {
				return true
			}
		}
	}
	return false
}

// backupPath is the folder that holds the checkpoint taken before migrating
// from version from.
func backupPath(dir string, from int) string {
	return filepath.Join(dir, backupPrefix+strconv.Itoa(from))
}

// exists reports whether path exists; errors other than "not found" count
// as existing so that callers fail later with a useful message.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// removeStaleBackups removes backup folders that can no longer be needed
// with the folder at format version: half-written checkpoints (".tmp") and
// backups of versions below it, whose migration was committed by writing
// FORMAT but not yet cleaned up.
func removeStaleBackups(dir string, ents []os.DirEntry, version int) error {
	removed := false
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, backupPrefix) {
			continue
		}
		stale := strings.HasSuffix(name, backupTmpSuffix)
		if !stale {
			v, err := strconv.Atoi(strings.TrimPrefix(name, backupPrefix))
			stale = err == nil && v < version
		}
		if !stale {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove stale backup %s: %w", name, err)
		}
		removed = true
	}
	if removed {
		return fsutil.SyncDir(dir)
	}
	return nil
}

// restoreBackup replaces the live pebble files in dir by copies of the
// checkpoint in backup. It leaves the store's own entries and the held
// LOCK file alone. It is idempotent: a crash in the middle leaves the
// backup in place, and the next Open restores again from the start.
func restoreBackup(dir, backup string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore from %s: %w", backup, err)
	}
	for _, e := range ents {
		if isOwnEntry(e.Name()) || e.Name() == pebbleLockFile {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("restore from %s: %w", backup, err)
		}
	}
	bents, err := os.ReadDir(backup)
	if err != nil {
		return fmt.Errorf("restore from %s: %w", backup, err)
	}
	for _, e := range bents {
		if e.IsDir() || e.Name() == pebbleLockFile {
			continue
		}
		if err := copyFile(filepath.Join(backup, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("restore from %s: %w", backup, err)
		}
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("restore from %s: %w", backup, err)
	}
	return nil
}

// copyFile copies src to dst and fsyncs dst. It copies rather than links:
// pebble appends to its MANIFEST and log files, which must not change the
// backup's copies.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
