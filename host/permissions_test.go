package host

import (
	"testing"

	"github.com/propolis-mqtt/propolis/abi"
)

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

// A deny filter that overlaps a SUBSCRIBE's filter refuses it: "#" after a
// deny of "secret/#" would otherwise receive the secrets. A deny whose
// placeholder cannot be filled safely denies everything of its activity
// (fails closed), where such an allow grants nothing.
func TestPermissionsDenyOverlap(t *testing.T) {
	perms := compilePermissions([]abi.Permission{
		{Decision: abi.PermDeny, Activity: abi.ActivityBoth, Filter: "secret/#"},
		{Decision: abi.PermDeny, Activity: abi.ActivitySubscribe, Filter: "devices/+/config"},
		{Decision: abi.PermAllow, Activity: abi.ActivityBoth, Filter: "#"},
	}, "c1", "eve")
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"#", false},
		{"+/plans", false},
		{"secret/#", false},
		{"$share/g/+/plans", false},
		{"devices/c1/#", false}, // could receive devices/c1/config
		{"devices/c1/temp", true},
		{"public/#", true},
		{"news/+", true},
		{"+/news", false}, // secret/news
	} {
		if got := subscribeAllowed(perms, tc.filter, 0); got != tc.want {
			t.Errorf("subscribe %q: got %v, want %v", tc.filter, got, tc.want)
		}
	}
	// An allow of "#" does not cover '$' topics, as it does not match them.
	if subscribeAllowed(perms, "$SYS/#", 0) {
		t.Error(`allow "#" granted a subscription to "$SYS/#"`)
	}
	for _, id := range []string{"a/b", "+", ""} {
		unsafe := compilePermissions([]abi.Permission{
			{Decision: abi.PermDeny, Activity: abi.ActivityBoth, Filter: "devices/{clientid}/admin"},
			{Decision: abi.PermAllow, Activity: abi.ActivityBoth, Filter: "devices/#"},
		}, id, "u")
		if publishAllowed(unsafe, "devices/a/b/admin", 0, false) || subscribeAllowed(unsafe, "devices/#", 0) {
			t.Errorf("client id %q escaped a deny with a placeholder", id)
		}
	}
}
