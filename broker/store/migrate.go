package store

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble"

	"github.com/propolis-mqtt/propolis/internal/fsutil"
)

// migrateBatchSize is how many records one migration batch converts.
// Tests lower it to get many batches out of a small fixture.
var migrateBatchSize = 1000

// migrateHook, when a test sets it, is called after each step of a
// migration: stage "backup" (checkpoint taken), "batch" with the number of
// the batch just committed (1, 2, ...), "synced" (all batches on disk) and
// "format" (FORMAT rewritten, backup not yet removed). An error stops the
// migration right there, as a crash would, and Open returns it.
var migrateHook func(stage string, n int) error

func hook(stage string, n int) error {
	if migrateHook == nil {
		return nil
	}
	return migrateHook(stage, n)
}

// migrationStep rewrites the records of one format version into the next.
// It converts in batches, calls afterBatch after committing each, and
// returns how many records it converted. Each batch deletes the old keys it
// converted and sets the new ones, so a batch is all or nothing.
type migrationStep func(db *pebble.DB, log *slog.Logger, batchSize int, afterBatch func(n int) error) (records int, err error)

// migrations maps a format version to the step that upgrades it to the
// next version. A new format adds one entry here.
var migrations = map[int]migrationStep{
	1: migrateV1ToV2,
	2: migrateV2ToV3,
}

// migrate upgrades the open database from version to FormatVersion, one
// step at a time.
func migrate(db *pebble.DB, dir string, version int, log *slog.Logger) error {
	for v := version; v < FormatVersion; v++ {
		step, ok := migrations[v]
		if !ok {
			return fmt.Errorf("migrate from format %d: this build has no migration for it", v)
		}
		if err := runMigration(db, dir, v, step, log); err != nil {
			return fmt.Errorf("migrate from format %d to %d: %w", v, v+1, err)
		}
	}
	return nil
}

// runMigration performs one step. Its order is what makes a crash at any
// point safe (see the package documentation):
//
//  1. checkpoint the database into <dir>/migration-backup-v<from>.tmp and
//     rename it to migration-backup-v<from>, unless that backup is already
//     there (Open has then restored the live files from it);
//  2. convert the records in batches;
//  3. sync the write-ahead log;
//  4. write FORMAT = from+1, the commit point;
//  5. remove the backup.
func runMigration(db *pebble.DB, dir string, from int, step migrationStep, log *slog.Logger) error {
	backup := backupPath(dir, from)
	if !exists(backup) {
		tmp := backup + backupTmpSuffix
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("remove half-written backup %s: %w", tmp, err)
		}
		if err := db.Checkpoint(tmp, pebble.WithFlushedWAL()); err != nil {
			return fmt.Errorf("back up to %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, backup); err != nil {
			return fmt.Errorf("back up to %s: %w", backup, err)
		}
		if err := fsutil.SyncDir(dir); err != nil {
			return fmt.Errorf("back up to %s: %w", backup, err)
		}
	}
	if err := hook("backup", 0); err != nil {
		return err
	}
	records, err := step(db, log, migrateBatchSize, func(n int) error { return hook("batch", n) })
	if err != nil {
		return err
	}
	if err := db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync migrated records: %w", err)
	}
	if err := hook("synced", 0); err != nil {
		return err
	}
	if err := writeFormat(dir, from+1); err != nil {
		return err
	}
	if err := hook("format", 0); err != nil {
		return err
	}
	if err := os.RemoveAll(backup); err != nil {
		return fmt.Errorf("remove backup %s: %w", backup, err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("remove backup %s: %w", backup, err)
	}
	log.Info("data folder migrated", "dir", dir, "from", from, "to", from+1, "records", records)
	return nil
}

// convertFunc turns one old record into its new key and value. ok is false
// for a key the step does not know, which it leaves alone.
type convertFunc func(key, val []byte) (newKey, newVal []byte, ok bool, err error)

// rewriteAll runs convert over every key of db and commits the results in
// batches of batchSize: each batch deletes the converted keys and sets the
// new ones. The iterator reads a fixed snapshot, so it never sees the keys
// it writes.
func rewriteAll(db *pebble.DB, log *slog.Logger, batchSize int, afterBatch func(n int) error, convert convertFunc) (records int, err error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, fmt.Errorf("scan records: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("scan records: %w", cerr)
		}
	}()
	b := db.NewBatch()
	defer func() { _ = b.Close() }()
	inBatch, batches, unknown := 0, 0, 0
	commit := func() error {
		if inBatch == 0 {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("commit batch %d: %w", batches+1, err)
		}
		_ = b.Close()
		b = db.NewBatch()
		batches++
		inBatch = 0
		return afterBatch(batches)
	}
	for it.First(); it.Valid(); it.Next() {
		val, verr := it.ValueAndErr()
		if verr != nil {
			return records, fmt.Errorf("read record %q: %w", it.Key(), verr)
		}
		nk, nv, ok, cerr := convert(it.Key(), val)
		if cerr != nil {
			return records, fmt.Errorf("convert record %q: %w: %w", it.Key(), ErrCorrupt, cerr)
		}
		if !ok {
			unknown++
			continue
		}
		_ = b.Delete(it.Key(), nil)
		_ = b.Set(nk, nv, nil)
		records++
		inBatch++
		if inBatch >= batchSize {
			if err := commit(); err != nil {
				return records, err
			}
		}
	}
	if err := it.Error(); err != nil {
		return records, fmt.Errorf("scan records: %w", err)
	}
	if err := commit(); err != nil {
		return records, err
	}
	if unknown > 0 {
		log.Warn("data folder migration left unknown keys untouched", "keys", unknown)
	}
	return records, nil
}
