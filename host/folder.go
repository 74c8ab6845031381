package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// WatchInterval is how often Watch looks at the extensions folder. A change
// is acted on once two looks agree (a file still being copied is not
// loaded half-written), so it takes effect within two intervals plus the
// load time: well under two seconds.
const WatchInterval = 400 * time.Millisecond

// fingerprint is what the scanner compares to notice a change in an
// extension folder.
type fingerprint struct {
	exists   bool
	disabled bool
	manifest [32]byte // sha256 of the manifest file
	module   [32]byte // sha256 of the module file named by the manifest
	modStamp string   // size and modification time, to avoid re-hashing
}

// folderState is the scanner's memory of one folder.
type folderState struct {
	applied fingerprint // what the host last acted on
	seen    fingerprint // the latest look
}

// Watch keeps the host in step with the extensions folder until Close:
// a new folder is loaded, a DISABLED file stops its extension and its
// removal starts it again, a changed manifest or module reloads it (the old
// version keeps serving until the new one has started), a removed folder
// stops it. It also rewrites the status file every statusRefresh while
// the counters in it move.
func (h *Host) Watch() {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(WatchInterval)
		defer t.Stop()
		refreshed := time.Now()
		for {
			select {
			case <-h.done:
				return
			case <-t.C:
				h.scan(context.Background(), false)
			}
			if time.Since(refreshed) >= h.statusEvery {
				refreshed = time.Now()
				h.refreshStatusFile()
			}
		}
	}()
}

// scan looks at every folder once. On the initial scan everything found is
// applied at once, in start-priority order; later scans apply a change once
// it is stable.
func (h *Host) scan(ctx context.Context, initial bool) {
	h.scanMu.Lock()
	defer h.scanMu.Unlock()
	select {
	case <-h.done: // Close has begun: load nothing it would not stop
		return
	default:
	}
	names := map[string]bool{}
	ents, err := h.readDir(h.opts.Dir)
	if err != nil && !initial {
		// Unreadable is not empty: out of file descriptors (EMFILE), the
		// folder would look as if every extension had been removed. Keep
		// what runs and look again at the next scan.
		h.scanFailed(err)
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(h.opts.Dir, e.Name(), ManifestFile)); err == nil {
				names[e.Name()] = true
			}
		}
	}
	for name := range h.folders {
		names[name] = true
	}

	type change struct {
		name string
		fp   fingerprint
		prio int
	}
	var changes []change
	failed := false
	for name := range names {
		st := h.folders[name]
		if st == nil {
			st = &folderState{}
			h.folders[name] = st
		}
		fp, err := h.fingerprintOf(name, st.seen)
		if err != nil && !initial {
			// Unknown is not changed: this folder waits for a scan
			// that can read it; the others go on.
			h.scanFailed(err)
			failed = true
			continue
		}
		if !initial && fp != st.seen {
			st.seen = fp // changed since the last look: wait for it to settle
			continue
		}
		st.seen = fp
		if fp == st.applied && !initial {
			continue
		}
		changes = append(changes, change{name, fp, h.startPriority(name)})
	}
	if h.scanFailing && !failed {
		h.scanFailing = false
		h.log.Info("the extensions folder is readable again", "dir", h.opts.Dir)
	}
	sort.SliceStable(changes, func(i, j int) bool {
		if changes[i].prio != changes[j].prio {
			return changes[i].prio > changes[j].prio
		}
		return changes[i].name < changes[j].name
	})
	h.mu.Lock()
	serving := h.serving()
	h.mu.Unlock()
	if !initial && serving {
		// The broker serves: compile at low priority. While no security
		// extension serves, every CONNECT is refused until this load
		// ends: full speed then, as at start-up.
		ctx = inBackground(ctx)
	}
	for _, c := range changes {
		select {
		case <-h.done: // closing: the changes left are not applied
			return
		default:
		}
		h.apply(ctx, c.name, c.fp)
		if st := h.folders[c.name]; st != nil {
			st.applied = c.fp
			if !c.fp.exists {
				delete(h.folders, c.name)
			}
		}
	}
	if (initial || len(changes) > 0) && err == nil && !failed {
		h.pruneCache(h.modulesInUse())
	}
}

// modulesInUse returns the SHA-256 of every module an extension folder
// holds (as the scanner last saw and applied it) or a running extension
// was loaded from: the compilation cache folders to keep. Called by scan.
func (h *Host) modulesInUse() map[[32]byte]bool {
	keep := map[[32]byte]bool{}
	for _, st := range h.folders {
		keep[st.seen.module], keep[st.applied.module] = true, true
	}
	h.mu.Lock()
	for _, e := range h.exts {
		keep[e.module] = true
	}
	h.mu.Unlock()
	return keep
}

// scanFailed logs, once until a scan reads everything again, that a scan
// could not read the folder (it then applies nothing) or one extension's
// files (that folder is left as it is).
func (h *Host) scanFailed(err error) {
	if h.scanFailing {
		return
	}
	h.scanFailing = true
	h.log.Warn("cannot read the extensions folder: every extension keeps running as it is; looking again at the next scan",
		"dir", h.opts.Dir, "err", err)
}

// apply brings one folder's extension in line with its files.
func (h *Host) apply(ctx context.Context, name string, fp fingerprint) {
	dir := filepath.Join(h.opts.Dir, name)
	switch {
	case !fp.exists:
		if e := h.stopFolder(name, "removed"); e != nil {
			e.log.Info("extension removed")
		}
		h.setStatus(name, nil)
	case fp.disabled:
		e := h.stopFolder(name, "disabled")
		st := &Status{ID: name, State: StateDisabled, Reason: DisabledFile + " file present"}
		if m, err := LoadManifest(dir); err == nil {
			st.Version, st.Priority, st.StartPriority = m.Version, m.Priority, m.StartPriority
		}
		h.setStatus(name, st)
		if e != nil {
			e.log.Info("extension disabled")
		} else {
			h.log.Info("extension disabled", "extension", name)
		}
	default:
		m, err := h.checkFolder(dir)
		if err == nil {
			err = h.start(ctx, dir, m)
		}
		if err == nil {
			return
		}
		h.mu.Lock()
		running := h.exts[name]
		h.mu.Unlock()
		if running != nil && !running.stopped.Load() {
			// The old version keeps serving; say why the new one did not.
			st := running.status(StateRunning, "reload failed: "+err.Error())
			h.setStatus(name, st)
			h.log.Error("extension reload failed; previous version keeps running", "extension", name,
				"version", running.manifest.Version, "error", err)
			return
		}
		h.setFailed(name, m, err)
	}
}

// checkFolder validates a folder's manifest, including that its id is
// not already taken by another folder.
func (h *Host) checkFolder(dir string) (*Manifest, error) {
	m, err := LoadManifest(dir)
	if err == nil {
		return m, nil
	}
	// Name the folder that owns the id, which is more useful than "differs".
	if raw, _ := peekManifest(filepath.Join(dir, ManifestFile)); raw != "" && raw != filepath.Base(dir) {
		if _, serr := os.Stat(filepath.Join(h.opts.Dir, raw, ManifestFile)); serr == nil {
			return nil, fmt.Errorf("%w: %s: duplicate id %q: already used by folder %s", ErrManifest,
				filepath.Join(dir, ManifestFile), raw, filepath.Join(h.opts.Dir, raw))
		}
	}
	return nil, err
}

// startPriority reads a folder's start-priority for ordering (0 when the
// manifest does not parse; its error surfaces when applied).
func (h *Host) startPriority(name string) int {
	m, err := LoadManifest(filepath.Join(h.opts.Dir, name))
	if err != nil {
		return 0
	}
	return m.StartPriority
}

// fingerprintOf looks at a folder. prev lets it skip re-hashing a module
// whose size and modification time did not change. An error is a manifest
// or module that exists but could not be read (out of file descriptors,
// an I/O error): what the folder holds is then unknown, not changed. A
// missing manifest, or one that is not a small regular file, is a folder
// without an extension.
func (h *Host) fingerprintOf(name string, prev fingerprint) (fingerprint, error) {
	dir := filepath.Join(h.opts.Dir, name)
	manifest, err := readRegular(filepath.Join(dir, ManifestFile), maxManifest, h.readFile)
	var pe *os.PathError
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || !errors.As(err, &pe):
		return fingerprint{}, nil
	default:
		return fingerprint{}, err
	}
	fp := fingerprint{exists: true, manifest: sha256.Sum256(manifest)}
	if _, err := os.Stat(filepath.Join(dir, DisabledFile)); err == nil {
		fp.disabled = true
	}
	_, module := peekManifestData(manifest)
	if module == "" {
		return fp, nil
	}
	path := filepath.Join(dir, filepath.Clean("/" + module)[1:])
	info, err := os.Stat(path)
	if err != nil || !info.Mode().IsRegular() {
		fp.modStamp = "missing or not a regular file"
		return fp, nil
	}
	fp.modStamp = fmt.Sprintf("%d/%d", info.Size(), info.ModTime().UnixNano())
	if fp.modStamp == prev.modStamp && prev.exists {
		fp.module = prev.module
		return fp, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fp, err
	}
	hash := sha256.New()
	_, err = io.Copy(hash, f)
	f.Close()
	if err != nil {
		return fp, err
	}
	copy(fp.module[:], hash.Sum(nil))
	return fp, nil
}

// Size limits for what the scanner reads.
const (
	maxManifest = 1 << 20
	maxModule   = 256 << 20
)

// readRegular reads a regular file of at most limit bytes (a FIFO or a
// device dropped in as a manifest must not hang the scanner).
func readRegular(path string, limit int64, readFile func(string) ([]byte, error)) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", path, info.Size(), limit)
	}
	return readFile(path)
}
