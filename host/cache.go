package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tetratelabs/wazero"
)

// This file compiles modules through the on-disk compilation cache
// (Options.CacheDir) and repairs a damaged cache entry.

// cacheErrorPrefix starts every error wazero returns for an unreadable
// entry of its compilation cache (checksum mismatch, short read, bad
// magic), which it reports instead of compiling again.
const cacheErrorPrefix = "compilationcache:"

// compile compiles bin in rt, whose configuration uses the host's
// compilation cache. A damaged cache entry would fail every load of the
// module for good (wazero returns the error and never replaces the entry):
// the entry is discarded and replaced by a fresh compilation
// (replaceCacheEntry), a warning names the extension, and the compilation
// is tried once more. Called on the loading goroutine; the repair costs
// one extra compilation.
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
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(closeOnDone).WithCompilationCache(cache))
	_, err = rt.CompileModule(ctx, bin)
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
