package main

import (
	"encoding/json"
	"strings"
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func TestLint(t *testing.T) {
	r := rules{MaxLevels: 3, MaxLevelLength: 5, Roots: []string{"dev", "app"}}
	for _, tc := range []struct{ topic, want string }{
		{"dev/a-1/t_2", ""},
		{"app/x.y", ""},
		{"dev", ""},
		{"dev/a/b/c", "4 levels, at most 3"},
		{"dev//b", `level 2 "": empty`},
		{"dev/b/", `level 3 "": empty`},
		{"/dev", `level 1 "": empty`},
		{"dev/Temp", `level 2 "Temp": character 'T' is not allowed (a-z 0-9 - _ .)`},
		{"dev/a b", `level 2 "a b": character ' ' is not allowed (a-z 0-9 - _ .)`},
		{"dev/abcdef", `level 2 "abcdef": 6 bytes, at most 5`},
		{"dev/é", `level 2 "é": character 'é' is not allowed (a-z 0-9 - _ .)`},
		{"ops/x", `first level "ops" is not one of dev, app`},
	} {
		if got := r.lint(tc.topic, false); got != tc.want {
			t.Errorf("lint(%q) = %q, want %q", tc.topic, got, tc.want)
		}
	}
	r.Uppercase = true
	if got := r.lint("dev/Temp", false); got != "" {
		t.Errorf("upper case allowed: %q", got)
	}
}

func TestLintFilter(t *testing.T) {
	r := rules{MaxLevels: 3, MaxLevelLength: 5, Roots: []string{"dev", "app"}}
	for _, tc := range []struct{ filter, want string }{
		{"dev/+/t_2", ""},
		{"dev/#", ""},
		{"+/a/#", ""},
		{"#", ""},
		{"dev/a/b/#", "4 levels, at most 3"},
		{"dev/#/a", `level 2 "#": character '#' is not allowed (a-z 0-9 - _ .)`},
		{"dev/a+", `level 2 "a+": character '+' is not allowed (a-z 0-9 - _ .)`},
		{"dev//#", `level 2 "": empty`},
		{"ops/#", `first level "ops" is not one of dev, app`},
	} {
		if got := r.lint(tc.filter, true); got != tc.want {
			t.Errorf("lint(%q, filter) = %q, want %q", tc.filter, got, tc.want)
		}
	}
	// A topic name may not hold a wildcard.
	if got := r.lint("dev/+", false); got != `level 2 "+": character '+' is not allowed (a-z 0-9 - _ .)` {
		t.Errorf("a wildcard in a topic name: %q", got)
	}
}

func TestAuthorizeSubscribe(t *testing.T) {
	cfg = rules{MaxLevels: 8, MaxLevelLength: 64, Roots: []string{"devices"}} // cache_seconds 0: no host call outside Wasm
	defer func() { cfg = defaults }()
	for _, tc := range []struct {
		s    propolis.Subscribe
		want propolis.Decision
	}{
		{propolis.Subscribe{Filter: "devices/+/temp"}, propolis.DecisionNext},
		{propolis.Subscribe{Filter: "$SYS/#"}, propolis.DecisionNext},
		{propolis.Subscribe{Filter: "$share/Group-1/devices/#", Shared: true}, propolis.DecisionNext},
		{propolis.Subscribe{Filter: "$share/g/Devices/#", Shared: true}, propolis.DecisionDeny},
		{propolis.Subscribe{Filter: "ops/#"}, propolis.DecisionDeny},
	} {
		v := authorizeSubscribe(&tc.s)
		if v.Decision != tc.want || v.Decision == propolis.DecisionDeny && v.Code != propolis.CodeTopicFilterInvalid {
			t.Errorf("%q: %+v, want %v", tc.s.Filter, v, tc.want)
		}
	}
}

func TestAuthorizePublish(t *testing.T) {
	cfg = rules{MaxLevels: 8, MaxLevelLength: 64} // cache_seconds 0: no host call outside Wasm
	defer func() { cfg = defaults }()
	if v := authorizePublish(&propolis.Publish{Topic: "bench/pub0"}); v.Decision != propolis.DecisionNext {
		t.Fatalf("valid topic: %+v", v)
	}
	v := authorizePublish(&propolis.Publish{Topic: "Bench/pub0"})
	if v.Decision != propolis.DecisionDeny || v.Code != propolis.CodeTopicNameInvalid || !strings.Contains(v.Reason, `level 1 "Bench"`) {
		t.Fatalf("invalid topic: %+v", v)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{``, ""},
		{`{"max_levels": 3, "roots": ["devices"], "cache_seconds": 0}`, ""},
		{`{"max_level": 3}`, `topic-lint: config: unknown key "max_level"`},
		{`{"max_levels": 0}`, "topic-lint: config.max_levels: 0, want at least 1"},
		{`{"cache_seconds": 86401}`, "topic-lint: config.cache_seconds: 86401, want 0 to 86400"},
		{`{"roots": ["dev/ice"]}`, `topic-lint: config.roots[0]: "dev/ice": character '/' is not allowed (a-z 0-9 - _ .)`},
		{`{"max_levels": "8"}`, "topic-lint: config.max_levels: a string, want an integer"},
	} {
		var raw json.RawMessage
		if tc.config != "" {
			raw = json.RawMessage(tc.config)
		}
		err := start(propolis.StartInfo{Config: raw, Instance: 1})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("config %s: %v", tc.config, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("config %s: %v, want %q...", tc.config, err, tc.want)
		}
	}
	cfg = defaults
}
