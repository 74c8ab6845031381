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
		{"#", "$SYS/#", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/broker/+", true},
	} {
		t.Run(tc.perm+" "+tc.sub, func(t *testing.T) {
			if got := Covers(tc.perm, tc.sub); got != tc.want {
				t.Fatalf("Covers(%q, %q) = %v", tc.perm, tc.sub, got)
			}
		})
	}
}

func TestIntersects(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"secret/#", "#", true},
		{"secret/#", "+/plans", true},
		{"secret/#", "public/#", false},
		{"a/+/c", "a/b/+", true},
		{"a/b", "a/b/c", false},
		{"a/#", "a", true},
		{"a", "a/#", true},
		{"a/+", "a", false},
		{"$SYS/#", "#", false},
		{"$SYS/#", "$SYS/+", true},
		{"+/+", "+", false},
	} {
		if got := Intersects(tc.a, tc.b); got != tc.want {
			t.Errorf("Intersects(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := Intersects(tc.b, tc.a); got != tc.want {
			t.Errorf("Intersects(%q, %q) = %v (swapped)", tc.b, tc.a, got)
		}
	}
}

// TestIntersectsByExample checks Intersects and Covers against Match over
// every filter and topic of a small alphabet: two filters intersect when a
// topic matches both, and one covers another when every topic matching the
// second matches the first.
func TestIntersectsByExample(t *testing.T) {
	var filters, topics []string
	var grow func(prefix string, depth int, levels []string, out *[]string, hash bool)
	grow = func(prefix string, depth int, levels []string, out *[]string, hash bool) {
		if depth == 0 {
			return
		}
		for _, l := range levels {
			f := l
			if prefix != "" {
				f = prefix + "/" + l
			}
			*out = append(*out, f)
			if hash {
				*out = append(*out, f+"/#")
			}
			grow(f, depth-1, levels, out, hash)
		}
	}
	grow("", 3, []string{"a", "b", "+", "$s"}, &filters, true)
	filters = append(filters, "#")
	grow("", 4, []string{"a", "b", "c", "$s", ""}, &topics, false)
	for _, a := range filters {
		for _, b := range filters {
			both, bOnly := false, false
			for _, tp := range topics {
				ma, mb := Match(a, tp), Match(b, tp)
				both = both || ma && mb
				bOnly = bOnly || mb && !ma
			}
			if got := Intersects(a, b); got != both {
				t.Fatalf("Intersects(%q, %q) = %v, want %v", a, b, got, both)
			}
			if got := Covers(a, b); got && bOnly {
				t.Fatalf("Covers(%q, %q) = true, but a topic matches %q only", a, b, b)
			}
		}
	}
}

func TestValidFilter(t *testing.T) {
	for f, want := range map[string]bool{"a/b": true, "a/+/c": true, "#": true, "a/#": true, "a/#/b": false, "a+": false, "": false, "a/b#": false} {
		if ValidFilter(f) != want {
			t.Errorf("ValidFilter(%q) = %v", f, !want)
		}
	}
}

// TestCheckFilter: CheckFilter says why a filter is bad, and agrees with
// ValidFilter.
func TestCheckFilter(t *testing.T) {
	for f, want := range map[string]string{
		"a/#":         "",
		"+/b/#":       "",
		"":            "empty",
		"sensors/#/x": `"#" must be the last level`,
		"a/b+":        `level 2 ("b+"): a wildcard must be the whole level`,
		"#a":          `level 1 ("#a"): a wildcard must be the whole level`,
	} {
		got := ""
		if err := CheckFilter(f); err != nil {
			got = err.Error()
		}
		if got != want || ValidFilter(f) != (want == "") {
			t.Errorf("CheckFilter(%q) = %q, ValidFilter %v; want %q", f, got, ValidFilter(f), want)
		}
	}
}
