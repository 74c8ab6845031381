package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/internal/yamlconf"
)

// TestManifestGolden runs every testdata/manifest/*.txt case. A case file
// is the manifest, a line "---", then the expected result: either one
// "error: " line per problem, exactly as printed, or "ok" followed by
// "key = value" lines checked against the parsed Manifest (limits filled
// in, config as the JSON the extension receives). The input is parsed as if
// it came from "propolis-extension.yaml". The last "---" line is the
// separator, so inputs may hold YAML document markers.
func TestManifestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/manifest/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files in testdata/manifest")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := cutLastLine(string(data), "---\n")
			if !ok {
				t.Fatalf("%s: no --- line", file)
			}
			m, err := ParseManifest(ManifestFile, []byte(input))
			lines := strings.Split(strings.TrimRight(want, "\n"), "\n")
			if lines[0] != "ok" {
				var wantErrs []string
				for _, l := range lines {
					msg, ok := strings.CutPrefix(l, "error: ")
					if !ok {
						t.Fatalf("%s: want \"ok\" or \"error: \" lines, got %q", file, l)
					}
					wantErrs = append(wantErrs, msg)
				}
				if err == nil {
					t.Fatalf("ParseManifest succeeded, want errors:\n%s", strings.Join(wantErrs, "\n"))
				}
				if got, want := err.Error(), "bad manifest: "+strings.Join(wantErrs, "\n"); got != want {
					t.Errorf("errors:\n%s\nwant:\n%s", got, want)
				}
				var errs yamlconf.Errors
				if !errors.Is(err, ErrManifest) || !errors.As(err, &errs) {
					t.Errorf("error %T does not wrap both ErrManifest and yamlconf.Errors", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			for _, l := range lines[1:] {
				key, wantVal, ok := strings.Cut(l, " = ")
				if !ok {
					t.Fatalf("%s: want \"key = value\", got %q", file, l)
				}
				got, err := manifestValue(m, key)
				if err != nil {
					t.Errorf("%s: %v", key, err)
				} else if got != wantVal {
					t.Errorf("%s = %s, want %s", key, got, wantVal)
				}
			}
		})
	}
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

// cutLastLine splits s around the last line equal to sep (which ends in
// "\n").
func cutLastLine(s, sep string) (before, after string, ok bool) {
	if strings.HasPrefix(s, sep) {
		s = "\n" + s
	}
	i := strings.LastIndex(s, "\n"+sep)
	if i < 0 {
		return "", "", false
	}
	return s[:i+1], s[i+1+len(sep):], true
}

// manifestValue returns the value at a dotted key path of m, such as
// "limits.memory", formatted with %v; "config" gives the JSON the extension
// receives.
func manifestValue(m *Manifest, key string) (string, error) {
	if key == "config" {
		return configJSON(m.Config)
	}
	v := reflect.ValueOf(m).Elem()
	for part := range strings.SplitSeq(key, ".") {
		if v.Kind() != reflect.Struct {
			return "", fmt.Errorf("%s is not a mapping", part)
		}
		found := false
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("yaml") == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return "", fmt.Errorf("no field %s", part)
		}
	}
	return fmt.Sprint(v.Interface()), nil
}
