package yamlconf

import (
	"testing"
)

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		e    Error
		want string
	}{
		{"everything", Error{File: "f.yaml", Line: 14, Column: 3, Key: "a.b", Msg: "bad"}, "f.yaml:14:3: a.b: bad"},
		{"no column", Error{File: "f.yaml", Line: 2, Key: "a", Msg: "bad"}, "f.yaml:2: a: bad"},
		{"no line", Error{File: "f.yaml", Column: 3, Key: "a", Msg: "bad"}, "f.yaml: a: bad"},
		{"no key", Error{File: "f.yaml", Line: 1, Column: 1, Msg: "bad"}, "f.yaml:1:1: bad"},
		{"no file", Error{Line: 1, Column: 1, Key: "a", Msg: "bad"}, "a: bad"},
		{"message only", Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorsSort(t *testing.T) {
	es := Errors{
		{Key: "no-line-1", Msg: "x"},
		{Line: 3, Column: 1, Key: "c", Msg: "x"},
		{Line: 1, Column: 5, Key: "b", Msg: "x"},
		{Key: "no-line-2", Msg: "x"},
		{Line: 1, Column: 2, Key: "a", Msg: "x"},
		{Line: 1, Column: 5, Key: "b-later", Msg: "x"},
	}
	es.Sort()
	want := []string{"a", "b", "b-later", "c", "no-line-1", "no-line-2"}
	for i, e := range es {
		if e.Key != want[i] {
			t.Errorf("es[%d].Key = %q, want %q", i, e.Key, want[i])
		}
	}
}
