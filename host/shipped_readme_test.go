package host

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"gopkg.in/yaml.v3"
)

// readmeYAML matches a README's YAML code blocks.
var readmeYAML = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestShippedREADMEExamples starts each shipped extension with its
// manifest and with every manifest or config example of its README (a
// block with an id is a whole manifest; any other replaces the keys it
// has in the shipped manifest), as the broker would, offline: the
// examples an operator copies must at least start. The README's
// Keycloak example did not (disconnect_on_expiry lacked its services).
func TestShippedREADMEExamples(t *testing.T) {
	for _, ext := range []string{"jwt-auth", "http-auth"} {
		src := filepath.Join("..", "shipped", ext)
		base, err := os.ReadFile(filepath.Join(src, ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		readme, err := os.ReadFile(filepath.Join(src, "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		blocks := [][]byte{base}
		for _, m := range readmeYAML.FindAllSubmatch(readme, -1) {
			blocks = append(blocks, m[1])
		}
		if len(blocks) < 2 {
			t.Fatalf("%s: no YAML example in README.md", ext)
		}
		wasm := buildGuest(t, "shipped", ext)
		cache := t.TempDir() // compiled once per extension
		for i, block := range blocks {
			name := ext + "/README-example-" + string(rune('0'+i))
			if i == 0 {
				name = ext + "/" + ManifestFile
			}
			t.Run(name, func(t *testing.T) {
				manifest := exampleManifest(t, base, block)
				startExample(t, wasm, cache, manifest)
			})
		}
	}
}

// exampleManifest returns block as a whole manifest: itself when it has
// an id, else base with block's top-level keys replacing base's.
func exampleManifest(t *testing.T, base, block []byte) []byte {
	t.Helper()
	var b, m map[string]any
	if err := yaml.Unmarshal(block, &b); err != nil {
		t.Fatalf("example is not YAML: %v\n%s", err, block)
	}
	if _, whole := b["id"]; whole {
		return block
	}
	if err := yaml.Unmarshal(base, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range b {
		m[k] = v
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startExample lays out the extension with manifest and starts it as a
// broker would (manifest checks, start callback with its config), with no
// network: a JWKS URL or endpoint is not reached.
func startExample(t *testing.T, wasm, cache string, manifest []byte) {
	t.Helper()
	m, err := ParseManifest("example", manifest)
	if err != nil {
		t.Fatalf("manifest: %v\n%s", err, manifest)
	}
	dir := filepath.Join(t.TempDir(), m.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, m.Module), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	if m, err = LoadManifest(dir); err != nil {
		t.Fatalf("manifest: %v\n%s", err, manifest)
	}
	p, err := OpenProbe(context.Background(), dir, m, ProbeOptions{CacheDir: cache})
	if err != nil {
		t.Fatalf("does not start: %v\n%s", err, manifest)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
}
