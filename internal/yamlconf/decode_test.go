package yamlconf

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sample exercises every kind of field Decode supports.
type sample struct {
	Name    string   `yaml:"name"`
	Count   int      `yaml:"count"`
	On      bool     `yaml:"on"`
	Timeout Duration `yaml:"timeout"`
	Size    ByteSize `yaml:"size"`
	Tags    []string `yaml:"tags"`
	Inner   inner    `yaml:"inner"`
	Opt     *inner   `yaml:"opt"`
	Extra   any      `yaml:"extra"`
	Hidden  string   `yaml:"-"`
}

type inner struct {
	Port int `yaml:"port"`
}

// defaults is what each TestDecode case decodes on top of.
func defaults() sample {
	return sample{Name: "default", Count: 1, Inner: inner{Port: 80}}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want func(s *sample) // changes from defaults(); nil for an error case
		err  string
	}{
		{name: "empty keeps defaults", in: "", want: func(*sample) {}},
		{name: "comments only", in: "# nothing\n", want: func(*sample) {}},
		{name: "null section keeps defaults", in: "inner:\n", want: func(*sample) {}},
		{
			name: "every kind",
			in: "name: x\ncount: 3\non: true\ntimeout: 90\nsize: 1KiB\ntags: [a, b]\n" +
				"inner: {port: 8080}\nopt: {port: 1}\nextra: {k: [1, two]}\n",
			want: func(s *sample) {
				*s = sample{Name: "x", Count: 3, On: true, Timeout: Duration(90 * time.Second), Size: 1024,
					Tags: []string{"a", "b"}, Inner: inner{Port: 8080}, Opt: &inner{Port: 1},
					Extra: map[string]any{"k": []any{1, "two"}}}
			},
		},
		{name: "any takes a scalar", in: "extra: 2.5\n", want: func(s *sample) { s.Extra = 2.5 }},
		{name: "any takes null", in: "extra: null\n", want: func(*sample) {}},
		{name: "null sequence is empty", in: "tags:\n", want: func(s *sample) { s.Tags = []string{} }},
		{name: "aliases", in: "name: &n x\ntags: [*n]\n", want: func(s *sample) { s.Name, s.Tags = "x", []string{"x"} }},
		{
			name: "every problem at once",
			in:   "name: [x]\ncount: many\non: yes please\ntimeout: soon\nsize: 1 MeB\ntags: a\ninner: 5\nopt: {port: 1, host: h}\nhidden: x\n",
			err: `f.yaml:1:7: name: want a string, got a sequence
f.yaml:2:8: count: want an integer, got "many"
f.yaml:3:5: on: want true or false, got "yes please"
f.yaml:4:10: timeout: want a duration such as "10s" or "1h30m", or a whole number of seconds, got "soon"
f.yaml:5:7: size: want a byte size such as 65536, "512KiB" or "1MiB" (units: B, KiB, MiB, GiB, KB, MB, GB), got "1 MeB"
f.yaml:6:7: tags: want a sequence, got "a"
f.yaml:7:8: inner: want a mapping, got "5"
f.yaml:8:16: opt.host: unknown key (allowed: port)
f.yaml:9:1: hidden: unknown key (allowed: name, count, on, timeout, size, tags, inner, opt, extra)`,
		},
		{name: "sequence index in key", in: "tags: [a, [b]]\n", err: "f.yaml:1:11: tags[1]: want a string, got a sequence"},
		{name: "integer too large", in: "count: 99999999999999999999\n", err: `f.yaml:1:8: count: want an integer, got "99999999999999999999"`},
		{name: "duplicate key", in: "name: a\nname: b\n", err: "f.yaml:2:1: name: duplicate key (first at line 1)"},
		{name: "merge key", in: "inner:\n  <<: {port: 1}\n", err: "f.yaml:2:3: inner: merge keys (<<) are not supported"},
		{name: "not a mapping", in: "- a\n", err: "f.yaml:1:1: want a mapping, got a sequence"},
		{name: "yaml syntax", in: "name: a\n name: b\n", err: "f.yaml:2:6: yaml: mapping values are not allowed in this context"},
		{name: "two documents", in: "name: a\n---\nname: b\n", err: "f.yaml:2:1: yaml: only one document is allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaults()
			err := Decode("f.yaml", []byte(tt.in), &got).Err()
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("errors:\n%v\nwant:\n%s", err, tt.err)
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Errorf("errors.As(%T, *Error) = false", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := defaults()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Decode = %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestDocumentAdd: problems found after decoding get the position of their
// key, or of its nearest ancestor in the file, and are dropped when
// decoding rejected the key already.
func TestDocumentAdd(t *testing.T) {
	tests := []struct {
		name string
		in   string
		add  []*Error
		want string
	}{
		{
			name: "positions",
			in:   "name: x\ninner:\n  port: 0\ntags: [a, b]\n",
			add: []*Error{
				{Key: "inner.port", Msg: "0 out of range 1-65535"},
				{Key: "count", Msg: "required"},
				{Key: "opt.port", Msg: "required"},
				{Key: "tags[1]", Msg: "unknown tag"},
				{Key: "", Msg: "whole file"},
			},
			want: `f.yaml:1:1: count: required
f.yaml:1:1: opt.port: required
f.yaml:1:1: whole file
f.yaml:3:9: inner.port: 0 out of range 1-65535
f.yaml:4:11: tags[1]: unknown tag`,
		},
		{
			name: "rejected keys are not reported twice",
			in:   "inner: 5\ncount: x\n",
			add: []*Error{
				{Key: "inner.port", Msg: "required"},
				{Key: "count", Msg: "out of range"},
				{Key: "name", Msg: "required"},
			},
			want: `f.yaml:1:1: name: required
f.yaml:1:8: inner: want a mapping, got "5"
f.yaml:2:8: count: want an integer, got "x"`,
		},
		{
			name: "nothing but the syntax error",
			in:   "name: a\n name: b\n",
			add:  []*Error{{Key: "count", Msg: "required"}},
			want: "f.yaml:2:6: yaml: mapping values are not allowed in this context",
		},
		{
			name: "empty file has no positions",
			in:   "",
			add:  []*Error{{Key: "name", Msg: "required"}},
			want: "f.yaml: name: required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sample
			doc := Decode("f.yaml", []byte(tt.in), &s)
			doc.Add(tt.add...)
			err := doc.Err()
			if err == nil || err.Error() != tt.want {
				t.Errorf("errors:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestDocumentHas(t *testing.T) {
	var s sample
	doc := Decode("f.yaml", []byte("inner:\n  port: 1\ntags: [a]\n"), &s)
	for key, want := range map[string]bool{
		"inner": true, "inner.port": true, "tags": true, "tags[0]": true,
		"tags[1]": false, "name": false, "opt.port": false,
	} {
		if got := doc.Has(key); got != want {
			t.Errorf("Has(%q) = %v, want %v", key, got, want)
		}
	}
	if err := doc.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
}

func TestDecodePanicsOnMisuse(t *testing.T) {
	tests := []struct {
		name string
		v    any
		data string
		want string
	}{
		{name: "not a pointer", v: sample{}, want: "yamlconf: Decode needs a non-nil pointer to a struct, got yamlconf.sample"},
		{name: "nil pointer", v: (*sample)(nil), want: "yamlconf: Decode needs a non-nil pointer to a struct, got *yamlconf.sample"},
		{name: "unsupported field", v: &struct {
			F float64 `yaml:"f"`
		}{}, data: "f: 1.5\n", want: "yamlconf: no decoder for float64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if got := recover(); got != tt.want {
					t.Errorf("panic = %v, want %q", got, tt.want)
				}
			}()
			Decode("f.yaml", []byte(tt.data), tt.v)
		})
	}
}

// TestErrorsUnwrap: errors.As finds the first problem.
func TestErrorsUnwrap(t *testing.T) {
	var s sample
	err := Decode("f.yaml", []byte("count: x\nname: [a]\n"), &s).Err()
	var e *Error
	if !errors.As(err, &e) || e.Key != "count" || e.Line != 1 || e.Column != 8 {
		t.Fatalf("errors.As(%v) = %+v", err, e)
	}
	if n := len(strings.Split(err.Error(), "\n")); n != 2 {
		t.Errorf("%d lines, want 2:\n%v", n, err)
	}
}
