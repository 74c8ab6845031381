// Package topic matches MQTT topic names against topic filters. It does not
// allocate, so it can run on every PUBLISH.
package topic

import "strings"

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
// sub is equal to filter or narrower.
func Covers(filter, sub string) bool {
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

// ValidFilter reports whether f is a well-formed topic filter.
func ValidFilter(f string) bool {
	if f == "" {
		return false
	}
	for {
		l, rest, more := nextLevel(f)
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return false
		}
		if l == "#" && more {
			return false
		}
		if !more {
			return true
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
