package yamlconf

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a YAML file.
type Error struct {
	// File is the name of the file, or whatever name the caller gives for
	// problems found in a value that did not come from a file.
	File string
	// Line is the 1-based line of the offending YAML node, or 0 if unknown.
	Line int
	// Column is the 1-based column of the offending YAML node, or 0 if unknown.
	Column int
	// Key is the dotted path of the offending key, such as
	// "listeners[1].tls.cert_file", or "" for problems with the whole file.
	Key string
	// Msg describes the problem, lowercase and without a final period.
	Msg string
}

// Error formats e as "FILE:LINE:COL: KEY: MSG", leaving out the parts that
// are unknown (zero or empty).
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":" + strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in file order once sorted.
type Errors []*Error

// Error joins the messages of all problems with newlines.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, so errors.As can find an *Error.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Sort orders es in place by line and column; problems without a line go
// last, and ties keep the order in which they were found.
func (es Errors) Sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}
