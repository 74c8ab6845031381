package cluster

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

func TestRoutingSubject(t *testing.T) {
	cases := []struct {
		topic string
		depth int
		want  string
	}{
		{"a", 1, "pm.a"},
		{"a/b/c", 1, "pm.a"},
		{"a/b/c", 2, "pm.a.b"},
		{"a", 3, "pm.a.~~.~~"},
		{"Sensor_1-x/t", 2, "pm.Sensor_1-x.t"},
		{"/a", 2, "pm.~.a"},       // the empty level: '~' and no bytes
		{"a/", 2, "pm.a.~"},       // a trailing empty level is a level
		{"a.b/c", 1, "pm.~c4n64"}, // '.' is not a token character
		{"~x", 1, "pm.~fps0"},
		{"$SYS/x", 1, "pm.~4h9liko"},
		{"é", 1, "pm.~oekg"},
		{"*/>", 2, "pm.~58.~7o"},
	}
	for _, c := range cases {
		if got := routingSubject(c.topic, c.depth); got != c.want {
			t.Errorf("routingSubject(%q, %d) = %q, want %q", c.topic, c.depth, got, c.want)
		}
	}
}

func TestFilterSubject(t *testing.T) {
	cases := []struct {
		filter string
		depth  int
		want   string
	}{
		{"a", 1, "pm.a"},
		{"a/b", 1, "pm.a"},
		{"a", 2, "pm.a.~~"},
		{"+", 1, "pm.*"},
		{"+", 2, "pm.*.~~"},
		{"#", 1, "pm.>"},
		{"#", 3, "pm.>"},
		{"a/#", 1, "pm.a"},
		{"a/#", 2, "pm.a.>"}, // also "a" itself: pm.a.~~
		{"a/+/c", 2, "pm.a.*"},
		{"a.b/#", 2, "pm.~c4n64.>"},
		{"/+", 2, "pm.~.*"},
	}
	for _, c := range cases {
		if got := filterSubject(c.filter, c.depth); got != c.want {
			t.Errorf("filterSubject(%q, %d) = %q, want %q", c.filter, c.depth, got, c.want)
		}
	}
}

func TestRetainedSubjectRoundTrip(t *testing.T) {
	for _, tp := range []string{"a", "a/b/c", "/", "a//b", "~", "~~", "a.b/c d", "é/$SYS", "x/"} {
		s := retainedSubject(tp)
		got, ok := topicOfRetained(s)
		if !ok || got != tp {
			t.Errorf("topicOfRetained(retainedSubject(%q) = %q) = %q, %v", tp, s, got, ok)
		}
	}
	for _, s := range []string{"pm.a", "pr.~~", "pr.a..b", "pr.~0", "pr.a.b!"} {
		if tp, ok := topicOfRetained(s); ok {
			t.Errorf("topicOfRetained(%q) = %q, want refused", s, tp)
		}
	}
}

// levelAlphabet mixes token characters, characters that force the encoded
// form, and '~'.
const levelAlphabet = "ab_-Z9~. *>$é"

func randomLevel(r *rand.Rand) string {
	n := r.IntN(4) // the empty level too
	var b strings.Builder
	for range n {
		runes := []rune(levelAlphabet)
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	return b.String()
}

func randomTopic(r *rand.Rand) string {
	levels := make([]string, 1+r.IntN(4))
	for i := range levels {
		levels[i] = randomLevel(r)
	}
	return strings.Join(levels, "/")
}

// randomFilter is a filter built from topic t's levels, some replaced by
// '+', possibly cut and ended with '#', so that it often matches t.
func randomFilter(r *rand.Rand, t string) string {
	levels := strings.Split(t, "/")
	if r.IntN(4) == 0 {
		levels = strings.Split(randomTopic(r), "/")
	}
	for i := range levels {
		if r.IntN(3) == 0 {
			levels[i] = "+"
		}
	}
	if r.IntN(3) == 0 {
		levels = append(levels[:r.IntN(len(levels)+1)], "#")
	}
	return strings.Join(levels, "/")
}

// TestSubjectMatchesWhatFilterMatches is the mapping's property: a topic a
// filter matches in MQTT terms has a routing subject the filter's subject
// matches in NATS terms, at every depth; distinct topics have distinct
// retained subjects.
func TestSubjectMatchesWhatFilterMatches(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 2))
	matched := 0
	seen := map[string]string{}
	for range 200000 {
		tp := randomTopic(r)
		f := randomFilter(r, tp)
		if tp == "" || f == "" { // not a topic name or filter in MQTT
			continue
		}
		if !topic.ValidFilter(f) {
			t.Fatalf("generated invalid filter %q", f)
		}
		if rs := retainedSubject(tp); seen[rs] != "" && seen[rs] != tp {
			t.Fatalf("topics %q and %q share retained subject %q", seen[rs], tp, rs)
		} else {
			seen[rs] = tp
		}
		for depth := 1; depth <= 4; depth++ {
			subj, fs := routingSubject(tp, depth), filterSubject(f, depth)
			if !server.IsValidSubject(subj) || !server.IsValidSubject(fs) {
				t.Fatalf("invalid subject: topic %q -> %q, filter %q -> %q", tp, subj, f, fs)
			}
			if topic.Match(f, tp) {
				matched++
				if !server.SubjectMatchesFilter(subj, fs) {
					t.Fatalf("depth %d: filter %q matches topic %q, but subject %q does not match %q", depth, f, tp, fs, subj)
				}
			}
		}
	}
	if matched < 100000 {
		t.Fatalf("only %d matching pairs generated; the property was barely exercised", matched)
	}
}
