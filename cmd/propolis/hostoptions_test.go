package main

import (
	"path/filepath"
	"testing"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// The broker's host keeps its compilation cache in the data folder, which
// is the broker's alone, and prunes it (host.Options.PruneCache): without
// it each new version of an extension would add its compiled code for good.
func TestHostOptionsPruneTheDataFoldersCache(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.ExtensionsDir = t.TempDir(), t.TempDir()
	opts := hostOptions(cfg)
	if want := filepath.Join(cfg.DataDir, "wasm-cache"); opts.CacheDir != want || !opts.PruneCache {
		t.Fatalf("CacheDir %q, PruneCache %v; want %q, true", opts.CacheDir, opts.PruneCache, want)
	}
}
