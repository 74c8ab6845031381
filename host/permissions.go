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
func publishAllowed(perms []permission, name string, qos byte, retain bool) bool {
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
		if topic.Match(p.filter, name) {
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
	_, filter, shared := topic.SplitShared(filter)
	for i := range perms {
		p := &perms[i]
		if p.never || p.activity&abi.ActivitySubscribe == 0 || (p.qos != 0 && p.qos&(1<<qos) == 0) {
			continue
		}
		if (p.shared == abi.SharedNotShared && shared) || (p.shared == abi.SharedOnlyShared && !shared) {
			continue
		}
		if topic.Covers(p.filter, filter) {
			return p.allow
		}
	}
	return false
}
