package main

import (
	"fmt"
	"strings"
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

const sampleACL = `# rules
group sensors: s-1 s-2
group admins: alice

[user alice]
deny publish admin/locked/#

[group sensors]
allow publish sensors/{username}/#
allow read commands/{clientid}/#

[group admins]
allow all #

[all]
allow subscribe public/#
deny readwrite secret/#
`

func TestParseACL(t *testing.T) {
	a, err := parseACL("acl", []byte(sampleACL))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user string
		want []propolis.Permission
	}{
		{"alice", []propolis.Permission{
			{Decision: propolis.DecisionDeny, Activity: propolis.ActivityPublish, Filter: "admin/locked/#"},
			propolis.AllowTopic("#"),
			propolis.AllowSubscribe("public/#"),
			propolis.DenyTopic("secret/#"),
			propolis.DenyTopic("#"),
		}},
		{"s-1", []propolis.Permission{
			propolis.AllowPublish("sensors/{username}/#"),
			propolis.AllowSubscribe("commands/{clientid}/#"),
			propolis.AllowSubscribe("public/#"),
			propolis.DenyTopic("secret/#"),
			propolis.DenyTopic("#"),
		}},
		{"nobody", []propolis.Permission{
			propolis.AllowSubscribe("public/#"),
			propolis.DenyTopic("secret/#"),
			propolis.DenyTopic("#"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			got, err := a.permissions(tt.user)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
			for _, p := range got {
				if err := p.Validate(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestParseACLEmpty: an empty rule file denies everything (it is not "no
// rules"), which the final deny makes explicit.
func TestParseACLEmpty(t *testing.T) {
	a, err := parseACL("acl", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := a.permissions("bob")
	if fmt.Sprint(got) != fmt.Sprint([]propolis.Permission{propolis.DenyTopic("#")}) {
		t.Fatalf("got %v", got)
	}
}

// TestParseACLBOM: a byte-order mark before the first line (some Windows
// editors save one) is skipped, not read as part of the line.
func TestParseACLBOM(t *testing.T) {
	a, err := parseACL("acl", []byte("\ufeff[all]\nallow all a/#\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := a.permissions("bob")
	if fmt.Sprint(got) != fmt.Sprint([]propolis.Permission{propolis.AllowTopic("a/#"), propolis.DenyTopic("#")}) {
		t.Fatalf("got %v", got)
	}
}

func TestParseACLErrors(t *testing.T) {
	in := `allow all a/#
[all]
allow everything a/#
allow publish
permit publish a
allow publish a/b#
[users bob]
[user]
[group two words]
group : x
group g x
[group lonely]
deny all x
`
	want := `acl:1: allow rule outside a section: put [all], [user NAME] or [group NAME] above it
acl:3: activity "everything": want publish, subscribe or all
acl:4: want allow ACTIVITY FILTER (ACTIVITY: publish, subscribe or all), got 2 words
acl:5: unknown line "permit": want allow, deny, group NAME: USERS or a [section] header
acl:6: filter "a/b#": level 2 ("b#"): a wildcard must be the whole level
acl:7: section header "[users bob]": want [all], [user NAME] or [group NAME]
acl:8: section header "[user]": want [all], [user NAME] or [group NAME]
acl:9: [group]: group name "two words" contains a blank
acl:10: group: empty group name
acl:11: want group NAME: USER ..., found no ":"
acl:12: [group lonely] has no members: add a line group lonely: USER ...`
	_, err := parseACL("acl", []byte(in))
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

func TestParseACLTooManyRules(t *testing.T) {
	var b strings.Builder
	b.WriteString("group g: bob\n[all]\n")
	for i := range 200 {
		fmt.Fprintf(&b, "allow publish all/%d\n", i)
	}
	b.WriteString("[group g]\n")
	for i := range 60 {
		fmt.Fprintf(&b, "allow publish g/%d\n", i)
	}
	_, err := parseACL("acl", []byte(b.String()))
	if err == nil || err.Error() != `acl: user "bob" gets 260 rules, more than the 255 a client may have` {
		t.Fatalf("got %v", err)
	}
}
