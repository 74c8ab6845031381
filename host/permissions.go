package host

import (
	"strings"

	"github.com/propolis-mqtt/propolis/abi"
)

// permission is one default topic permission of a client, with its
// placeholders already replaced (ABI.md, add_permission).
type permission struct {
	allow    bool
	activity uint8
	qos      uint8 // bit mask; 0 = all
	retain   uint8
	shared   uint8
	filter   string
	never    bool // a placeholder could not be filled safely: matches nothing
}

// compilePermissions fills {clientid} and {username} in each permission's
// filter. A value containing a wildcard or a level separator would widen
// the filter, so such a permission matches nothing instead.
func compilePermissions(in []abi.Permission, clientID, username string) []permission {
	out := make([]permission, 0, len(in))
	for _, p := range in {
		f := p.Filter
		never := false
		for _, ph := range [...]struct{ name, value string }{{"{clientid}", clientID}, {"{username}", username}} {
			if strings.Contains(f, ph.name) {
				if ph.value == "" || strings.ContainsAny(ph.value, "+#/") {
					never = true
				}
				f = strings.ReplaceAll(f, ph.name, ph.value)
			}
		}
		out = append(out, permission{allow: p.Decision == abi.PermAllow, activity: p.Activity, qos: p.QoS,
			retain: p.Retain, shared: p.Shared, filter: f, never: never})
	}
	return out
}

// publishAllowed evaluates a client's permissions for a PUBLISH. With no
// permissions, everything is allowed; otherwise the first matching
// permission decides and no match denies.
func publishAllowed(perms []permission, topic string, qos byte, retain bool) bool {
	if len(perms) == 0 {
		return true
	}
	for i := range perms {
		p := &perms[i]
		if p.never || p.activity&abi.ActivityPublish == 0 || (p.qos != 0 && p.qos&(1<<qos) == 0) {
			continue
		}
		if (p.retain == abi.RetainNotRetained && retain) || (p.retain == abi.RetainOnlyRetained && !retain) {
			continue
		}
		if topicMatches(p.filter, topic) {
			return p.allow
		}
	}
	return false
}

// subscribeAllowed evaluates a client's permissions for one SUBSCRIBE
// filter: a permission applies when its filter covers the requested one.
func subscribeAllowed(perms []permission, filter string, qos byte) bool {
	if len(perms) == 0 {
		return true
	}
	shared := false
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			filter, shared = rest[i+1:], true
		}
	}
	for i := range perms {
		p := &perms[i]
		if p.never || p.activity&abi.ActivitySubscribe == 0 || (p.qos != 0 && p.qos&(1<<qos) == 0) {
			continue
		}
		if (p.shared == abi.SharedNotShared && shared) || (p.shared == abi.SharedOnlyShared && !shared) {
			continue
		}
		if filterCovers(p.filter, filter) {
			return p.allow
		}
	}
	return false
}

// nextLevel splits s at its first '/': the level and the rest, and whether
// there was a separator.
func nextLevel(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// topicMatches reports whether an MQTT topic name matches a topic filter.
// Wildcards in the first level do not match topics starting with '$'. It
// does not allocate.
func topicMatches(filter, topic string) bool {
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
			// "a/#" also matches "a".
			return fmore && frest == "#"
		}
		if !fmore {
			return false
		}
		filter, topic = frest, trest
	}
}

// filterCovers reports whether every topic matching sub also matches perm:
// sub is equal to perm or narrower.
func filterCovers(perm, sub string) bool {
	for {
		pl, prest, pmore := nextLevel(perm)
		if pl == "#" {
			return true
		}
		sl, srest, smore := nextLevel(sub)
		switch {
		case sl == "#":
			return false // perm is narrower than a multi-level wildcard
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
		perm, sub = prest, srest
	}
}

// validFilter reports whether f is a well-formed MQTT topic filter.
func validFilter(f string) bool {
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
