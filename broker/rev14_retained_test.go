package broker_test

import (
	"slices"
	"sort"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// ListRetained must list exactly the retained topics an MQTT subscriber with
// the filter would receive (spec 4.7.1.2: "sport/#" matches "sport").
func TestRev14ListRetainedMatchesSpec(t *testing.T) {
	b := startAdmin(t)
	topics := []string{"a", "a/b", "a/b/c", "a/b/c/d", "/x", "/", "x/", "a//b", "$x", "$x/y", "$SYS/z"}
	for _, tp := range topics {
		if err := b.PutRetained(broker.Message{Topic: tp, Payload: []byte("p")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"#", "a/#", "a/b/#", "+/#", "+", "+/+", "/#", "a/+/#", "a/+/b", "+/+/+", "$x/#", "$x", "$SYS/#", "a/b/c/#", "#/", "x/+"} {
		if !topic.ValidFilter(f) {
			continue
		}
		var want []string
		for _, tp := range topics {
			if topic.Match(f, tp) {
				want = append(want, tp)
			}
		}
		sort.Strings(want)
		msgs, _, total, err := b.ListRetained(f, "", 0)
		var got []string
		for _, m := range msgs {
			got = append(got, m.Topic)
		}
		if err != nil || !slices.Equal(got, want) || total != len(want) {
			t.Errorf("ListRetained(%q) = %q total %d %v; want %q", f, got, total, err, want)
		}
	}
}
