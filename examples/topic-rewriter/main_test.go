package main

import (
	"strings"
	"testing"
)

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, err string }{
		{"absent", ``, `topic-rewriter: config: rules: none; give at least one {from, to} rule`},
		{"no rules", `{"rules":[]}`, `topic-rewriter: config: rules: none; give at least one {from, to} rule`},
		{"misspelt key", `{"rule":[{"from":"a","to":"b"}]}`, `topic-rewriter: config: unknown key "rule" (known: rules, original_topic_property)`},
		{"misspelt rule key", `{"rules":[{"from":"a","too":"b"}]}`, `topic-rewriter: config.rules[0]: unknown key "too" (known: from, to)`},
		{"rules not a list", `{"rules":{"from":"a","to":"b"}}`,
			`topic-rewriter: config.rules: an object, want a list`},
		{"from missing", `{"rules":[{"to":"b"}]}`, `topic-rewriter: config: rules[0].from: "": empty topic filter`},
		{"bad from", `{"rules":[{"from":"a","to":"b"},{"from":"legacy/x+","to":"b"}]}`,
			`topic-rewriter: config: rules[1].from: "legacy/x+": level 2 ("x+"): a wildcard must be the whole level`},
		{"hash not last", `{"rules":[{"from":"#/a","to":"b"}]}`, `topic-rewriter: config: rules[0].from: "#/a": "#" must be the last level`},
		{"shared from", `{"rules":[{"from":"$share/g/a","to":"b"}]}`,
			`topic-rewriter: config: rules[0].from: "$share/g/a": a shared subscription is not a topic filter here`},
		{"to missing", `{"rules":[{"from":"a"}]}`, `topic-rewriter: config: rules[0].to: empty`},
		{"wildcard in to", `{"rules":[{"from":"a/+","to":"b/+"}]}`,
			`topic-rewriter: config: rules[0].to: "b/+": a topic name has no wildcards; write {1}, {2}, ... for what from's wildcards matched`},
		{"$ in to", `{"rules":[{"from":"a","to":"$SYS/a"}]}`, `topic-rewriter: config: rules[0].to: "$SYS/a": topics starting with $ are the broker's`},
		{"capture beyond the wildcards", `{"rules":[{"from":"legacy/+/temp","to":"sensors/{2}/temperature"}]}`,
			`topic-rewriter: config: rules[0].to: "sensors/{2}/temperature": {2}, but from "legacy/+/temp" has 1 wildcards`},
		{"capture 0", `{"rules":[{"from":"a/+","to":"b/{0}"}]}`, `topic-rewriter: config: rules[0].to: "b/{0}": {0}: wildcards are numbered from {1}`},
		{"too many wildcards", `{"rules":[{"from":"` + strings.Repeat("+/", 17) + `#","to":"b"}]}`,
			`topic-rewriter: config: rules[0].from: "` + strings.Repeat("+/", 17) + `#": 18 wildcards, at most 16`},
		{"bad property", `{"rules":[{"from":"a","to":"b"}],"original_topic_property":"a\u0000"}`,
			`topic-rewriter: config: original_topic_property: "a\x00" is not a user property key (UTF-8, no U+0000, at most 1,024 bytes)`},
		{"property wrong type", `{"rules":[{"from":"a","to":"b"}],"original_topic_property":true}`,
			`topic-rewriter: config.original_topic_property: a boolean, want a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.in))
			if err == nil || err.Error() != tc.err {
				t.Fatalf("error %v\nwant %s", err, tc.err)
			}
		})
	}
}

// manifestConfig is the config of the shipped manifest, as the broker hands
// it over (JSON).
const manifestConfig = `{"rules":[
	{"from":"legacy/+/temp","to":"sensors/{1}/temperature"},
	{"from":"legacy/+/hum","to":"sensors/{1}/humidity"},
	{"from":"devices/+/cmd","to":"legacy/{1}/command"}],
	"original_topic_property":"original-topic"}`

func TestRewrite(t *testing.T) {
	c, err := parseConfig([]byte(`{"rules":[
		{"from":"legacy/+/temp","to":"sensors/{1}/temperature"},
		{"from":"legacy/+/+/reading","to":"plants/{2}/lines/{1}"},
		{"from":"legacy/+/#","to":"sensors/{1}/other/{2}"},
		{"from":"+/status","to":"status/{1}"},
		{"from":"fixed","to":"moved/here"},
		{"from":"braces/+","to":"b/{x}/{1}{1}/{}"},
		{"from":"empty/+","to":"{1}"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want string }{
		{"legacy/s1/temp", "sensors/s1/temperature"},
		{"legacy//temp", "sensors//temperature"}, // "+" matches an empty level
		{"legacy/s1/temp/x", "sensors/s1/other/temp/x"},
		{"legacy/a/b/reading", "plants/b/lines/a"},
		{"legacy/s1/hum", "sensors/s1/other/hum"}, // the first matching rule wins
		{"legacy/s1", ""}, // "#" needs a level
		{"legacy", ""},
		{"dev1/status", "status/dev1"},
		{"$SYS/status", ""}, // a leading wildcard does not match $ topics
		{"fixed", "moved/here"},
		{"fixed/", ""},
		{"braces/7", "b/{x}/77/{}"},
		{"empty/", ""}, // the result would be no topic name
		{"empty/x", "x"},
		{"other", ""},
	} {
		got, ok := c.rewrite(tc.in)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("rewrite(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

func TestManifestRules(t *testing.T) {
	c, err := parseConfig([]byte(manifestConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.OriginalProperty != "original-topic" || len(c.Rules) != 3 {
		t.Fatalf("got %+v", c)
	}
	for in, want := range map[string]string{
		"legacy/s1/temp": "sensors/s1/temperature",
		"legacy/s1/hum":  "sensors/s1/humidity",
		"devices/d7/cmd": "legacy/d7/command",
	} {
		if got, ok := c.rewrite(in); !ok || got != want {
			t.Errorf("rewrite(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestRewriteTooLong: a result beyond 65,535 bytes is no topic name; the
// topic is left as it is rather than failing the call.
func TestRewriteTooLong(t *testing.T) {
	c, err := parseConfig([]byte(`{"rules":[{"from":"a/#","to":"{1}/{1}"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	long := "a/" + strings.Repeat("x", 40000)
	if got, ok := c.rewrite(long); ok {
		t.Fatalf("rewrote to %d bytes", len(got))
	}
	if got, ok := c.rewrite("a/b"); !ok || got != "b/b" {
		t.Fatalf("rewrite(a/b) = %q, %v", got, ok)
	}
}

func BenchmarkRewrite(b *testing.B) {
	c, err := parseConfig([]byte(manifestConfig))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if got, ok := c.rewrite("legacy/sensor-0042/hum"); !ok || got != "sensors/sensor-0042/humidity" {
			b.Fatal(got)
		}
	}
}
