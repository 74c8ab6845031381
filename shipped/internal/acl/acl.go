// Package acl turns the topic permissions a token or an auth endpoint
// grants a client (lists of MQTT topic filters per activity) into the
// SDK's default permissions, which the broker enforces on every PUBLISH,
// will and SUBSCRIBE without calling the extension.
package acl

import (
	"fmt"
	"strings"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// MaxPermissions is the most permissions a client may have (the broker's
// limit, AuthResult.Permissions in the SDK).
const MaxPermissions = 256

// Spec is a client's topic permissions: MQTT topic filters in which
// "{clientid}" and "{username}" stand for the client's own (the broker
// substitutes them). The JSON form is
//
//	{"publish": [...], "subscribe": [...], "all": [...], "deny": [...]}
//
// with every key optional.
type Spec struct {
	// Publish lists the filters the client may publish to (and use as its
	// will topic).
	Publish []string `json:"publish"`
	// Subscribe lists the filters the client may subscribe to (or
	// narrower ones).
	Subscribe []string `json:"subscribe"`
	// All lists the filters the client may publish to and subscribe to.
	All []string `json:"all"`
	// Deny lists the filters the client may neither publish to nor
	// subscribe to; they are checked before the others.
	Deny []string `json:"deny"`
}

// Empty reports whether s grants and denies nothing.
func (s Spec) Empty() bool {
	return len(s.Publish)+len(s.Subscribe)+len(s.All)+len(s.Deny) == 0
}

// Permissions returns s as the SDK's permissions, deny first, then all,
// publish and subscribe; where names the source in errors (e.g. `claim
// "acl"`). An empty Spec gives a single permission denying every topic
// (a client with no permission at all would otherwise be allowed
// everything, the SDK's rule for an empty list). An invalid filter, or
// more than MaxPermissions filters, is an error naming where (and the list
// and the filter).
func (s Spec) Permissions(where string) ([]propolis.Permission, error) {
	if s.Empty() {
		return []propolis.Permission{propolis.DenyTopic("#")}, nil
	}
	n := len(s.Publish) + len(s.Subscribe) + len(s.All) + len(s.Deny)
	if n > MaxPermissions {
		return nil, fmt.Errorf("%s: %d topic filters, at most %d", where, n, MaxPermissions)
	}
	perms := make([]propolis.Permission, 0, n)
	for _, l := range []struct {
		name    string
		filters []string
		make    func(string) propolis.Permission
	}{
		{"deny", s.Deny, propolis.DenyTopic},
		{"all", s.All, propolis.AllowTopic},
		{"publish", s.Publish, propolis.AllowPublish},
		{"subscribe", s.Subscribe, propolis.AllowSubscribe},
	} {
		for i, f := range l.filters {
			p := l.make(f)
			if err := propolis.CheckTopicFilter(f); err != nil {
				return nil, fmt.Errorf("%s: %s[%d] %q: %v", where, l.name, i, f, err)
			}
			perms = append(perms, p)
		}
	}
	return perms, nil
}

// Placeholders the broker substitutes in a filter.
const (
	ClientID = "{clientid}"
	Username = "{username}"
)

// Grants returns the first filter of the allowing lists (publish,
// subscribe, all) holding placeholder, as `list[i] "filter"`, or "" when
// none does. The deny list is not searched: a placeholder there only
// narrows what the client may do.
func (s Spec) Grants(placeholder string) string {
	for _, l := range []struct {
		name    string
		filters []string
	}{{"all", s.All}, {"publish", s.Publish}, {"subscribe", s.Subscribe}} {
		for i, f := range l.filters {
			if strings.Contains(f, placeholder) {
				return fmt.Sprintf("%s[%d] %q", l.name, i, f)
			}
		}
	}
	return ""
}
