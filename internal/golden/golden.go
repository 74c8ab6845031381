// Package golden runs golden-file cases for the YAML files Propolis reads
// (the broker configuration, the extension manifest): one file per case,
// in the tests of the package that parses it.
//
// A case file is the input, a line "---", then the expected result: one
// "error: " line per problem, exactly as printed, or "ok" followed by
// "key = value" lines checked against what was parsed. The last "---" line
// is the separator, so inputs may hold YAML document markers.
package golden

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

// Parser parses one case's input. It returns the parsed value's key
// lookup (see Lookup) or the error whose message the case expects.
type Parser func(t *testing.T, input []byte) (lookup func(key string) (string, error), err error)

// Run runs every file matching pattern as a subtest; it fails when none
// matches.
func Run(t *testing.T, pattern string, parse Parser) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no golden files match %s", pattern)
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
			lookup, err := parse(t, []byte(input))
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
					t.Fatalf("parse succeeded, want errors:\n%s", strings.Join(wantErrs, "\n"))
				}
				if got, want := err.Error(), strings.Join(wantErrs, "\n"); got != want {
					t.Errorf("errors:\n%s\nwant:\n%s", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			for _, l := range lines[1:] {
				key, wantVal, ok := strings.Cut(l, " = ")
				if !ok {
					t.Fatalf("%s: want \"key = value\", got %q", file, l)
				}
				got, err := lookup(key)
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
var pathPart = regexp.MustCompile(`^([a-z_-]+)(?:\[(\d+)\])?$`)

// Lookup returns the value at a key path of the struct v points to, by
// yaml tags, such as "listeners[0].tls.cert_file", formatted with %v; a
// slice of structs gives its length and a nil pointer "<nil>".
func Lookup(v any, key string) (string, error) {
	rv := reflect.ValueOf(v).Elem()
	for part := range strings.SplitSeq(key, ".") {
		m := pathPart.FindStringSubmatch(part)
		if m == nil {
			return "", fmt.Errorf("bad key path")
		}
		if rv.Kind() == reflect.Pointer {
			if rv.IsNil() {
				return "", fmt.Errorf("%s is nil", part)
			}
			rv = rv.Elem()
		}
		if rv.Kind() != reflect.Struct {
			return "", fmt.Errorf("%s is not a mapping", part)
		}
		f, ok := fieldByTag(rv, m[1])
		if !ok {
			return "", fmt.Errorf("no field %s", m[1])
		}
		rv = f
		if m[2] != "" {
			i, _ := strconv.Atoi(m[2])
			if i >= rv.Len() {
				return "", fmt.Errorf("index %d out of range (len %d)", i, rv.Len())
			}
			rv = rv.Index(i)
		}
	}
	switch {
	case rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Struct:
		return strconv.Itoa(rv.Len()), nil
	case rv.Kind() == reflect.Pointer && rv.IsNil():
		return "<nil>", nil
	case rv.Kind() == reflect.Pointer && rv.Elem().Kind() != reflect.Struct: // an optional scalar (*bool)
		rv = rv.Elem()
	}
	return fmt.Sprint(rv.Interface()), nil
}

// fieldByTag returns the field of struct v whose yaml tag is name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	for i := range v.NumField() {
		if tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}
