package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/passwd"
	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// folder is where the broker mounts the extension's folder, read-only,
// for a manifest saying "files: read" (abi/MANIFEST.md, "files"). Tests
// point it at a temporary folder.
var folder = "/extension"

// maxFile is the largest user or rule file read, in bytes.
const maxFile = 16 << 20

// chunk is the largest value the storage service takes (1 MiB): a saved
// good version is split into chunks of at most this size.
const chunk = 1 << 20

// version is one file as last read.
type version struct {
	data []byte
	sum  [32]byte
	err  error // why it could not be read (data is nil then)
}

// stamp is what tells a file changed without reading it: its
// modification time and size, and (in Wasm) its inode and change time,
// so that a file renamed over it (what editors and propolis passwd do)
// counts as a change even within the clock's resolution.
type stamp struct {
	mod        time.Time
	size       int64
	ino, ctime uint64
	ok         bool
}

// tracked is one of the extension's files (users or rules): where it is,
// how it parses, and what this instance last saw of it.
type tracked struct {
	// name is the file's name in the folder, as configured.
	name string
	// parse parses a version (name prefixes its problems) and describes
	// the result for the log.
	parse func(name string, data []byte) (value any, summary string, err error)
	// value is the parsed version in use, nil before a good one.
	value any
	// seen is the stamp of the version last read; good the checksum of
	// the version in use, bad the checksum of the last version refused
	// (not parsed again until it changes).
	seen      stamp
	good, bad [32]byte
	// problem is why the last version read was refused.
	problem error
	// reportAnyway reports a refused version even if the extension
	// reported it before (the first instance of a load).
	reportAnyway bool
	// pending is a changed version not settled yet (settled).
	pending pending
	// guard, if set, refuses a version given the one in use (nil before
	// any) before it is parsed.
	guard func(inUse any, data []byte) error
}

// update reads the file again when its stamp changed (always when force
// is set: the tick's full read catches an in-place edit that left every
// part of the stamp as it was), and reports whether the version in use
// changed. A version that does not parse is
// refused and reported once with its lines, and the extension's last good
// version, saved in its storage by whichever instance loaded it first, is
// used (an instance that never saw it, or starts after the file went bad,
// takes it from there).
func (t *tracked) update(force bool) bool {
	st := t.statFile()
	if !force && t.value != nil && st.ok && st == t.seen {
		return false
	}
	now := clock()
	if !force && t.value != nil && st.ok && st == t.pending.stamp && now.Sub(st.changed()) < settle && now.Sub(t.pending.since) < settle {
		return false // still settling: not read again
	}
	v := t.read()
	if (t.value != nil && v.sum == t.good) || v.sum == t.bad {
		t.seen = st
		return false // touched, not changed; or refused already
	}
	if t.value != nil && v.err == nil && !t.settled(st, v.sum, now) {
		return false // kept the version in use until this one settles
	}
	t.seen, t.pending = st, pending{}
	err := v.err
	var val any
	var summary string
	changed := false
	if err == nil && t.guard != nil {
		err = t.guard(t.value, v.data)
	}
	if err == nil {
		val, summary, err = t.parse(t.name, v.data)
	}
	if err == nil {
		t.value, t.good, t.bad, t.problem = val, v.sum, [32]byte{}, nil
		if t.save(v) {
			propolis.Infof("loaded %s: %s", t.name, summary)
		}
		return true
	}
	t.bad, t.problem = v.sum, err
	// The last good version is the extension's, not this instance's: one
	// that never saw it (it was busy, or started after it) takes it from
	// storage, so that every instance answers alike.
	kept := "kept the last good version"
	if sv, ok := t.saved(); ok && (t.value == nil || sv.sum != t.good) {
		if val, _, err := t.parse(t.name, sv.data); err == nil {
			t.value, t.good = val, sv.sum
			changed = true
		}
	}
	if t.value == nil {
		kept = "no good version to keep: every client is refused until the file is fixed"
	}
	t.report(v, err, kept)
	return changed
}

// settle is how long a changed file must stay as it is before it
// replaces the version in use (one tick): a file caught half-written (a
// writer that truncates, then writes) changes again within it. clock is
// time.Now (tests move it on).
var (
	settle = 2 * time.Second
	clock  = time.Now
)

// pending is a changed version waiting to settle: its stamp and checksum,
// and when this instance first saw it.
type pending struct {
	stamp stamp
	sum   [32]byte
	since time.Time
}

// changed returns when the file last changed: its modification time, or
// (in Wasm) its change time when later, which a rename sets and no
// writer can set back.
func (s stamp) changed() time.Time {
	if c := time.Unix(0, int64(s.ctime)); s.ctime != 0 && c.After(s.mod) {
		return c
	}
	return s.mod
}

// settled reports whether the changed version (stamp st, checksum sum)
// may replace the one in use: the file last changed settle ago or more,
// or this instance has seen it as it is for settle (a modification time
// in the future). Otherwise it is remembered as pending.
func (t *tracked) settled(st stamp, sum [32]byte, now time.Time) bool {
	if st.ok && now.Sub(st.changed()) >= settle {
		return true
	}
	if t.pending.stamp == st && t.pending.sum == sum {
		return now.Sub(t.pending.since) >= settle
	}
	t.pending = pending{stamp: st, sum: sum, since: now}
	return false
}

// statFile returns the file's stamp; ok is false when it cannot be stat'ed.
func (t *tracked) statFile() stamp {
	fi, err := os.Stat(path.Join(folder, t.name))
	if err != nil {
		return stamp{}
	}
	ino, ctime := fileID(fi)
	return stamp{mod: fi.ModTime(), size: fi.Size(), ino: ino, ctime: ctime, ok: true}
}

// read reads the whole file, at most maxFile bytes.
func (t *tracked) read() version {
	f, err := os.Open(path.Join(folder, t.name))
	if err != nil {
		return t.failed(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return t.failed(err)
	}
	if len(data) > maxFile {
		return t.failed(fmt.Errorf("larger than %d MiB", maxFile>>20))
	}
	return version{data: data, sum: sha256.Sum256(data)}
}

// failed is the version of a file that could not be read: its checksum is
// the error's, so one error is reported once.
func (t *tracked) failed(err error) version {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the guest path means nothing to an operator
	}
	err = fmt.Errorf("%s: %w", t.name, err)
	return version{err: err, sum: sha256.Sum256([]byte("error: " + err.Error()))}
}

// The storage keys of a file's last good version: META (its checksum and
// number of chunks, written last) and the chunks; and of the checksum of
// its last reported bad version. The file name comes last, so that no
// name (they may hold "/") makes one key another's.
func metaKey(name string) string         { return "good/" + name }
func chunkKey(name string, i int) string { return "chunk/" + strconv.Itoa(i) + "/" + name }
func reportedKey(name string) string     { return "reported/" + name }
func metaValue(sum [32]byte, n int) []byte {
	return []byte(hex.EncodeToString(sum[:]) + " " + strconv.Itoa(n))
}

// save keeps v as the file's last good version in the extension's storage,
// unless it is there already, and reports whether it wrote it (the one
// instance that does logs the change). Storage errors are logged, not
// fatal: the version is still used, only a later instance starting while
// the file is bad cannot fall back to it.
func (t *tracked) save(v version) bool {
	n := (len(v.data) + chunk - 1) / chunk
	meta := metaValue(v.sum, n)
	if old, err := propolis.StoredValue(metaKey(t.name)); err == nil && string(old) == string(meta) {
		return false
	} else if err != nil && !errors.Is(err, propolis.ErrNotFound) {
		if !errors.Is(err, propolis.ErrNotAvailable) { // native tests
			propolis.Warnf("%s: last good version not saved: %v", t.name, err)
		}
		return true
	}
	for i := range n {
		if err := propolis.PutStoredValue(chunkKey(t.name, i), v.data[i*chunk:min(len(v.data), (i+1)*chunk)]); err != nil {
			propolis.Warnf("%s: last good version not saved: %v", t.name, err)
			return true
		}
	}
	if err := propolis.PutStoredValue(metaKey(t.name), meta); err != nil {
		propolis.Warnf("%s: last good version not saved: %v", t.name, err)
	}
	return true
}

// saved returns the file's last good version from storage, if any and
// intact.
func (t *tracked) saved() (version, bool) {
	meta, err := propolis.StoredValue(metaKey(t.name))
	if err != nil {
		return version{}, false
	}
	sumHex, count, _ := strings.Cut(string(meta), " ")
	n, err := strconv.Atoi(count)
	if err != nil || n < 0 || n > maxFile/chunk+1 {
		return version{}, false
	}
	var data []byte
	for i := range n {
		part, err := propolis.StoredValue(chunkKey(t.name, i))
		if err != nil {
			return version{}, false
		}
		data = append(data, part...)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != sumHex { // two writers interleaved
		return version{}, false
	}
	return version{data: data, sum: sum}, true
}

// report logs a refused version once for all instances (and once more
// from the first instance of each load, reportAnyway): the checksum of
// the last one reported is kept in storage (without storage, each
// instance reports it once).
func (t *tracked) report(v version, err error, kept string) {
	key := reportedKey(t.name)
	if old, gerr := propolis.StoredValue(key); gerr == nil && string(old) == string(v.sum[:]) && !t.reportAnyway {
		return
	}
	propolis.Errorf("%v\n%s", err, kept)
	_ = propolis.PutStoredValue(key, v.sum[:])
}

// files is what one instance knows of the extension's files, and the
// passwords it has verified.
type files struct {
	users, rules tracked
	// useRules is false when the configuration turned the rule file off.
	useRules bool
	cache    verified
	// dummy is what an unknown user's password is checked against
	// (dummyFor of the users in use).
	dummy passwd.Hash
}

// refresh looks at the files (two stat calls, a few microseconds) and
// loads a changed one (tracked.update); force reads them whole. Every
// CONNECT calls it, so that all instances answer from the same versions
// as soon as an edit is complete. The error says which file has no good
// version at all.
func (f *files) refresh(force bool) error {
	if f.users.update(force) || f.dummy.Iterations == 0 {
		f.cache.reset()
		f.dummy = dummyFor(f.userTable())
	}
	if f.useRules {
		f.rules.update(force)
	}
	var errs []error
	if f.users.value == nil {
		errs = append(errs, f.users.problem)
	}
	if f.useRules && f.rules.value == nil {
		errs = append(errs, f.rules.problem)
	}
	return errors.Join(errs...)
}

// ready reports whether every file in use has a good version.
func (f *files) ready() bool {
	return f.users.value != nil && (!f.useRules || f.rules.value != nil)
}

// userTable returns the users in use (nil before a good version).
func (f *files) userTable() map[string]passwd.Entry {
	m, _ := f.users.value.(map[string]passwd.Entry)
	return m
}

// ruleTable returns the rules in use; nil when the rule file is off or
// has no good version.
func (f *files) ruleTable() *acl {
	a, _ := f.rules.value.(*acl)
	return a
}

// guardUsers is the users file's tracked.guard: an empty file (nothing
// but blanks) replaces no version that has users, as it is more likely a
// file cut short (a full disk, a writer that truncated it and died) than
// the removal of every user, which would disconnect every client. A file
// removing every user says so with a line of its own, e.g. "# no users".
func guardUsers(inUse any, data []byte) error {
	users, _ := inUse.(map[string]passwd.Entry)
	if len(users) > 0 && len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("empty file refused while %d users are in use: to remove every user, keep a comment line such as \"# no users\"", len(users))
	}
	return nil
}

// parseUsers is the users file's tracked.parse.
func parseUsers(name string, data []byte) (any, string, error) {
	_, users, err := passwd.ParseFile(name, data)
	if err != nil {
		return nil, "", err
	}
	return users, fmt.Sprintf("%d users", len(users)), nil
}

// parseRules is the rule file's tracked.parse.
func parseRules(name string, data []byte) (any, string, error) {
	a, err := parseACL(name, data)
	if err != nil {
		return nil, "", err
	}
	n := len(a.all.rules)
	for _, s := range a.users {
		n += len(s.rules)
	}
	for _, s := range a.groups {
		n += len(s.rules)
	}
	return a, fmt.Sprintf("%d rules, %d groups", n, len(a.groupLine)), nil
}
