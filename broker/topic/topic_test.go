package topic

import "testing"

func TestMatch(t *testing.T) {
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
			if got := Match(tc.filter, tc.topic); got != tc.want {
				t.Fatalf("Match(%q, %q) = %v", tc.filter, tc.topic, got)
			}
		})
	}
}

func TestCovers(t *testing.T) {
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
			if got := Covers(tc.perm, tc.sub); got != tc.want {
				t.Fatalf("Covers(%q, %q) = %v", tc.perm, tc.sub, got)
			}
		})
	}
}

func TestValidFilter(t *testing.T) {
	for f, want := range map[string]bool{"a/b": true, "a/+/c": true, "#": true, "a/#": true, "a/#/b": false, "a+": false, "": false, "a/b#": false} {
		if ValidFilter(f) != want {
			t.Errorf("ValidFilter(%q) = %v", f, !want)
		}
	}
}
