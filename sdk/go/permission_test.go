package propolis

import (
	"bytes"
	"testing"
)

func TestAppendPermission(t *testing.T) {
	p := Permission{Decision: DecisionDeny, Activity: ActivityPublish, QoS: QoS1 | QoS2, Retain: RetainOnlyRetained, Shared: SharedNotShared, Filter: "a/{clientid}/#"}
	want := []byte{
		2, 1, 6, 2, 1, 0, 0, 0, // decision, activity, qos, retain, shared, reserved
		14, 0, 0, 0, // filter length
	}
	want = append(want, "a/{clientid}/#"...)
	if got := appendPermission([]byte("prefix"), p); !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Errorf("got % x\nwant % x", got, want)
	}
	if got := appendPermission(nil, AllowTopic("x")); !bytes.Equal(got, []byte{1, 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'x'}) {
		t.Errorf("AllowTopic: % x", got)
	}
}

func TestPermissionConstructors(t *testing.T) {
	tests := []struct {
		got  Permission
		want Permission
	}{
		{AllowTopic("a/#"), Permission{Decision: DecisionAllow, Activity: ActivityBoth, Filter: "a/#"}},
		{DenyTopic("a/#"), Permission{Decision: DecisionDeny, Activity: ActivityBoth, Filter: "a/#"}},
		{AllowPublish("a"), Permission{Decision: DecisionAllow, Activity: ActivityPublish, Filter: "a"}},
		{AllowSubscribe("a/+"), Permission{Decision: DecisionAllow, Activity: ActivitySubscribe, Filter: "a/+"}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %+v, want %+v", tt.got, tt.want)
		}
	}
}

func TestPermissionValidate(t *testing.T) {
	ok := []Permission{
		AllowTopic("#"),
		AllowTopic("+"),
		AllowTopic("devices/{clientid}/#"),
		AllowTopic("a/+/b"),
		AllowTopic("/"),
		DenyTopic("$SYS/#"),
		{Decision: DecisionAllow, Activity: ActivitySubscribe, QoS: QoS0 | QoS1 | QoS2, Retain: RetainNotRetained, Shared: SharedOnlyShared, Filter: "x"},
	}
	for _, p := range ok {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	bad := []Permission{
		{Activity: ActivityBoth, Filter: "a"}, // no decision
		{Decision: DecisionDisconnect, Activity: ActivityBoth, Filter: "a"},
		{Decision: DecisionAllow, Filter: "a"}, // no activity
		{Decision: DecisionAllow, Activity: 4, Filter: "a"},
		{Decision: DecisionAllow, Activity: ActivityBoth, QoS: 8, Filter: "a"},
		{Decision: DecisionAllow, Activity: ActivityBoth, Retain: 3, Filter: "a"},
		{Decision: DecisionAllow, Activity: ActivityBoth, Shared: 3, Filter: "a"},
		AllowTopic(""),
		AllowTopic("a/#/b"),
		AllowTopic("a#"),
		AllowTopic("a/b+"),
		AllowTopic("a/\x00"),
	}
	for _, p := range bad {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v: valid", p)
		}
	}
}
