package propolis

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Activity says what a Permission applies to.
type Activity uint8

// Activities.
const (
	// ActivityPublish applies a permission to PUBLISH (and wills).
	ActivityPublish Activity = 1
	// ActivitySubscribe applies a permission to SUBSCRIBE.
	ActivitySubscribe Activity = 2
	// ActivityBoth applies a permission to PUBLISH and SUBSCRIBE.
	ActivityBoth Activity = 3
)

// QoSSet is a set of QoS levels a Permission applies to. The empty set
// (AnyQoS) means all of them.
type QoSSet uint8

// QoS sets; combine them with |, e.g. QoS0|QoS1.
const (
	// AnyQoS matches every QoS.
	AnyQoS QoSSet = 0
	// QoS0 matches QoS 0.
	QoS0 QoSSet = 1 << 0
	// QoS1 matches QoS 1.
	QoS1 QoSSet = 1 << 1
	// QoS2 matches QoS 2.
	QoS2 QoSSet = 1 << 2
)

// RetainPolicy restricts a publish Permission by the retain flag.
type RetainPolicy uint8

// Retain policies.
const (
	// RetainAny matches retained and non-retained messages.
	RetainAny RetainPolicy = 0
	// RetainNotRetained matches only messages without the retain flag.
	RetainNotRetained RetainPolicy = 1
	// RetainOnlyRetained matches only retained messages.
	RetainOnlyRetained RetainPolicy = 2
)

// SharedPolicy restricts a subscribe Permission by the kind of
// subscription.
type SharedPolicy uint8

// Shared-subscription policies.
const (
	// SharedAny matches shared and non-shared subscriptions.
	SharedAny SharedPolicy = 0
	// SharedNotShared matches only non-shared subscriptions.
	SharedNotShared SharedPolicy = 1
	// SharedOnlyShared matches only shared subscriptions.
	SharedOnlyShared SharedPolicy = 2
)

// Permission is a default topic permission for a client, returned from
// Authenticate in AuthResult.Permissions. The host evaluates permissions
// itself, with no Wasm call, on every PUBLISH (and will) and SUBSCRIBE of
// the client that the chain of authorize handlers left undecided: the first
// permission whose filter and conditions match decides (allow, or deny with
// 0x87); when none matches, the client is denied if it has any permission.
type Permission struct {
	// Decision is DecisionAllow or DecisionDeny.
	Decision Decision
	// Activity is what the permission applies to.
	Activity Activity
	// QoS restricts the permission to these QoS levels (AnyQoS: all).
	QoS QoSSet
	// Retain restricts a publish permission by the retain flag.
	Retain RetainPolicy
	// Shared restricts a subscribe permission by the kind of subscription.
	Shared SharedPolicy
	// Filter is an MQTT topic filter ("+" and "#" wildcards) in which
	// "{clientid}" and "{username}" stand for the client's identifier and
	// user name. A client id or user name that is empty or contains "+",
	// "#" or "/" cannot fill a placeholder: such an allow matches nothing,
	// such a deny everything. For SUBSCRIBE, an allow applies when the
	// requested filter is equal to Filter or narrower, a deny when the two
	// overlap (some topic matches both: a deny of "secret/#" refuses a
	// subscription to "#").
	Filter string
}

// AllowTopic returns a permission allowing publish and subscribe, at every
// QoS, on the topics matching filter.
func AllowTopic(filter string) Permission {
	return Permission{Decision: DecisionAllow, Activity: ActivityBoth, Filter: filter}
}

// DenyTopic returns a permission denying publish and subscribe, at every
// QoS, on the topics matching filter.
func DenyTopic(filter string) Permission {
	return Permission{Decision: DecisionDeny, Activity: ActivityBoth, Filter: filter}
}

// AllowPublish returns a permission allowing publish, at every QoS, on the
// topics matching filter.
func AllowPublish(filter string) Permission {
	return Permission{Decision: DecisionAllow, Activity: ActivityPublish, Filter: filter}
}

// AllowSubscribe returns a permission allowing subscribe, at every QoS, to
// filter and narrower filters.
func AllowSubscribe(filter string) Permission {
	return Permission{Decision: DecisionAllow, Activity: ActivitySubscribe, Filter: filter}
}

// Validate reports whether the host would accept the permission: known
// field values and a well-formed topic filter. The SDK checks every
// permission before sending it; use Validate in unit tests to catch a bad
// permission before it reaches a broker.
func (p Permission) Validate() error {
	switch {
	case p.Decision != DecisionAllow && p.Decision != DecisionDeny:
		return errors.New("propolis: permission decision must be DecisionAllow or DecisionDeny")
	case p.Activity < ActivityPublish || p.Activity > ActivityBoth:
		return errors.New("propolis: permission activity must be ActivityPublish, ActivitySubscribe or ActivityBoth")
	case p.QoS > QoS0|QoS1|QoS2:
		return errors.New("propolis: permission QoS set has unknown bits")
	case p.Retain > RetainOnlyRetained:
		return errors.New("propolis: unknown permission retain policy")
	case p.Shared > SharedOnlyShared:
		return errors.New("propolis: unknown permission shared policy")
	}
	if err := CheckTopicFilter(p.Filter); err != nil {
		return fmt.Errorf("propolis: permission filter %q: %w", p.Filter, err)
	}
	return nil
}

// CheckTopicFilter checks an MQTT topic filter's syntax, as the broker
// will: not empty, UTF-8 without U+0000, "+" and "#" each a whole level,
// "#" only last. Its errors say what is wrong, e.g. `level 2 ("b#"): a
// wildcard must be the whole level`, for an extension to name the
// configuration key they came from. A shared subscription
// ("$share/group/filter") passes as the filter it is.
func CheckTopicFilter(f string) error {
	switch {
	case f == "":
		return errors.New("empty topic filter")
	case !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0:
		return errors.New("not UTF-8 without U+0000")
	}
	level := 1
	for rest := f; ; level++ {
		l, more, found := strings.Cut(rest, "/")
		if len(l) > 1 && strings.ContainsAny(l, "+#") {
			return fmt.Errorf("level %d (%q): a wildcard must be the whole level", level, l)
		}
		if l == "#" && found {
			return errors.New(`"#" must be the last level`)
		}
		if !found {
			return nil
		}
		rest = more
	}
}

// appendPermission appends the add_permission argument (ABI.md section 5)
// for p to buf.
func appendPermission(buf []byte, p Permission) []byte {
	n := len(p.Filter)
	buf = append(buf, byte(p.Decision), byte(p.Activity), byte(p.QoS), byte(p.Retain), byte(p.Shared), 0, 0, 0)
	buf = append(buf, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	return append(buf, p.Filter...)
}
