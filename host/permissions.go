package host

import (
	"strings"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker/topic"
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
	// never: a placeholder could not be filled safely. An allow then
	// matches nothing and a deny everything (of its activity and
	// conditions): either way the client gets less, never more.
	never bool
}

// compilePermissions fills {clientid} and {username} in each permission's
// filter. A value that is empty or contains a wildcard or a level
// separator would change the filter's shape, so such a permission is
// marked never (see permission).
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
func publishAllowed(perms []permission, name string, qos byte, retain bool) bool {
	if len(perms) == 0 {
		return true
	}
	for i := range perms {
		p := &perms[i]
		if p.activity&abi.ActivityPublish == 0 || (p.qos != 0 && p.qos&(1<<qos) == 0) {
			continue
		}
		if (p.retain == abi.RetainNotRetained && retain) || (p.retain == abi.RetainOnlyRetained && !retain) {
			continue
		}
		if p.never {
			if !p.allow {
				return false
			}
			continue
		}
		if topic.Match(p.filter, name) {
			return p.allow
		}
	}
	return false
}

// subscribeAllowed evaluates a client's permissions for one SUBSCRIBE
// filter, in order: an allow applies when its filter covers the requested
// one (every topic the subscription can receive is allowed), a deny when
// its filter intersects it (the subscription could receive a topic it
// denies: "#" with a deny of "secret/#" before the allow of "#").
func subscribeAllowed(perms []permission, filter string, qos byte) bool {
	if len(perms) == 0 {
		return true
	}
	_, filter, shared := topic.SplitShared(filter)
	for i := range perms {
		p := &perms[i]
		if p.activity&abi.ActivitySubscribe == 0 || (p.qos != 0 && p.qos&(1<<qos) == 0) {
			continue
		}
		if (p.shared == abi.SharedNotShared && shared) || (p.shared == abi.SharedOnlyShared && !shared) {
			continue
		}
		switch {
		case p.never && !p.allow:
			return false
		case p.never:
		case p.allow && topic.Covers(p.filter, filter):
			return true
		case !p.allow && topic.Intersects(p.filter, filter):
			return false
		}
	}
	return false
}
