package yamlconf

import (
	"bytes"
	"errors"
	"io"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Where a YAML syntax error is.
//
// yaml.v3 v3.0.1 reports a syntax error with one line number, and often the
// wrong one: when the parser names the construct it was inside ("while
// parsing a block mapping"), the line is that construct's start, counted
// from 0, so a stray indent on line 4 of a "mqtt:" section is reported at
// line 1; it never gives a column. The marks it has are not exported, so
// locate finds the position from outside, using the parser itself: the
// parser reads its input front to back and stops at the first problem, so a
// prefix of the file that holds the offending character fails with the
// same problem, and a shorter one does not (it parses, or fails with a
// different problem because it was cut). A prefix that was cut can fail with
// the same message (a quoted string left open fails "found unexpected end
// of stream" like the whole file does), so the search runs from the end:
// the position is the start of the run of prefixes, ending with the whole
// file, that all fail alike. For a quoted string left open that is where
// it opens. For a bracket or brace left open it is not: a prefix cut
// within its last scalar fails alike too, so the position is the first
// character of that scalar, after which a ',' or the closing bracket
// was expected (`tags: [a, b` then `other: 1` gives line 1, column 11, the
// b). The search gallops back from the end, then bisects, so it
// parses O(log n) prefixes, first by lines, then by characters of the line
// found.

// maxLocateSize bounds the search: a larger file keeps the line yaml.v3
// reports (yaml.v3 parses about 10 MB/s; the search parses up to some 40
// prefixes).
const maxLocateSize = 1 << 20

// parseMsg is the problem yaml.v3 finds in data, without the "line N: "
// part, or "" if every document in data parses.
func parseMsg(data []byte) string {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			msg := err.Error()
			if m := syntaxError.FindStringSubmatch(msg); m != nil {
				return "yaml: " + m[2]
			}
			return msg
		}
	}
}

// locate returns the 1-based line of the problem msg (as parseMsg gives
// it) in data, and with column its 1-based column (in characters); 0 for
// what it cannot tell.
func locate(data []byte, msg string, column bool) (line, col int) {
	if len(data) > maxLocateSize || parseMsg(data) != msg {
		return 0, 0
	}
	// ends[i] is the offset just past line i+1 (its newline included).
	var ends []int
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	line = firstOfRun(len(ends), func(k int) bool { return parseMsg(data[:ends[k-1]]) == msg })
	if !column {
		return line, 0
	}
	start := 0
	if line > 1 {
		start = ends[line-2]
	}
	// cuts[i] is the offset in data just past the line's character i+1.
	var cuts []int
	for i := start + 1; i < ends[line-1]; i++ {
		if utf8.RuneStart(data[i]) {
			cuts = append(cuts, i)
		}
	}
	cuts = append(cuts, ends[line-1])
	// The character that makes the prefix fail is the last one it holds.
	col = firstOfRun(len(cuts), func(c int) bool { return parseMsg(data[:cuts[c-1]]) == msg })
	return line, col
}

// firstOfRun returns the smallest k in 1..n such that fails holds for k
// and, as far as a gallop back from n followed by a bisection can tell, for
// every number from k to n. fails(n) must hold; fails(0) is taken as false.
func firstOfRun(n int, fails func(k int) bool) int {
	hi, step := n, 1 // fails(hi)
	lo := hi - step
	for lo > 0 && fails(lo) {
		hi, step = lo, step*2
		lo = max(hi-step, 0)
	}
	for hi-lo > 1 { // fails(hi), and lo is 0 or !fails(lo)
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}
