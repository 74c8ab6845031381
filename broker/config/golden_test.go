package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestGolden runs every testdata/*.txt case. A case file is YAML input, a
// line "---", then the expected result: either one "error: " line per
// returned error, exactly as printed, or "ok" followed by "key = value" lines
// checked against the parsed Config. The input is parsed as if it came from
// "propolis.yaml". The last "---" line is the separator, so inputs may hold
// YAML document markers.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := cutLast(string(data), "---\n")
			if !ok {
				t.Fatalf("%s: no --- line", file)
			}
			c, err := Parse("propolis.yaml", []byte(input))
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
					t.Fatalf("Parse succeeded, want errors:\n%s", strings.Join(wantErrs, "\n"))
				}
				if got, want := err.Error(), strings.Join(wantErrs, "\n"); got != want {
					t.Errorf("errors:\n%s\nwant:\n%s", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, l := range lines[1:] {
				key, wantVal, ok := strings.Cut(l, " = ")
				if !ok {
					t.Fatalf("%s: want \"key = value\", got %q", file, l)
				}
				got, err := lookup(c, key)
				if err != nil {
					t.Errorf("%s: %v", key, err)
				} else if got != wantVal {
					t.Errorf("%s = %s, want %s", key, got, wantVal)
				}
			}
		})
	}
}

// cutLast splits s around the last line equal to sep (which ends in "\n").
func cutLast(s, sep string) (before, after string, ok bool) {
	if strings.HasPrefix(s, sep) {
		s = "\n" + s
	}
	i := strings.LastIndex(s, "\n"+sep)
	if i < 0 {
		return "", "", false
	}
	return s[:i+1], s[i+1+len(sep):], true
}

// pathPart matches one step of a key path: a name and an optional index.
var pathPart = regexp.MustCompile(`^([a-z_]+)(?:\[(\d+)\])?$`)

// lookup returns the value at a key path such as "listeners[0].tls.cert_file"
// formatted with %v; a slice gives its length and a nil pointer "<nil>".
func lookup(c *Config, key string) (string, error) {
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(key, ".") {
		m := pathPart.FindStringSubmatch(part)
		if m == nil {
			return "", fmt.Errorf("bad key path")
		}
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return "", fmt.Errorf("%s is nil", part)
			}
			v = v.Elem()
		}
		f, ok := fieldByTag(v, m[1])
		if !ok {
			return "", fmt.Errorf("no field %s", m[1])
		}
		v = f
		if m[2] != "" {
			i, _ := strconv.Atoi(m[2])
			if i >= v.Len() {
				return "", fmt.Errorf("index %d out of range (len %d)", i, v.Len())
			}
			v = v.Index(i)
		}
	}
	switch {
	case v.Kind() == reflect.Slice:
		return strconv.Itoa(v.Len()), nil
	case v.Kind() == reflect.Pointer && v.IsNil():
		return "<nil>", nil
	}
	return fmt.Sprint(v.Interface()), nil
}

// fieldByTag returns the field of struct v whose yaml tag is name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	for i := range v.NumField() {
		if v.Type().Field(i).Tag.Get("yaml") == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
