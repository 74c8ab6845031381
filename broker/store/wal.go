package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/record"

	"github.com/propolis-mqtt/propolis/internal/fsutil"
)

// walReplayFormat is the format of the line pebble v1.1.5 logs through
// Logger.Infof after it replayed one write-ahead log (open.go, replayWAL):
// job id, path, log number, the offset where it stopped, keys, batches.
// It is pebble's only report of a replay: no option makes the newest log
// strict and no EventListener callback fires. TestWALReplayLine fails
// when an upgrade changes it.
const walReplayFormat = "[JOB %d] WAL file %s with log number %s stopped reading at offset: %d; replayed %d keys in %d batches"

// walReplay is what pebble reported after replaying one write-ahead log.
type walReplay struct {
	path   string
	offset int64 // where pebble stopped reading
	keys   int64
}

// parseReplay returns the replay a pebble log call reports, if it is the
// replay line.
func parseReplay(format string, args []any) (walReplay, bool) {
	if format != walReplayFormat || len(args) != 6 {
		return walReplay{}, false
	}
	path, ok1 := args[1].(string)
	offset, ok2 := args[3].(int64)
	keys, ok3 := args[4].(int64)
	if !ok1 || !ok2 || !ok3 {
		return walReplay{}, false
	}
	return walReplay{path: path, offset: offset, keys: keys}, true
}

// walScan is what reading one write-ahead log with pebble's record reader
// found.
type walScan struct {
	// end is the offset where the readable records stop, the offset pebble
	// stops replaying at.
	end int64
	// records is the number of complete records before end.
	records int
	// torn is true when reading stopped at a partial or invalid record
	// rather than at the end of the file or at zeroed (preallocated) bytes.
	torn bool
	// after is the offset of the first valid record after end, -1 when
	// there is none. A valid record after an invalid one is damage: an
	// interrupted append leaves nothing readable behind it.
	after int64
	// lost is the number of valid records after end, which a replay drops.
	lost int
}

// walBlockSize is the block size of pebble's record format: a chunk never
// crosses a 32 KiB boundary, so a reader can start at any block.
const walBlockSize = 32 << 10

// scanWAL reads the write-ahead log at path (log number num) record by
// record as pebble's replay does, then goes on past the first invalid
// record: it searches the rest of that 32 KiB block (recordsInBlock), then,
// like pebble's (unexported) recover, resumes at the next block, and counts
// the valid records it finds. Records of an
// earlier use of a recycled file carry another log number and end the
// scan like the end of the file. It reads the file once, sequentially.
func scanWAL(path string, num uint64) (walScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return walScan{}, err
	}
	defer f.Close()
	s := walScan{after: -1}
	stopped := false
	for pos := int64(0); ; {
		if _, err := f.Seek(pos, io.SeekStart); err != nil {
			return s, err
		}
		rr := record.NewReader(bufio.NewReaderSize(f, walBlockSize), pebble.FileNum(num))
		for {
			off := pos + rr.Offset()
			r, err := rr.Next()
			if err == nil {
				_, err = io.Copy(io.Discard, r)
			}
			switch {
			case err == nil && !stopped:
				s.records++
				continue
			case err == nil:
				if s.after < 0 {
					s.after = off
				}
				s.lost++
				continue
			case errors.Is(err, io.EOF):
				if !stopped {
					s.end = off
				}
				return s, nil
			case !record.IsInvalidRecord(err):
				return s, fmt.Errorf("read %s at offset %d: %w", filepath.Base(path), off, err)
			}
			if !stopped {
				stopped = true
				s.end = off
				s.torn = !errors.Is(err, record.ErrZeroedChunk)
				// The reader resumes only at the next block; look at the
				// rest of this one byte by byte.
				first, n, err := recordsInBlock(f, off, num)
				if err != nil {
					return s, fmt.Errorf("read %s at offset %d: %w", filepath.Base(path), off, err)
				}
				if n > 0 {
					s.after, s.lost = first, n
				}
			}
			pos = (off/walBlockSize + 1) * walBlockSize
			break
		}
	}
}

// Chunk header of pebble's recyclable record format: checksum (4 bytes),
// length (2), type (1), log number (4); then the payload. Types 5 and 6
// are a whole record and the first chunk of a longer one.
const (
	walHeaderSize = 11
	walTypeFull   = 5
	walTypeFirst  = 6
	walTypeLast   = 8
)

// castagnoli is the CRC table of pebble's record format.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordsInBlock reads the 32 KiB block of f holding offset off and looks
// in it, byte by byte after off, for chunks of log num with a valid
// checksum. It returns the offset of the first that starts a record and
// the number of records started, or -1 and 0. A match by chance needs the
// type byte, four bytes of log number and a 32-bit checksum to agree.
func recordsInBlock(f *os.File, off int64, num uint64) (first int64, n int, err error) {
	start := off / walBlockSize * walBlockSize
	block := make([]byte, walBlockSize)
	m, err := f.ReadAt(block, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return -1, 0, err
	}
	block = block[:m]
	first = -1
	for p := int(off-start) + 1; p+walHeaderSize <= len(block); {
		typ := block[p+6]
		end := p + walHeaderSize + int(binary.LittleEndian.Uint16(block[p+4:]))
		if typ < walTypeFull || typ > walTypeLast || binary.LittleEndian.Uint32(block[p+7:]) != uint32(num) ||
			end > len(block) || binary.LittleEndian.Uint32(block[p:]) != chunkCRC(block[p+6:end]) {
			p++
			continue
		}
		if typ == walTypeFull || typ == walTypeFirst {
			if first < 0 {
				first = start + int64(p)
			}
			n++
		}
		p = end
	}
	return first, n, nil
}

// chunkCRC is pebble's masked CRC-32C of a chunk's type, log number and
// payload (internal/crc in pebble).
func chunkCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b)
	return (c>>15 | c<<17) + 0xa282ead8
}

// walNum returns the log number of a write-ahead log file name
// ("000002.log" is 2).
func walNum(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 10, 64)
	return n, err == nil
}

// ErrDamagedWAL means a write-ahead log is damaged somewhere other than at
// the torn tail a crash leaves: valid records follow an invalid one, or a
// log ends before the end the last clean shutdown recorded. Errors that
// match it match ErrCorrupt too. Options.Repair opens such a folder anyway.
var ErrDamagedWAL = errors.New("write-ahead log damaged")

// walDamageError names the damaged log, the offset where replay stops and
// why that is damage. It matches ErrDamagedWAL and ErrCorrupt.
type walDamageError struct {
	file   string
	offset int64
	why    string
}

func (e *walDamageError) Error() string {
	return fmt.Sprintf("write-ahead log %s damaged at offset %d (%s): %s", e.file, e.offset, e.why, ErrCorrupt)
}

func (e *walDamageError) Is(target error) bool {
	return target == ErrDamagedWAL || target == ErrCorrupt
}

// shutdownFile is the clean-shutdown marker: Close writes it after pebble
// closed, listing every write-ahead log and the offset where its records
// end; Open removes it before pebble opens read-write.
const (
	shutdownFile  = "CLEAN-SHUTDOWN"
	shutdownTemp  = "CLEAN-SHUTDOWN.tmp"
	shutdownMagic = "propolis-clean-shutdown 1"
)

// writeShutdown scans every write-ahead log in dir and records where its
// records end in the clean-shutdown marker (temp file, fsync, rename,
// fsync of the folder). Close calls it after pebble closed the logs.
func writeShutdown(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", shutdownFile, err)
	}
	var b strings.Builder
	b.WriteString(shutdownMagic + "\n")
	for _, e := range ents {
		num, ok := walNum(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		scan, err := scanWAL(filepath.Join(dir, e.Name()), num)
		if err != nil {
			return fmt.Errorf("write %s: %w", shutdownFile, err)
		}
		fmt.Fprintf(&b, "%s %d\n", e.Name(), scan.end)
	}
	if err := writeAtomic(dir, shutdownFile, shutdownTemp, b.String()); err != nil {
		return fmt.Errorf("write %s: %w", shutdownFile, err)
	}
	return nil
}

// readShutdown returns the log ends the clean-shutdown marker records,
// nil with a nil error when there is no marker, and an error wrapping
// ErrCorrupt when it cannot be read or parsed.
func readShutdown(dir string) (map[string]int64, error) {
	raw, err := os.ReadFile(filepath.Join(dir, shutdownFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %w", shutdownFile, ErrCorrupt, err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if lines[0] != shutdownMagic {
		return nil, fmt.Errorf("read %s: first line %q is not %q: %w", shutdownFile, lines[0], shutdownMagic, ErrCorrupt)
	}
	ends := map[string]int64{}
	for i, l := range lines[1:] {
		name, end, ok := strings.Cut(l, " ")
		n, err := strconv.ParseInt(end, 10, 64)
		if _, isLog := walNum(name); !ok || !isLog || err != nil || n < 0 {
			return nil, fmt.Errorf("read %s: line %d: %q is not \"NNNNNN.log OFFSET\": %w", shutdownFile, i+2, l, ErrCorrupt)
		}
		ends[name] = n
	}
	return ends, nil
}

// removeShutdown removes the clean-shutdown marker, if any, and fsyncs
// dir. Open calls it after its checks and before pebble opens read-write,
// which appends to the logs.
func removeShutdown(dir string) error {
	err := os.Remove(filepath.Join(dir, shutdownFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", shutdownFile, err)
	}
	return fsutil.SyncDir(dir)
}

// walDamage is one problem checkWAL found, with what a repair drops.
type walDamage struct {
	err  *walDamageError
	lost int // valid records after the damage
}

// checkWAL compares the write-ahead logs pebble replayed in the read-only
// validation (replays) with what a scan of each finds and with the
// clean-shutdown marker. It returns the damage it finds, and logs at Warn
// a torn tail after a crash, which pebble drops as it always has. An
// unreadable marker is an error, unless repair is set: then it is logged
// and the logs are checked as after a crash.
func checkWAL(dir string, replays []walReplay, repair bool, log *slog.Logger) ([]walDamage, error) {
	ends, err := readShutdown(dir)
	if err != nil && !repair {
		return nil, err
	}
	if err != nil {
		log.Warn("data folder: ignoring an unreadable clean-shutdown marker", "dir", dir, "err", err)
	}
	minNum := uint64(1<<64 - 1)
	for _, r := range replays {
		name := filepath.Base(r.path)
		num, _ := walNum(name)
		minNum = min(minNum, num)
		if _, listed := ends[name]; ends != nil && !listed {
			// Pebble creates a new log at every read-write open, so another
			// build opened the folder after the clean shutdown.
			log.Warn("data folder: clean-shutdown marker does not list a write-ahead log, checking as after a crash",
				"dir", dir, "file", name)
			ends = nil
		}
	}
	var found []walDamage
	for _, r := range replays {
		name := filepath.Base(r.path)
		num, _ := walNum(name)
		scan, err := scanWAL(filepath.Join(dir, name), num)
		if err != nil {
			return nil, err
		}
		end := min(scan.end, r.offset)
		want, clean := ends[name]
		switch {
		case scan.after >= 0:
			found = append(found, walDamage{lost: scan.lost, err: &walDamageError{file: name, offset: end,
				why: fmt.Sprintf("%d valid records follow from offset %d", scan.lost, scan.after)}})
		case clean && end < want:
			found = append(found, walDamage{err: &walDamageError{file: name, offset: end,
				why: fmt.Sprintf("the clean shutdown left records up to offset %d", want)}})
		case !clean && scan.torn:
			// What is dropped: the one record the crash interrupted, from
			// end on (nothing readable follows it: scan.after < 0). The
			// file's size says nothing (logs are preallocated).
			log.Warn("data folder: write-ahead log ends in a torn record after a crash; dropped the interrupted record, replaying the rest",
				"dir", dir, "file", name, "dropped_from_offset", end, "dropped_records", 1,
				"replayed_records", scan.records, "replayed_keys", r.keys)
		}
	}
	// A listed log is needed when pebble replays an older one, and the
	// newest is always the current log. Older ones may be obsolete logs
	// kept for recycling, so their absence proves nothing.
	names := slices.Sorted(maps.Keys(ends))
	for i, name := range names {
		num, _ := walNum(name)
		if (num > minNum || i == len(names)-1) && !exists(filepath.Join(dir, name)) {
			found = append(found, walDamage{err: &walDamageError{file: name, offset: 0,
				why: fmt.Sprintf("the file is missing; the clean shutdown left records up to offset %d", ends[name])}})
		}
	}
	return found, nil
}

// copyAside copies the store's files in dir (its top-level regular files
// but LOCK; not the subfolders, such as migration backups or the extension
// compile cache) into a new sibling folder <dir>.damaged-<UTC time>, fsyncs
// it and returns its path. Open calls it before a repair.
func copyAside(dir string) (string, error) {
	base := dir + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
	dst := base
	for i := 2; exists(dst); i++ {
		dst = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return "", fmt.Errorf("copy data folder aside: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("copy data folder aside: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == pebbleLockFile {
			continue
		}
		if err := copyFile(filepath.Join(dir, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return "", fmt.Errorf("copy data folder aside to %s: %w", dst, err)
		}
	}
	if err := fsutil.SyncDir(dst); err != nil {
		return "", fmt.Errorf("copy data folder aside: %w", err)
	}
	if err := fsutil.SyncDir(filepath.Dir(dst)); err != nil {
		return "", fmt.Errorf("copy data folder aside: %w", err)
	}
	return dst, nil
}
