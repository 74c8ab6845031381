package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/record"
)

// queued is the number of queued messages the WAL tests write.
const queued = 200

// writeQueued writes queued in-flight messages for client "sub", each with
// a payload of size bytes, as durable writes.
func writeQueued(t *testing.T, s *Store, size int) {
	t.Helper()
	for i := 1; i <= queued; i++ {
		mustDo(t, s.PutInflight(&Message{ClientID: "sub", PacketID: uint16(i), Type: 3, QoS: 1,
			Topic: "a/b", Payload: make([]byte, size), Created: int64(i)}, true))
	}
}

// cleanStore writes a store with queued messages of size bytes into a new
// folder, closes it cleanly and returns the folder.
func cleanStore(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	writeQueued(t, s, size)
	mustDo(t, s.Close())
	return dir
}

// newestWAL returns the name of the highest-numbered write-ahead log in dir.
func newestWAL(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var best uint64
	for _, e := range ents {
		if n, ok := walNum(e.Name()); ok && (name == "" || n > best) {
			name, best = e.Name(), n
		}
	}
	if name == "" {
		t.Fatalf("no write-ahead log in %s", dir)
	}
	return name
}

// recordStart returns the offset of the record that holds byte at of the
// undamaged log path: pebble's replay stops there once that byte is damaged.
func recordStart(t *testing.T, path string, at int64) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	num, _ := walNum(filepath.Base(path))
	rr := record.NewReader(f, pebble.FileNum(num))
	start := int64(-1)
	for {
		off := rr.Offset()
		if off > at {
			return start
		}
		r, err := rr.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			t.Fatalf("%s at offset %d: %v", path, off, err)
		}
		start = off
	}
}

// truncateHalf cuts the log at path to half its size and returns the
// offset where replay now stops.
func truncateHalf(t *testing.T, path string) int64 {
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	half := info.Size() / 2
	stop := recordStart(t, path, half)
	if err := os.Truncate(path, half); err != nil {
		t.Fatal(err)
	}
	return stop
}

// overwrite30 overwrites 64 bytes at 30% of the log at path and returns
// the offset where replay now stops.
func overwrite30(t *testing.T, path string) int64 {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(len(raw)) * 3 / 10
	stop := recordStart(t, path, at)
	for i := range int64(64) {
		raw[at+i] ^= 0x5a
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return stop
}

// warnLogger returns a logger at Warn level writing into the returned buffer.
func warnLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn})), buf
}

// TestWALReplayLine checks that pebble still logs the replay line checkWAL
// reads, with the offset a scan of the same log finds.
func TestWALReplayLine(t *testing.T) {
	dir := cleanStore(t, 100)
	name := newestWAL(t, dir)
	replays, err := validate(dir, nil, quiet, new(atomic.Bool))
	if err != nil {
		t.Fatal(err)
	}
	num, _ := walNum(name)
	scan, err := scanWAL(filepath.Join(dir, name), num)
	if err != nil {
		t.Fatal(err)
	}
	want := []walReplay{{path: filepath.Join(dir, name), offset: scan.end, keys: queued}}
	if !slices.Equal(replays, want) {
		t.Fatalf("replays = %+v, want %+v (has pebble's line %q changed?)", replays, want, walReplayFormat)
	}
	if scan.records != queued+1 || scan.torn || scan.after != -1 { // +1: Close's empty sync record
		t.Fatalf("scan of a clean log = %+v", scan)
	}
}

// TestOpenRefusesDamagedWAL: a log damaged after a clean shutdown, or
// damaged in the middle with valid records behind, is refused with its
// file and offset, and the folder is left exactly as it was.
func TestOpenRefusesDamagedWAL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload int  // bytes per message: 100 keeps the log in one 32 KiB block, 1000 spreads it over 7
		crash   bool // remove the clean-shutdown marker, as if the broker had been killed
		damage  func(t *testing.T, path string) int64
		why     string // the reason in the error
	}{
		{
			name: "truncated to half after a clean shutdown", payload: 100, damage: truncateHalf,
			why: "the clean shutdown left records up to offset 32308",
		},
		{
			name: "deleted after a clean shutdown", payload: 100,
			damage: func(t *testing.T, path string) int64 { mustDo(t, os.Remove(path)); return 0 },
			why:    "the file is missing; the clean shutdown left records up to offset 32308",
		},
		{
			// Records of 160 bytes: 60 before the damage, the damaged one, then
			// 139 and Close's empty sync record.
			name: "64 bytes overwritten at 30% after a clean shutdown", payload: 100, damage: overwrite30,
			why: "140 valid records follow from offset 9760",
		},
		{
			name: "64 bytes overwritten at 30% after a crash", payload: 100, crash: true, damage: overwrite30,
			why: "140 valid records follow from offset 9760",
		},
		{
			name: "64 bytes overwritten at 30% after a crash, over 7 blocks", payload: 1000, crash: true, damage: overwrite30,
			why: "140 valid records follow from offset 64793",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := cleanStore(t, tc.payload)
			if tc.crash {
				mustDo(t, os.Remove(filepath.Join(dir, shutdownFile)))
			}
			name := newestWAL(t, dir)
			stop := tc.damage(t, filepath.Join(dir, name))
			before := dirDigest(t, dir)
			log, buf := warnLogger()
			s, err := Open(Options{Dir: dir, Logger: log})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open accepted a damaged write-ahead log")
			}
			want := fmt.Sprintf("open store %s: write-ahead log %s damaged at offset %d (%s): data corrupt",
				dir, name, stop, tc.why)
			if err.Error() != want {
				t.Fatalf("Open error\n got: %s\nwant: %s", err, want)
			}
			if !errors.Is(err, ErrDamagedWAL) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("errors.Is(%v, ErrDamagedWAL / ErrCorrupt) = false", err)
			}
			if after := dirDigest(t, dir); !maps.Equal(before, after) {
				t.Fatalf("a refused Open changed the folder:\nbefore %v\nafter  %v", before, after)
			}
			if buf.String() != "" {
				t.Fatalf("a refused Open logged:\n%s", buf)
			}
		})
	}
}

// TestOpenRepairsDamagedWAL: with Repair a damaged folder is copied aside,
// opened with the records before the damage, and the repair is logged.
func TestOpenRepairsDamagedWAL(t *testing.T) {
	dir := cleanStore(t, 1000)
	stop := overwrite30(t, filepath.Join(dir, newestWAL(t, dir)))
	before := dirDigest(t, dir)
	delete(before, pebbleLockFile)
	log, buf := warnLogger()
	s, err := Open(Options{Dir: dir, Logger: log, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Load()
	mustDo(t, err)
	mustDo(t, s.Close())

	aside, _ := filepath.Glob(dir + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("copies aside: %v, want one", aside)
	}
	if got := dirDigest(t, aside[0]); !maps.Equal(got, before) {
		t.Fatalf("the copy aside differs from the damaged folder:\ncopy   %v\nfolder %v", got, before)
	}
	for _, want := range []string{
		`level=WARN msg="data folder: damaged write-ahead log, copied the folder aside before repairing" dir=` + dir + " copy=" + aside[0],
		fmt.Sprintf(`level=WARN msg="data folder: repairing write-ahead log, dropping what follows the damage" dir=%s file=%s offset=%d records_dropped=`, dir, newestWAL(t, aside[0]), stop),
	} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, buf)
		}
	}
	if n := len(snap.Inflight); n == 0 || n >= queued {
		t.Fatalf("repaired store holds %d of %d messages, want the ones before the damage", n, queued)
	}

	// The repaired folder opens normally from now on.
	log, buf = warnLogger()
	s, err = Open(Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatalf("Open after repair: %v", err)
	}
	mustDo(t, s.Close())
	if buf.String() != "" {
		t.Fatalf("Open after repair logged:\n%s", buf)
	}
}

// TestOpenTornTailAfterCrash: a crash in the middle of an append leaves a
// partial record at the end of the log. Open replays up to it, logs it at
// Warn, and every acknowledged (synced) message is there.
func TestOpenTornTailAfterCrash(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	s := openTest(t, live, DurabilitySync)
	writeQueued(t, s, 100)
	// The crash copy: the folder while the store runs, without marker.
	crash := filepath.Join(dir, "crash")
	copyDir(t, live, crash)
	name := newestWAL(t, live)
	num, _ := walNum(name)
	synced, err := scanWAL(filepath.Join(crash, name), num)
	mustDo(t, err)
	// One more append, of which the crash copies get a part.
	mustDo(t, s.PutInflight(&Message{ClientID: "sub", PacketID: queued + 1, Payload: make([]byte, 500)}, true))
	raw, err := os.ReadFile(filepath.Join(live, name))
	mustDo(t, err)
	grown, err := scanWAL(filepath.Join(live, name), num)
	mustDo(t, err)
	// The record crosses the first block boundary: cut it in its header,
	// in each of its two chunks, and one byte short.
	for _, cut := range []int64{synced.end + 5, synced.end + 300, walBlockSize + 20, grown.end - 1} {
		t.Run(fmt.Sprint("cut at ", cut), func(t *testing.T) {
			torn := filepath.Join(dir, fmt.Sprint("torn-", cut))
			copyDir(t, crash, torn)
			mustDo(t, os.WriteFile(filepath.Join(torn, name), raw[:cut], 0o644))

			log, buf := warnLogger()
			c, err := Open(Options{Dir: torn, Logger: log})
			if err != nil {
				t.Fatalf("Open of a crash-torn folder: %v", err)
			}
			snap, err := c.Load()
			mustDo(t, err)
			mustDo(t, c.Close())
			if len(snap.Inflight) != queued {
				t.Fatalf("store holds %d messages, want the %d acknowledged", len(snap.Inflight), queued)
			}
			want := fmt.Sprintf(`level=WARN msg="data folder: write-ahead log ends in a torn record after a crash; dropped the interrupted record, replaying the rest" dir=%s file=%s dropped_from_offset=%d dropped_records=1 replayed_records=%d replayed_keys=%d`,
				torn, name, synced.end, synced.records, queued)
			if got := strings.TrimSpace(buf.String()); !strings.HasSuffix(got, want) || strings.Count(got, "\n") != 0 {
				t.Fatalf("log\n got: %s\nwant: time=... %s", got, want)
			}
		})
	}
	if grown.end <= walBlockSize || synced.end >= walBlockSize {
		t.Fatalf("the last record spans %d-%d, not the first block boundary", synced.end, grown.end)
	}
}

// TestOpenStaleShutdownMarker: a marker that does not list the newest log
// (another build ran the folder after the clean shutdown) is ignored with a
// warning, and the folder opens.
func TestOpenStaleShutdownMarker(t *testing.T) {
	dir := cleanStore(t, 100)
	old, err := os.ReadFile(filepath.Join(dir, shutdownFile))
	mustDo(t, err)
	s, err := Open(Options{Dir: dir, Logger: quiet})
	mustDo(t, err)
	// A crash: the store is dropped without Close; put the old marker back.
	mustDo(t, s.db.Close())
	mustDo(t, s.lock.Close())
	mustDo(t, os.WriteFile(filepath.Join(dir, shutdownFile), old, 0o644))

	log, buf := warnLogger()
	s, err = Open(Options{Dir: dir, Logger: log})
	if err != nil {
		t.Fatalf("Open with a stale marker: %v", err)
	}
	mustDo(t, s.Close())
	if !strings.Contains(buf.String(), `msg="data folder: clean-shutdown marker does not list a write-ahead log, checking as after a crash"`) {
		t.Fatalf("log lacks the stale-marker warning:\n%s", buf)
	}
}

// TestOpenUnreadableShutdownMarker: an unreadable marker is refused like
// any corrupt file of the folder; Repair ignores it.
func TestOpenUnreadableShutdownMarker(t *testing.T) {
	dir := cleanStore(t, 100)
	mustDo(t, os.WriteFile(filepath.Join(dir, shutdownFile), []byte("garbage\n"), 0o644))
	before := dirDigest(t, dir)
	_, err := Open(Options{Dir: dir, Logger: quiet})
	want := fmt.Sprintf(`open store %s: read CLEAN-SHUTDOWN: first line "garbage" is not "propolis-clean-shutdown 1": data corrupt`, dir)
	if err == nil || err.Error() != want || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open error\n got: %v\nwant: %s", err, want)
	}
	if after := dirDigest(t, dir); !maps.Equal(before, after) {
		t.Fatal("a refused Open changed the folder")
	}
	s, err := Open(Options{Dir: dir, Logger: quiet, Repair: true})
	if err != nil {
		t.Fatalf("Open with Repair: %v", err)
	}
	snap, err := s.Load()
	mustDo(t, err)
	mustDo(t, s.Close())
	if len(snap.Inflight) != queued {
		t.Fatalf("store holds %d messages, want %d", len(snap.Inflight), queued)
	}
}
