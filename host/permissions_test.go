package host

import (
	"testing"

	"github.com/propolis-mqtt/propolis/abi"
)

func TestTopicMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a/b/c", true},
		{"a/#", "a", true},
		{"#", "a/b", true},
		{"+/b", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	} {
		t.Run(tc.filter+" "+tc.topic, func(t *testing.T) {
			if got := topicMatches(tc.filter, tc.topic); got != tc.want {
				t.Fatalf("topicMatches(%q, %q) = %v", tc.filter, tc.topic, got)
			}
		})
	}
}

func TestFilterCovers(t *testing.T) {
	for _, tc := range []struct {
		perm, sub string
		want      bool
	}{
		{"a/#", "a/b/+", true},
		{"a/#", "a/#", true},
		{"a/#", "#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/b", "a/+", false},
		{"a/+", "a/#", false},
		{"a/b", "a/b", true},
		{"devices/c1/#", "devices/c1", true},
	} {
		t.Run(tc.perm+" "+tc.sub, func(t *testing.T) {
			if got := filterCovers(tc.perm, tc.sub); got != tc.want {
				t.Fatalf("filterCovers(%q, %q) = %v", tc.perm, tc.sub, got)
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	perms := compilePermissions([]abi.Permission{
		{Decision: abi.PermDeny, Activity: abi.ActivityPublish, Filter: "devices/{clientid}/config"},
		{Decision: abi.PermAllow, Activity: abi.ActivityBoth, QoS: 0b011, Retain: abi.RetainNotRetained, Filter: "devices/{clientid}/#"},
		{Decision: abi.PermAllow, Activity: abi.ActivitySubscribe, Shared: abi.SharedOnlyShared, Filter: "jobs/#"},
	}, "c1", "alice")
	for _, tc := range []struct {
		name  string
		check func() bool
		want  bool
	}{
		{"own topic", func() bool { return publishAllowed(perms, "devices/c1/temp", 1, false) }, true},
		{"qos 2 not in set", func() bool { return publishAllowed(perms, "devices/c1/temp", 2, false) }, false},
		{"retained not allowed", func() bool { return publishAllowed(perms, "devices/c1/temp", 0, true) }, false},
		{"explicit deny first", func() bool { return publishAllowed(perms, "devices/c1/config", 0, false) }, false},
		{"other client", func() bool { return publishAllowed(perms, "devices/c2/temp", 0, false) }, false},
		{"subscribe own", func() bool { return subscribeAllowed(perms, "devices/c1/#", 1) }, true},
		{"subscribe wider", func() bool { return subscribeAllowed(perms, "devices/#", 1) }, false},
		{"shared only", func() bool { return subscribeAllowed(perms, "$share/g/jobs/a", 0) }, true},
		{"not shared", func() bool { return subscribeAllowed(perms, "jobs/a", 0) }, false},
		{"no permissions allows", func() bool { return publishAllowed(nil, "x", 2, true) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.check(); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// A client id that would widen the filter matches nothing.
	wide := compilePermissions([]abi.Permission{{Decision: abi.PermAllow, Activity: abi.ActivityBoth, Filter: "devices/{clientid}/#"}}, "#", "")
	if publishAllowed(wide, "devices/x/y", 0, false) {
		t.Fatal("client id '#' widened its permission")
	}
}

func TestValidFilter(t *testing.T) {
	for f, want := range map[string]bool{"a/b": true, "a/+/c": true, "#": true, "a/#": true, "a/#/b": false, "a+": false, "": false, "a/b#": false} {
		if validFilter(f) != want {
			t.Errorf("validFilter(%q) = %v", f, !want)
		}
	}
}
