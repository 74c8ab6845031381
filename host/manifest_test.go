package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/internal/golden"
	"github.com/propolis-mqtt/propolis/internal/yamlconf"
)

// TestManifestGolden runs every testdata/manifest/*.txt case
// (internal/golden), parsed as if it came from "propolis-extension.yaml".
// Expected errors are written without the "bad manifest: " every manifest
// error starts with; keys are looked up in the Manifest (limits filled in,
// config as the JSON the extension receives).
func TestManifestGolden(t *testing.T) {
	golden.Run(t, "testdata/manifest/*.txt", func(t *testing.T, input []byte) (func(string) (string, error), error) {
		m, err := ParseManifest(ManifestFile, input)
		if err != nil {
			var errs yamlconf.Errors
			if !errors.Is(err, ErrManifest) || !errors.As(err, &errs) {
				t.Errorf("error %T does not wrap both ErrManifest and yamlconf.Errors", err)
			}
			return nil, errors.New(strings.TrimPrefix(err.Error(), "bad manifest: "))
		}
		return func(key string) (string, error) {
			if key == "config" {
				return configJSON(m.Config)
			}
			return golden.Lookup(m, key)
		}, nil
	})
}

// TestLoadManifest covers what LoadManifest adds to ParseManifest: the
// file is found in the folder, and its id must be the folder's name.
func TestLoadManifest(t *testing.T) {
	tests := []struct {
		name     string
		folder   string
		manifest string // "" writes no manifest
		want     string // the error with the folder replaced by DIR, or "" for success
	}{
		{name: "ok", folder: "acl", manifest: "id: acl\nversion: 1.0.0\nmodule: acl.wasm\n"},
		{name: "id differs from folder", folder: "folder-x", manifest: "version: 1.0.0\nid: id-y\nmodule: ext.wasm\n",
			want: `bad manifest: DIR/propolis-extension.yaml:2:5: id: "id-y" differs from its folder name "folder-x"`},
		{name: "no manifest", folder: "empty",
			want: "bad manifest: stat DIR/propolis-extension.yaml: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tt.folder)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.manifest != "" {
				if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(tt.manifest), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := LoadManifest(dir)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("LoadManifest: %v", err)
				}
				if m.ID != tt.folder {
					t.Errorf("ID = %q, want %q", m.ID, tt.folder)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadManifest succeeded, want %s", tt.want)
			}
			if got := strings.ReplaceAll(err.Error(), dir, "DIR"); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
			if !errors.Is(err, ErrManifest) {
				t.Errorf("errors.Is(%v, ErrManifest) = false", err)
			}
		})
	}
}

// TestConfigSizeLimit: YAML aliases let a small manifest expand into a
// large config; the START record's JSON is capped at MaxConfig.
func TestConfigSizeLimit(t *testing.T) {
	manifest := func(aliases int) []byte {
		var b strings.Builder
		b.WriteString("id: acl\nversion: 1.0.0\nmodule: acl.wasm\nconfig:\n  s: &s " + strings.Repeat("x", 1000) + "\n  l: [")
		for i := 0; i < aliases; i++ {
			b.WriteString("*s, ")
		}
		b.WriteString("]\n")
		return []byte(b.String())
	}
	m, err := ParseManifest(ManifestFile, manifest(1000))
	if err != nil {
		t.Fatalf("1000 aliases (about 1,000,000 bytes of JSON): %v", err)
	}
	if j, err := configJSON(m.Config); err != nil || len(j) > MaxConfig {
		t.Fatalf("config JSON of %d bytes, %v", len(j), err)
	}
	_, err = ParseManifest(ManifestFile, manifest(1100))
	want := "bad manifest: propolis-extension.yaml:5:3: config: 1104314 bytes as JSON, more than the limit of 1048576 (1 MiB)"
	if err == nil || err.Error() != want {
		t.Fatalf("1100 aliases: %v\nwant %s", err, want)
	}
}

// TestManifestKeysDocumented: abi/MANIFEST.md's key table lists exactly
// the keys ParseManifest accepts (the yaml tags of Manifest and Limits),
// with the defaults and ranges validate applies.
func TestManifestKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "abi", "MANIFEST.md"))
	if err != nil {
		t.Fatal(err)
	}
	const header = "| key | type | default | limits | meaning |"
	rows := map[string][]string{}
	lines := strings.Split(string(doc), "\n")
	for i, l := range lines {
		if l != header {
			continue
		}
		for _, r := range lines[i+2:] {
			if !strings.HasPrefix(r, "|") {
				break
			}
			cells := strings.Split(strings.Trim(r, "|"), "|")
			for j := range cells {
				cells[j] = strings.TrimSpace(cells[j])
			}
			rows[strings.Trim(cells[0], "`")] = cells
		}
	}
	if len(rows) == 0 {
		t.Fatalf("abi/MANIFEST.md: no table %q", header)
	}
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			keys = append(keys, prefix+name)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[yamlconf.Duration]() {
				walk(f.Type, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[Manifest](), "")
	for _, k := range keys {
		if rows[k] == nil {
			t.Errorf("manifest key %s is not in abi/MANIFEST.md's key table", k)
		}
	}
	for k := range rows {
		if !slices.Contains(keys, k) {
			t.Errorf("abi/MANIFEST.md documents key %s, which the manifest does not accept", k)
		}
	}
	for _, c := range []struct{ key, def, limits string }{
		{"limits.memory", yamlconf.ByteSize(DefaultMemory).String(), fmt.Sprintf("%v-%v", yamlconf.ByteSize(minMemory), yamlconf.ByteSize(maxMemory))},
		{"limits.call_deadline", yamlconf.Duration(DefaultCallDeadline).String(), fmt.Sprintf("%v-%v", minCallDeadline, maxCallDeadline)},
		{"limits.pool_size", strconv.Itoa(DefaultPoolSize), fmt.Sprintf("%d-%d", minPoolSize, maxPoolSize)},
		{"limits.authenticate_deadline", yamlconf.Duration(DefaultAuthenticateDeadline).String(), fmt.Sprintf("%v-%v", minCallDeadline, maxCallDeadline)},
		{"limits.max_pool_size", fmt.Sprintf("%d x `pool_size` (at most %d)", poolGrowth, maxMaxPoolSize), fmt.Sprintf("`pool_size`-%d", maxMaxPoolSize)},
		{"limits.auth_cache_entries", strconv.Itoa(DefaultAuthCacheEntries), fmt.Sprintf("1-%d", maxAuthCacheEntries)},
		{"http.max_response", yamlconf.ByteSize(DefaultMaxResponse).String(), fmt.Sprintf("%v-%v", yamlconf.ByteSize(minMaxResponse), yamlconf.ByteSize(maxMaxResponse))},
		{"config", "`{}`", fmt.Sprintf("%d MiB as JSON", MaxConfig>>20)},
		{"tick", "none", fmt.Sprintf("%v-%v", minTick, maxTick)},
	} {
		if r := rows[c.key]; r != nil && (r[2] != c.def || r[3] != c.limits) {
			t.Errorf("abi/MANIFEST.md %s: default %q, limits %q; the code: %q, %q", c.key, r[2], r[3], c.def, c.limits)
		}
	}
	if r := rows["module"]; r != nil && !strings.Contains(r[3], fmt.Sprintf("%d MiB", maxModule>>20)) {
		t.Errorf("abi/MANIFEST.md module: limits %q, the code reads at most %d MiB", r[3], maxModule>>20)
	}
}
