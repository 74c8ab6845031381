// Package topic matches MQTT topic names against topic filters. It does not
// allocate, so it can run on every PUBLISH.
package topic

import (
	"errors"
	"fmt"
	"strings"
)

// nextLevel splits s at its first '/': the level, the rest, and whether
// there was a separator.
func nextLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// Match reports whether the topic name matches the filter. Wildcards in
// the first level do not match topics starting with '$' (MQTT-4.7.2-1).
func Match(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := nextLevel(filter)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := nextLevel(topic)
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore && !tmore {
			return true
		}
		if !tmore {
			return fmore && frest == "#" // "a/#" also matches "a"
		}
		if !fmore {
			return false
		}
		filter, topic = frest, trest
	}
}

// Covers reports whether every topic matching sub also matches filter:
// sub is equal to filter or narrower. As in Match, a filter whose first
// level is a wildcard covers no filter of '$' topics.
func Covers(filter, sub string) bool {
	if dollar(sub) && wildFirst(filter) {
		return false
	}
	for {
		pl, prest, pmore := nextLevel(filter)
		if pl == "#" {
			return true
		}
		sl, srest, smore := nextLevel(sub)
		switch {
		case sl == "#":
			return false
		case pl == "+":
		case sl == "+" || pl != sl:
			return false
		}
		if !pmore && !smore {
			return true
		}
		if !smore {
			return pmore && prest == "#"
		}
		if !pmore {
			return false
		}
		filter, sub = prest, srest
	}
}

// Intersects reports whether some topic name matches both filters a and
// b: whether a subscription to one can receive a message the other
// matches.
func Intersects(a, b string) bool {
	if dollar(a) && wildFirst(b) || dollar(b) && wildFirst(a) {
		return false
	}
	for {
		al, arest, amore := nextLevel(a)
		bl, brest, bmore := nextLevel(b)
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore: // a's topics end here: b must be "…/#", which matches its parent
			return brest == "#"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}

// dollar reports whether filter f starts with a '$' level (only '$'
// topics match it).
func dollar(f string) bool { return len(f) > 0 && f[0] == '$' }

// wildFirst reports whether filter f's first level is a wildcard.
func wildFirst(f string) bool { return len(f) > 0 && (f[0] == '+' || f[0] == '#') }

// ValidFilter reports whether f is a well-formed topic filter
// (CheckFilter says why not). It does not allocate.
func ValidFilter(f string) bool {
	_, _, bad := filterProblem(f)
	return bad == ""
}

// CheckFilter returns why f is not a well-formed topic filter, or nil:
// `empty`, `level 2 ("b#"): a wildcard must be the whole level`, or
// `"#" must be the last level`. It checks the levels only (not UTF-8, not
// $share/ prefixes).
func CheckFilter(f string) error {
	switch n, l, bad := filterProblem(f); bad {
	case "":
		return nil
	case wildPart:
		return fmt.Errorf("level %d (%q): %s", n, l, bad)
	default:
		return errors.New(bad)
	}
}

// The problems filterProblem finds.
const (
	emptyFilter = "empty"
	wildPart    = "a wildcard must be the whole level"
	hashNotLast = `"#" must be the last level`
)

// filterProblem returns f's first problem ("" for none) and the level
// (1-based, and its text) where it is.
func filterProblem(f string) (n int, level, problem string) {
	if f == "" {
		return 0, "", emptyFilter
	}
	for n = 1; ; n++ {
		l, rest, more := nextLevel(f)
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return n, l, wildPart
		}
		if l == "#" && more {
			return n, l, hashNotLast
		}
		if !more {
			return 0, "", ""
		}
		f = rest
	}
}

// SplitShared splits "$share/<group>/<filter>" into group and filter; ok is
// false for any other filter.
func SplitShared(f string) (group, filter string, ok bool) {
	rest, found := strings.CutPrefix(f, "$share/")
	if !found {
		return "", f, false
	}
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", f, false
	}
	return rest[:i], rest[i+1:], true
}
