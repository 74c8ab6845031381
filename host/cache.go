package host

import (
	"context"
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
// (Options.CacheDir), repairs a damaged cache entry, and fills the cache
// from the compilation cache shipped in the extensions folder
// (ShippedCache).

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

// compile compiles bin in rt, whose configuration uses the host's
// compilation cache. A damaged cache entry would fail every load of the
// module for good (wazero returns the error and never replaces the entry):
// the entry is discarded and replaced by a fresh compilation
// (replaceCacheEntry), a warning names the extension, and the compilation
// is tried once more. Called on the compiling goroutine (compileAt), with
// ctx carrying the number of compilation workers; the repair costs one
// extra compilation.
func (h *Host) compile(ctx context.Context, rt wazero.Runtime, closeOnDone bool, bin []byte, id string) (wazero.CompiledModule, error) {
	c, err := rt.CompileModule(ctx, bin)
	if err == nil || h.opts.CacheDir == "" || !strings.Contains(err.Error(), cacheErrorPrefix) {
		return c, err
	}
	entry, rerr := h.replaceCacheEntry(ctx, closeOnDone, bin)
	if rerr != nil {
		return nil, fmt.Errorf("%w; discard damaged cache entry: %w", err, rerr)
	}
	h.log.Warn("compilation cache entry damaged; discarded and recompiled", "extension", id, "entry", entry, "error", err)
	return rt.CompileModule(ctx, bin)
}

// replaceCacheEntry compiles bin into an empty cache in a temporary folder
// under CacheDir, with the runtime settings that make up wazero's cache key
// (wazero's termination guard; the key is otherwise the module's hash, the CPU
// and wazero's version), and moves the one entry written there over the
// entry of the same name in CacheDir: wazero's key derivation stays
// wazero's. It returns the replaced entry's path.
func (h *Host) replaceCacheEntry(ctx context.Context, closeOnDone bool, bin []byte) (string, error) {
	tmp, err := os.MkdirTemp(h.opts.CacheDir, ".rebuild-")
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
	entry := filepath.Join(h.opts.CacheDir, rel)
	if err := os.Rename(fresh[0], entry); err != nil {
		return "", err
	}
	return entry, nil
}

// seedCache copies the entries of the shipped cache (ShippedCache in the
// extensions folder) that the data folder's cache lacks. Each is written
// aside and renamed into place, so a crash never leaves half an entry. A
// problem is logged and ends the copy: the modules are then compiled, as
// without a shipped cache. Called by LoadAll before the first scan.
func (h *Host) seedCache() {
	src := filepath.Join(h.opts.Dir, ShippedCache)
	if h.opts.CacheDir == "" {
		return
	}
	if _, err := os.Stat(src); err != nil {
		return // nothing shipped
	}
	copied := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
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
}

// copyEntry copies the regular file src to dst (at most maxModule*4
// bytes: compiled code is a few times the module) through a temporary file
// in dst's folder.
func copyEntry(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
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
// skips the compiler. It returns the ids compiled; a folder whose manifest
// or module is unusable is an error naming it, as the host would report it.
func Precompile(ctx context.Context, dir, cacheDir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read extensions folder: %w", err)
	}
	cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("compilation cache %s: %w", cacheDir, err)
	}
	defer cache.Close(ctx)
	rc := runtimeConfig().WithCompilationCache(cache)
	compile := func(rt wazero.Runtime, _ bool, bin []byte) (wazero.CompiledModule, error) {
		return rt.CompileModule(compileCtx(ctx), bin)
	}
	var ids []string
	var errs []error
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
		// As loadExtension compiles it (the memory limit is not part of
		// wazero's cache key).
		c, err := compileModule(ctx, rc, bin, !testUnguarded, compile)
		if err != nil {
			errs = append(errs, fmt.Errorf("extension %q: compile %s: %w%s", m.ID, m.Module, err, featureHint(err)))
			continue
		}
		_ = c.compiled.Close(ctx)
		_ = c.rt.Close(ctx)
		ids = append(ids, m.ID)
	}
	return ids, errors.Join(errs...)
}
