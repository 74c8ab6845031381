package propolis

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type testRule struct {
	Topic string `json:"topic"`
	QoS   uint8  `json:"qos,omitempty"`
}

type testEmbedded struct {
	Level string `json:"level"`
}

type testConfig struct {
	testEmbedded
	Prefix  string               `json:"prefix"`
	Limit   uint32               `json:"limit"`
	Rules   []testRule           `json:"rules"`
	ByName  map[string]testRule  `json:"by_name"`
	Nested  *struct{ Depth int } `json:"nested"`
	Raw     json.RawMessage      `json:"raw"`
	Free    any                  `json:"free"`
	Window  testDuration         `json:"window"`
	Ignored string               `json:"-"`
	NoTag   bool
}

// testDuration decodes itself (a duration string), so DecodeConfig leaves
// its shape to it.
type testDuration struct{ time.Duration }

func (d *testDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	d.Duration = v
	return err
}

func TestDecodeConfigStrict(t *testing.T) {
	for _, tc := range []struct {
		name, config, err string
	}{
		{"valid", `{"prefix":"a","limit":3,"level":"info","rules":[{"topic":"x","qos":1}],
			"by_name":{"any-key":{"topic":"y"}},"nested":{"depth":2},"raw":{"whatever":[1]},
			"free":{"k":{"j":1}},"window":"5s","NoTag":false}`, ""},
		{"top-level typo", `{"prefx":"a"}`, `config: unknown key "prefx" (known: level, prefix, limit, rules, by_name, nested, raw, free, window, NoTag)`},
		{"in a list", `{"rules":[{"topic":"x"},{"tpoic":"y"}]}`, `config.rules[1]: unknown key "tpoic" (known: topic, qos)`},
		{"in a map value", `{"by_name":{"a":{"topic":"x","qso":1}}}`, `config.by_name.a: unknown key "qso" (known: topic, qos)`},
		{"behind a pointer", `{"nested":{"Depth":1,"width":2}}`, `config.nested: unknown key "width" (known: Depth)`},
		{"ignored field", `{"Ignored":"x"}`, `config: unknown key "Ignored"`},
		{"wrong type", `{"limit":"ten"}`, `config.limit: a string, want a whole number that fits uint32`},
		{"negative", `{"limit":-1}`, `config.limit: the number -1, want a whole number that fits uint32`},
		{"nested wrong type", `{"rules":[{"topic":5}]}`, `config.rules[0].topic: the number 5, want a string`},
		{"too big", `{"rules":[{"topic":"x","qos":300}]}`, `config.rules[0].qos: the number 300, want a whole number that fits uint8`},
		{"fraction", `{"limit":1.5}`, `config.limit: the number 1.5, want a whole number that fits uint32`},
		{"object for a list", `{"rules":{"topic":"x"}}`, `config.rules: an object, want a list`},
		{"list for an object", `[1]`, `config: a list, want an object`},
		{"null", `{"rules":null,"prefix":null}`, ""},
		{"two values", `{"prefix":"a"} {}`, `config: more than one JSON value`},
		{"syntax", `{"prefix":`, `config: unexpected EOF`},
		{"own decoder's error", `{"window":"soon"}`, `config.window: time: invalid duration "soon"`},
		{"own decoder's type error", `{"rules":[{"topic":"x"}],"free":1,"window":5}`, `config.window: a number, want a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg testConfig
			err := StartInfo{Config: []byte(tc.config)}.DecodeConfig(&cfg)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("DecodeConfig: %v", err)
			case tc.err != "" && err == nil:
				t.Fatalf("DecodeConfig accepted %s: %+v", tc.config, cfg)
			case tc.err != "" && !strings.HasPrefix(err.Error(), tc.err):
				t.Fatalf("error %q, want it to start with %q", err, tc.err)
			}
			if tc.name == "valid" && (cfg.Prefix != "a" || cfg.Limit != 3 || cfg.Level != "info" || cfg.Nested.Depth != 2 || cfg.Window.Duration != 5*time.Second || len(cfg.Rules) != 1 || cfg.ByName["any-key"].Topic != "y") {
				t.Fatalf("decoded %+v", cfg)
			}
		})
	}
}

// A map target takes any key; a tagged field's key must match with its
// case (encoding/json would take "PREFIX" for "prefix"), and the error
// names the key meant; an untagged field takes its name in any case.
func TestDecodeConfigMapsAndCase(t *testing.T) {
	var m map[string]int
	if err := (StartInfo{Config: []byte(`{"a":1,"b":2}`)}).DecodeConfig(&m); err != nil || m["b"] != 2 {
		t.Fatalf("map: %v %v", m, err)
	}
	var cfg testConfig
	err := StartInfo{Config: []byte(`{"PREFIX":"p"}`)}.DecodeConfig(&cfg)
	if want := `config: unknown key "PREFIX" (did you mean "prefix"? keys are case-sensitive)`; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	if err := (StartInfo{Config: []byte(`{"notag":true}`)}).DecodeConfig(&cfg); err != nil || !cfg.NoTag {
		t.Fatalf("untagged field in another case: %+v %v", cfg, err)
	}
}
