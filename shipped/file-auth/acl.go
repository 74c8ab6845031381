package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/propolis-mqtt/propolis/passwd"
	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// The rule file (default "acl"), line by line:
//
//	# a comment (a line whose first non-blank character is "#")
//	group NAME: USER USER ...     who belongs to group NAME (may repeat)
//	[all]                         rules for every user, tried last
//	[user NAME]                   rules for user NAME, tried first
//	[group NAME]                  rules for the members of group NAME
//	allow|deny ACTIVITY FILTER    a rule of the section above it
//
// ACTIVITY is publish (also write), subscribe (also read) or all (also
// readwrite); FILTER is an MQTT topic filter in which {clientid} and
// {username} stand for the client's. A user's rules are its own section's,
// then its groups' sections' in the order the sections appear, then
// [all]'s; the first that matches decides, and what none matches is
// denied.

// maxRules is the most rules one user may get: the broker takes at most
// 256 permissions per client, and the last is file-auth's own deny of
// everything else.
const maxRules = 255

// rule is one allow or deny line.
type rule struct {
	perm propolis.Permission
	line int
}

// section is the rules under one [all], [user NAME] or [group NAME]
// header (repeated headers add to the same section).
type section struct {
	rules []rule
}

// acl is a parsed rule file.
type acl struct {
	all    section
	users  map[string]*section
	groups map[string]*section
	// groupOrder lists the groups with a section, in the order their
	// first header appears.
	groupOrder []string
	// members maps a user to the groups it belongs to.
	members map[string]map[string]bool
	// groupLine is where each group's membership was first given.
	groupLine map[string]int
}

// parseACL reads a rule file's bytes; name prefixes each problem as
// NAME:LINE: problem, all problems in one error, one a line.
func parseACL(name string, data []byte) (*acl, error) {
	a := &acl{users: map[string]*section{}, groups: map[string]*section{},
		members: map[string]map[string]bool{}, groupLine: map[string]int{}}
	var probs []string
	var cur *section
	sectionLine := map[*section]int{}
	// A leading byte-order mark (some Windows editors save one) is not
	// part of the first line.
	text := strings.TrimPrefix(string(data), "\ufeff")
	for n, raw := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n++
		bad := func(format string, args ...any) {
			probs = append(probs, fmt.Sprintf("%s:%d: %s", name, n, fmt.Sprintf(format, args...)))
		}
		l := strings.TrimSpace(raw)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
			continue
		case strings.HasPrefix(l, "["):
			if !strings.HasSuffix(l, "]") {
				bad("section header %q: want [all], [user NAME] or [group NAME]", l)
				cur = nil
				continue
			}
			kind, who, _ := strings.Cut(strings.TrimSpace(l[1:len(l)-1]), " ")
			who = strings.TrimSpace(who)
			switch {
			case kind == "all" && who == "":
				cur = &a.all
			case kind == "user" && who != "":
				if err := passwd.CheckUser(who); err != nil {
					bad("[user]: %v", err)
					cur = nil
					continue
				}
				cur = sectionOf(a.users, who)
			case kind == "group" && who != "":
				if err := checkGroup(who); err != nil {
					bad("[group]: %v", err)
					cur = nil
					continue
				}
				if a.groups[who] == nil {
					a.groupOrder = append(a.groupOrder, who)
				}
				cur = sectionOf(a.groups, who)
			default:
				bad("section header %q: want [all], [user NAME] or [group NAME]", l)
				cur = nil
				continue
			}
			if sectionLine[cur] == 0 {
				sectionLine[cur] = n
			}
		case strings.HasPrefix(l, "group ") || strings.HasPrefix(l, "group\t"):
			head, list, ok := strings.Cut(strings.TrimSpace(l[len("group"):]), ":")
			group := strings.TrimSpace(head)
			if !ok {
				bad("want group NAME: USER ..., found no \":\"")
				continue
			}
			if err := checkGroup(group); err != nil {
				bad("group: %v", err)
				continue
			}
			if _, seen := a.groupLine[group]; !seen {
				a.groupLine[group] = n
			}
			for _, u := range strings.Fields(list) {
				if err := passwd.CheckUser(u); err != nil {
					bad("group %s: %v", group, err)
					continue
				}
				if a.members[u] == nil {
					a.members[u] = map[string]bool{}
				}
				a.members[u][group] = true
			}
		default:
			f := strings.Fields(l)
			if f[0] != "allow" && f[0] != "deny" {
				bad("unknown line %q: want allow, deny, group NAME: USERS or a [section] header", firstWord(l))
				continue
			}
			if len(f) != 3 {
				bad("want %s ACTIVITY FILTER (ACTIVITY: publish, subscribe or all), got %d words", f[0], len(f))
				continue
			}
			p := propolis.Permission{Decision: propolis.DecisionAllow, Filter: f[2]}
			if f[0] == "deny" {
				p.Decision = propolis.DecisionDeny
			}
			switch f[1] {
			case "publish", "write":
				p.Activity = propolis.ActivityPublish
			case "subscribe", "read":
				p.Activity = propolis.ActivitySubscribe
			case "all", "readwrite":
				p.Activity = propolis.ActivityBoth
			default:
				bad("activity %q: want publish, subscribe or all", f[1])
				continue
			}
			if err := propolis.CheckTopicFilter(p.Filter); err != nil {
				bad("filter %q: %v", p.Filter, err)
				continue
			}
			if cur == nil {
				bad("%s rule outside a section: put [all], [user NAME] or [group NAME] above it", f[0])
				continue
			}
			cur.rules = append(cur.rules, rule{perm: p, line: n})
		}
	}
	for _, g := range a.groupOrder {
		if _, ok := a.groupLine[g]; !ok {
			probs = append(probs, fmt.Sprintf("%s:%d: [group %s] has no members: add a line group %s: USER ...", name, sectionLine[a.groups[g]], g, g))
		}
	}
	if len(probs) == 0 {
		// Every user named in the file, and every other user (who gets
		// [all] alone), must fit the broker's limit.
		who := map[string]bool{"": true}
		for u := range a.users {
			who[u] = true
		}
		for u := range a.members {
			who[u] = true
		}
		for _, u := range slices.Sorted(maps.Keys(who)) {
			if _, err := a.permissions(u); err != nil {
				probs = append(probs, name+": "+err.Error())
			}
		}
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(probs, "\n"))
	}
	return a, nil
}

// empty reports whether the file has no rule at all (nil: none loaded).
func (a *acl) empty() bool {
	if a == nil || len(a.all.rules) > 0 {
		return false
	}
	for _, s := range a.users {
		if len(s.rules) > 0 {
			return false
		}
	}
	for _, s := range a.groups {
		if len(s.rules) > 0 {
			return false
		}
	}
	return true
}

// sectionOf returns m[key], adding an empty section first if needed.
func sectionOf(m map[string]*section, key string) *section {
	s := m[key]
	if s == nil {
		s = &section{}
		m[key] = s
	}
	return s
}

// checkGroup reports what is wrong with a group name: the rules of a
// user name, and no blanks inside.
func checkGroup(g string) error {
	if g == "" {
		return fmt.Errorf("empty group name")
	}
	if err := passwd.CheckUser(g); err != nil {
		return fmt.Errorf("group name: %w", err)
	}
	if strings.ContainsAny(g, " \t") {
		return fmt.Errorf("group name %q contains a blank", g)
	}
	return nil
}

// firstWord returns l's first blank-separated word.
func firstWord(l string) string {
	f := strings.Fields(l)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// permissions returns user's permissions in the order the broker tries
// them, ending with a deny of everything, and an error when there are
// more than the broker takes.
func (a *acl) permissions(user string) ([]propolis.Permission, error) {
	var out []propolis.Permission
	add := func(s *section) {
		if s == nil {
			return
		}
		for _, r := range s.rules {
			out = append(out, r.perm)
		}
	}
	add(a.users[user])
	for _, g := range a.groupOrder {
		if a.members[user][g] {
			add(a.groups[g])
		}
	}
	add(&a.all)
	if len(out) > maxRules {
		if user == "" {
			return nil, fmt.Errorf("[all] has %d rules, more than the %d a client may have", len(out), maxRules)
		}
		return nil, fmt.Errorf("user %q gets %d rules, more than the %d a client may have", user, len(out), maxRules)
	}
	return append(out, propolis.DenyTopic("#")), nil
}
