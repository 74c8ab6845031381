package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

// This file compiles modules through the on-disk compilation cache
// (Options.CacheDir), repairs a damaged cache entry, fills the cache from
// the compilation cache shipped in the extensions folder (ShippedCache),
// and removes what no extension folder needs any more (pruneCache).
//
// wazero names a cache entry by a hash of its own (of the module, the CPU's
// features and wazero's version) and never removes one, so a cache shared
// by every module only grows: each new version of a Go extension adds
// 10-26 MB of compiled code. Each module therefore gets a wazero cache of
// its own, in a folder named by the module's SHA-256 (moduleCacheName);
// the folders of modules that no extension folder holds, and no running
// extension was loaded from, are removed after every scan that changed
// something, so the cache holds about one entry per extension folder.
// Only a host that is the cache's one user prunes it (Options.PruneCache:
// the broker's data folder): hosts sharing a cache (the conformance kit's
// --cache, tests) would remove each other's folders, even one that another
// host is compiling into.

// moduleCachePrefix starts the name of every module's cache folder.
const moduleCachePrefix = "module-"

// moduleCacheName is the name of the cache folder of the module whose
// SHA-256 is sum.
func moduleCacheName(sum [32]byte) string {
	return moduleCachePrefix + hex.EncodeToString(sum[:])
}

// cacheFor returns the compilation cache to compile extension id's module,
// whose SHA-256 is sum, with: the host's in-memory one without CacheDir
// (shared), else the module's own folder under CacheDir (dir). owned: the
// caller closes the cache once the runtime compiled with it is closed.
//
// A folder that cannot be made (a full disk, a read-only data folder) does
// not keep the extension from loading: it is compiled into a cache in
// memory of its own (dir ""), with a warning, and compiled again at the
// next start. A security extension that failed here would leave every
// CONNECT refused.
func (h *Host) cacheFor(sum [32]byte, id string) (cache wazero.CompilationCache, dir string, owned bool) {
	if h.opts.CacheDir == "" {
		return h.cache, "", false
	}
	dir = filepath.Join(h.opts.CacheDir, moduleCacheName(sum))
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		h.log.Warn("compilation cache not usable; the module is compiled in memory, and again at the next start",
			"extension", id, "dir", dir, "error", err)
		return wazero.NewCompilationCache(), "", true
	}
	return cache, dir, true
}

// cacheWriteFailed reports whether err, from CompileModule, is wazero
// failing to save the compiled code in its file cache (a file-system
// error: a full disk, a read-only folder) rather than failing to compile:
// wazero has then compiled the module and kept it in memory already.
func cacheWriteFailed(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le)
}

// pruneCache removes from CacheDir the cache folders of modules not in
// keep (the modules the extension folders hold and the running extensions
// were loaded from; pruneModuleCaches), logging what it could not remove:
// it is tried again at the next prune. Only with Options.PruneCache: a
// cache other hosts share is left as it is.
func (h *Host) pruneCache(keep map[[32]byte]bool) {
	if h.opts.CacheDir == "" || !h.opts.PruneCache {
		return
	}
	removed, err := pruneModuleCaches(h.opts.CacheDir, keep)
	for _, dir := range removed {
		h.log.Debug("compilation cache: removed the folder of a module no extension uses", "dir", dir)
	}
	if err != nil {
		h.log.Warn("compilation cache: cannot remove what no extension uses", "dir", h.opts.CacheDir, "error", err)
	}
}

// pruneModuleCaches removes from dir the cache folders of modules not in
// keep, and the folders of the layout before one folder per module
// (wazero's own "wazero-VERSION-ARCH-OS" at the top: their entries cannot
// be told apart, so those modules are compiled once more, into their own
// folder). Anything else in dir is left alone. It returns the folders
// removed.
func pruneModuleCaches(dir string, keep map[[32]byte]bool) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for sum := range keep {
		names[moduleCacheName(sum)] = true
	}
	var removed []string
	var errs []error
	for _, d := range ents {
		name := d.Name()
		stale := strings.HasPrefix(name, moduleCachePrefix) && !names[name] || strings.HasPrefix(name, "wazero-")
		if !d.IsDir() || !stale {
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// ShippedCache is the folder, inside the extensions folder, holding a
// compilation cache made ahead of time by Precompile (`propolis extensions
// compile`, which `make build` runs for the bundled extensions). LoadAll
// copies its entries into the data folder's cache before compiling, so a
// fresh data folder does not wait for the compiler. wazero names each entry
// by the module's hash, the guard setting, the CPU's features and wazero's
// version (a folder per version, architecture and OS), and checks the
// version and a checksum when it reads one: an entry made elsewhere is never
// used, and a damaged one is recompiled (compile).
const ShippedCache = ".compiled"

// compileCtx lets wazero compile a module's functions on every CPU: a cold
// start then waits for the compiler about 1/GOMAXPROCS as long.
func compileCtx(ctx context.Context) context.Context {
	return experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
}

// cacheErrorPrefix starts every error wazero returns for an unreadable
// entry of its compilation cache (checksum mismatch, short read, bad
// magic), which it reports instead of compiling again.
const cacheErrorPrefix = "compilationcache:"

// compile compiles bin in rt, whose configuration uses the module's
// compilation cache in cacheDir ("": in memory). A damaged cache entry
// would fail every load of the module for good (wazero returns the error
// and never replaces the entry): the entry is discarded and replaced by a
// fresh compilation (replaceCacheEntry), a warning names the extension,
// and the compilation is tried once more. A cache entry that cannot be
// written (a full disk) fails wazero's CompileModule too, after it kept
// the compiled module in memory: the module is then taken from there,
// with a warning, and not saved. Called on the compiling goroutine
// (compileAt), with ctx carrying the number of compilation workers; the
// repair costs one extra compilation.
func (h *Host) compile(ctx context.Context, rt wazero.Runtime, closeOnDone bool, bin []byte, id, cacheDir string) (wazero.CompiledModule, error) {
	c, err := rt.CompileModule(ctx, bin)
	if err != nil && cacheDir != "" && cacheWriteFailed(err) {
		// wazero compiled the module and kept it in memory before it
		// failed to write the file: asked again, it answers from memory.
		if c, rerr := rt.CompileModule(ctx, bin); rerr == nil {
			h.log.Warn("compiled code not saved in the compilation cache; the module is compiled again at the next start",
				"extension", id, "dir", cacheDir, "error", err)
			return c, nil
		}
	}
	if err == nil || cacheDir == "" || !strings.Contains(err.Error(), cacheErrorPrefix) {
		return c, err
	}
	entry, rerr := replaceCacheEntry(ctx, cacheDir, closeOnDone, bin)
	if rerr != nil {
		return nil, fmt.Errorf("%w; discard damaged cache entry: %w", err, rerr)
	}
	h.log.Warn("compilation cache entry damaged; discarded and recompiled", "extension", id, "entry", entry, "error", err)
	return rt.CompileModule(ctx, bin)
}

// replaceCacheEntry compiles bin into an empty cache in a temporary folder
// under cacheDir (the module's cache folder), with the runtime settings
// that make up wazero's cache key (wazero's termination guard; the key is
// otherwise the module's hash, the CPU and wazero's version), and moves the
// one entry written there over the entry of the same name in cacheDir:
// wazero's key derivation stays wazero's. It returns the replaced entry's
// path.
func replaceCacheEntry(ctx context.Context, cacheDir string, closeOnDone bool, bin []byte) (string, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".rebuild-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cache, err := wazero.NewCompilationCacheWithDir(tmp)
	if err != nil {
		return "", err
	}
	rt := wazero.NewRuntimeWithConfig(ctx, runtimeConfig().WithCloseOnContextDone(closeOnDone).WithCompilationCache(cache))
	_, err = rt.CompileModule(ctx, bin) // ctx carries compile's workers
	_ = rt.Close(ctx)
	_ = cache.Close(ctx)
	if err != nil {
		return "", fmt.Errorf("recompile: %w", err)
	}
	var fresh []string
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fresh = append(fresh, p)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	if len(fresh) != 1 {
		return "", errors.New("recompile: wazero wrote no single cache entry")
	}
	rel, err := filepath.Rel(tmp, fresh[0])
	if err != nil {
		return "", err
	}
	entry := filepath.Join(cacheDir, rel)
	if err := os.MkdirAll(filepath.Dir(entry), 0o700); err != nil {
		return "", err
	}
	if err := os.Rename(fresh[0], entry); err != nil {
		return "", err
	}
	return entry, nil
}

// seedCache copies the entries of the shipped cache (ShippedCache in the
// extensions folder) that the data folder's cache lacks: those in a
// module's folder (moduleCacheName); a shipped cache of the layout before
// (wazero's folders at the top, from an older `propolis extensions
// compile`) is not used, and its modules are compiled. Each entry is
// written aside and renamed into place, so a crash never leaves half an
// entry. A problem is logged and ends the copy: the modules are then
// compiled, as without a shipped cache. Called by LoadAll before the first
// scan; the next prune removes what no extension folder needs.
func (h *Host) seedCache() {
	src := filepath.Join(h.opts.Dir, ShippedCache)
	if h.opts.CacheDir == "" {
		return
	}
	if _, err := os.Stat(src); err != nil {
		return // nothing shipped
	}
	copied, old := 0, 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(rel, moduleCachePrefix) || !strings.ContainsRune(rel, filepath.Separator) {
			old++
			return nil
		}
		dst := filepath.Join(h.opts.CacheDir, rel)
		if _, err := os.Stat(dst); err == nil {
			return nil // the data folder's own entry wins
		}
		if err := copyEntry(p, dst); err != nil {
			return err
		}
		copied++
		return nil
	})
	if err != nil {
		h.log.Warn("shipped compilation cache not used; extensions are compiled", "dir", src, "copied", copied, "error", err)
		return
	}
	if copied > 0 {
		h.log.Info("compilation cache filled from the shipped one", "dir", src, "entries", copied)
	}
	if old > 0 {
		h.log.Info("shipped compilation cache holds entries of an older layout, not used; run `propolis extensions compile` again to ship them", "dir", src, "entries", old)
	}
}

// copyEntry copies the regular file src to dst (at most maxModule*4
// bytes: compiled code is a few times the module) through a temporary file
// in dst's folder. On the same file system it links dst to src instead:
// no 10-26 MB written per Go module at a fresh start. The link is safe to
// share: neither wazero nor this host writes into an entry, they replace
// it (a new file renamed over it), so a later `extensions compile` or a
// repair of either cache never changes the other's.
func copyEntry(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if info, err := os.Stat(src); err == nil && info.Mode().IsRegular() && info.Size() <= 4*maxModule {
		link := filepath.Join(filepath.Dir(dst), ".seed-link-"+filepath.Base(dst))
		_ = os.Remove(link) // left by a crash
		if os.Link(src, link) == nil {
			if err := os.Rename(link, dst); err != nil {
				_ = os.Remove(link)
				return err
			}
			return nil
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".seed-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing left to remove
	n, err := io.Copy(tmp, io.LimitReader(in, 4*maxModule+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > 4*maxModule {
		err = fmt.Errorf("%s: more than %d bytes", src, 4*maxModule)
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// Precompile compiles the module of every extension folder in dir (DISABLED
// ones included: enabling one later should not wait either) into the
// compilation cache in cacheDir, as the host would at load, so that a host
// started with that cache in place (ShippedCache, or its own CacheDir)
// skips the compiler. cacheDir is the folder's own: the entries of modules
// not compiled now (an earlier version's) are removed from it. It returns
// the ids compiled; a folder whose manifest or module is unusable is an
// error naming it, as the host would report it.
func Precompile(ctx context.Context, dir, cacheDir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read extensions folder: %w", err)
	}
	compile := func(rt wazero.Runtime, _ bool, bin []byte) (wazero.CompiledModule, error) {
		return rt.CompileModule(compileCtx(ctx), bin)
	}
	var ids []string
	var errs []error
	compiled := map[[32]byte]bool{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		folder := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(folder, ManifestFile)); err != nil {
			continue // not an extension folder (the shipped cache itself, for one)
		}
		m, err := LoadManifest(folder)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bin, err := readRegular(filepath.Join(folder, m.Module), maxModule, os.ReadFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("extension %q: read module: %w", m.ID, err))
			continue
		}
		// As loadExtension compiles it, into the module's own folder (the
		// memory limit is not part of wazero's cache key).
		sum := sha256.Sum256(bin)
		mdir := filepath.Join(cacheDir, moduleCacheName(sum))
		cache, err := wazero.NewCompilationCacheWithDir(mdir)
		if err != nil {
			return ids, errors.Join(append(errs, fmt.Errorf("compilation cache %s: %w", mdir, err))...)
		}
		c, err := compileModule(ctx, runtimeConfig().WithCompilationCache(cache), bin, !testUnguarded, compile)
		if err != nil {
			_ = cache.Close(ctx)
			errs = append(errs, fmt.Errorf("extension %q: compile %s: %w%s", m.ID, m.Module, err, featureHint(err)))
			continue
		}
		_ = c.compiled.Close(ctx)
		_ = c.rt.Close(ctx)
		_ = cache.Close(ctx)
		ids = append(ids, m.ID)
		compiled[sum] = true
	}
	// The cache is the folder's: what an earlier run compiled for modules
	// the folder no longer holds goes.
	if _, err := pruneModuleCaches(cacheDir, compiled); err != nil {
		errs = append(errs, fmt.Errorf("compilation cache %s: %w", cacheDir, err))
	}
	return ids, errors.Join(errs...)
}
