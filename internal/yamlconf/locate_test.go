package yamlconf

import (
	"strings"
	"testing"
)

// TestSyntaxErrorPosition: a YAML syntax error is reported at the line and
// column of the character that breaks the file, wherever the file puts it
// (yaml.v3 alone reports the start of the enclosing mapping, counted from
// 0, or no column).
func TestSyntaxErrorPosition(t *testing.T) {
	tests := []struct {
		name string
		in   []string // lines
		want string
	}{
		{
			name: "tab indentation",
			in:   []string{"name: a", "inner:", "\tport: 1"},
			want: "f.yaml:3:1: yaml: found character that cannot start any token",
		},
		{
			name: "tab indentation deep in a section",
			in:   []string{"name: a", "inner:", "  port: 1", "opt:", "  port: 2", "\t# comment"},
			want: "f.yaml:6:1: yaml: found a tab character that violates indentation",
		},
		{
			name: "unclosed double quote",
			in:   []string{"name: a", "count: 1", "tags: [a]", `extra: "open`, "on: true"},
			want: "f.yaml:4:8: yaml: found unexpected end of stream",
		},
		{
			name: "unclosed single quote",
			in:   []string{"inner:", "  port: 1", "name: 'open"},
			want: "f.yaml:3:7: yaml: found unexpected end of stream",
		},
		{
			name: "key indented less than its section",
			in:   []string{"inner:", "  port: 1", "  port2: 1", " name: b"},
			want: "f.yaml:4:2: yaml: did not find expected key",
		},
		{
			name: "key indented more than its section",
			in:   []string{"name: a", "count: 2", "on: true", " size: 1"},
			want: "f.yaml:4:6: yaml: mapping values are not allowed in this context",
		},
		{
			name: "two values on one line",
			in:   []string{"name: a", "count: 2", "inner:", "  port: 1: 2"},
			want: "f.yaml:4:10: yaml: mapping values are not allowed in this context",
		},
		{
			name: "sequence item in a mapping",
			in:   []string{"name: a", "count: 2", "- x"},
			want: "f.yaml:3:1: yaml: did not find expected key",
		},
		{
			name: "unclosed flow sequence",
			in:   []string{"name: a", "tags: [a, b", "count: 2"},
			want: "f.yaml:2:11: yaml: did not find expected ',' or ']'",
		},
		{
			// A bracket or brace left open is reported at the first
			// character of the last scalar inside it, after which a ','
			// or the closing bracket was expected, not where it opens.
			name: "flow sequence left open over lines",
			in:   []string{"name: a", "tags: [a,", "  b,", "  c", "other: 1", "more: 2"},
			want: "f.yaml:4:3: yaml: did not find expected ',' or ']'",
		},
		{
			name: "flow mapping left open",
			in:   []string{"name: a", "inner: {port: 1, port2: 22", "other: 1"},
			want: "f.yaml:2:25: yaml: did not find expected ',' or '}'",
		},
		{
			name: "flow mapping left open over lines",
			in:   []string{"inner: {port: 1,", "  port2: 2", "name: a"},
			want: "f.yaml:2:10: yaml: did not find expected ',' or '}'",
		},
		{
			name: "inner flow sequence left open",
			in:   []string{"name: a", "tags: [a, [b, c]", "other: 1"},
			want: "f.yaml:2:15: yaml: did not find expected ',' or ']'",
		},
		{
			name: "bad escape",
			in:   []string{"name: a", "", "", `extra: "a\qb"`},
			want: "f.yaml:4:10: yaml: found unknown escape character",
		},
		{
			name: "a multi-line flow sequence before the error",
			in:   []string{"tags: [a,", "  b]", "name: a", "\tcount: 1"},
			want: "f.yaml:4:1: yaml: found a tab character that violates indentation",
		},
		{
			name: "an open quote earlier closes later",
			in:   []string{`name: "a`, `  b"`, `extra: "open`},
			want: "f.yaml:3:8: yaml: found unexpected end of stream",
		},
		{
			name: "unknown alias",
			in:   []string{"name: a", "tags: [*nope]"},
			want: "f.yaml:2: yaml: unknown anchor 'nope' referenced",
		},
		{
			name: "error in a second document",
			in:   []string{"name: a", "---", "name: b", " x: 1"},
			want: "f.yaml:4:3: yaml: mapping values are not allowed in this context",
		},
		{
			name: "crlf line ends",
			in:   []string{"inner:\r", "  port: 1\r", " name: b\r"},
			want: "f.yaml:3:2: yaml: did not find expected key",
		},
		{
			name: "column counts characters, not bytes",
			in:   []string{"name: ä: b"},
			want: "f.yaml:1:8: yaml: mapping values are not allowed in this context",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sample
			err := Decode("f.yaml", []byte(strings.Join(tt.in, "\n")+"\n"), &s).Err()
			if err == nil || err.Error() != tt.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}
