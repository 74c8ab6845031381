package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func TestParseConfig(t *testing.T) {
	def := defaultConfig()
	for _, tc := range []struct {
		name, in string
		want     config
		err      string
	}{
		{"absent", "", def, ""},
		{"empty object", "{}", def, ""},
		{"every key", `{"topics":["plant/+/line/#","lab/x"],"time_property":"ts","client_property":"from","wrap_text":false,"max_text":100}`,
			config{Topics: []string{"plant/+/line/#", "lab/x"}, TimeProperty: "ts", ClientProperty: "from", WrapText: false, MaxText: 100}, ""},
		{"properties off", `{"time_property":"","client_property":""}`,
			config{Topics: []string{"#"}, WrapText: true, MaxText: defaultMaxText}, ""},
		{"misspelt key", `{"topic":["a"]}`, config{}, `payload-enricher: config: unknown key "topic" (known: topics, time_property, client_property, wrap_text, max_text)`},
		{"wrong type", `{"max_text":"64KiB"}`, config{}, `payload-enricher: config.max_text: a string, want an integer that fits int`},
		{"topics not a list", `{"topics":"a/#"}`, config{}, `payload-enricher: config.topics: a string, want a list`},
		{"no topics", `{"topics":[]}`, config{}, `payload-enricher: config: topics: empty; list at least one topic filter ("#" for every topic)`},
		{"bad filter", `{"topics":["a/#","a/b#"]}`, config{}, `payload-enricher: config: topics[1]: "a/b#": level 2 ("b#"): a wildcard must be the whole level`},
		{"hash not last", `{"topics":["#/a"]}`, config{}, `payload-enricher: config: topics[0]: "#/a": "#" must be the last level`},
		{"empty filter", `{"topics":[""]}`, config{}, `payload-enricher: config: topics[0]: "": empty topic filter`},
		{"shared", `{"topics":["$share/g/a"]}`, config{}, `payload-enricher: config: topics[0]: "$share/g/a": a shared subscription is not a topic filter here`},
		{"same keys", `{"time_property":"x","client_property":"x"}`, config{}, `payload-enricher: config: time_property and client_property are both "x"`},
		{"max_text 0", `{"max_text":0}`, config{}, `payload-enricher: config: max_text: 0 out of range 1-2097152`},
		{"max_text too large", `{"max_text":3000000}`, config{}, `payload-enricher: config: max_text: 3000000 out of range 1-2097152`},
		{"NUL in a key", `{"client_property":"a\u0000b"}`, config{}, `payload-enricher: config: client_property: "a\x00b" is not a user property key (UTF-8, no U+0000, at most 1,024 bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig([]byte(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestManifestConfig: the config of the shipped manifest parses, and is
// the default.
func TestManifestConfig(t *testing.T) {
	// The manifest's config section, as the broker hands it over (JSON).
	got, err := parseConfig([]byte(`{"topics":["#"],"time_property":"received-at","client_property":"client-id","wrap_text":true,"max_text":65536}`))
	if err != nil || !reflect.DeepEqual(got, defaultConfig()) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestEnrich(t *testing.T) {
	now := time.Date(2026, 11, 29, 18, 5, 0, 123456789, time.FixedZone("CET", 3600))
	const stamp = "2026-11-29T17:05:00.123Z"
	def := defaultConfig()
	noWrap := def
	noWrap.WrapText = false
	small := def
	small.MaxText = 4
	noProps := def
	noProps.TimeProperty, noProps.ClientProperty = "", ""
	for _, tc := range []struct {
		name    string
		c       config
		payload string
		props   []propolis.UserProperty
		// wantProps nil: properties unchanged; wantPayload "": unchanged.
		wantProps   []propolis.UserProperty
		wantPayload string
	}{
		{"plain text is wrapped", def, "hello <world> & \"you\"", nil,
			props("received-at", stamp, "client-id", "c1"),
			`{"client":"c1","time":"2026-11-29T17:05:00.123Z","text":"hello <world> & \"you\""}`},
		{"JSON object left", def, `{"t":21.5}`, nil,
			props("received-at", stamp, "client-id", "c1"), ""},
		{"JSON number left", def, "21.5", nil,
			props("received-at", stamp, "client-id", "c1"), ""},
		{"binary left", def, "\xff\x00\x01", nil,
			props("received-at", stamp, "client-id", "c1"), ""},
		{"empty left (clears a retained message)", def, "", nil,
			props("received-at", stamp, "client-id", "c1"), ""},
		{"longer than max_text left", small, "hello", nil,
			props("received-at", stamp, "client-id", "c1"), ""},
		{"max_text exactly", small, "hey!", nil,
			props("received-at", stamp, "client-id", "c1"),
			`{"client":"c1","time":"2026-11-29T17:05:00.123Z","text":"hey!"}`},
		{"wrapping off", noWrap, "hello", nil,
			props("received-at", stamp, "client-id", "c1"), ""},
		{"publisher's own stamps replaced, others kept in order", def, "{}",
			props("client-id", "forged", "a", "1", "received-at", "1999", "b", "2", "a", "3"),
			props("a", "1", "b", "2", "a", "3", "received-at", stamp, "client-id", "c1"), ""},
		{"no properties configured", noProps, "hi", props("k", "v"), nil,
			`{"client":"c1","time":"2026-11-29T17:05:00.123Z","text":"hi"}`},
		{"control characters escaped", def, "a\tb\nc", nil,
			props("received-at", stamp, "client-id", "c1"),
			`{"client":"c1","time":"2026-11-29T17:05:00.123Z","text":"a\tb\nc"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			ch := enrich(&c, "c1", []byte(tc.payload), tc.props, now)
			if !reflect.DeepEqual(ch.properties, tc.wantProps) {
				t.Errorf("properties %q, want %q", ch.properties, tc.wantProps)
			}
			if string(ch.payload) != tc.wantPayload {
				t.Errorf("payload %s, want %s", ch.payload, tc.wantPayload)
			}
			if ch.payload != nil {
				var w wrapped
				if err := json.Unmarshal(ch.payload, &w); err != nil || w.Text != tc.payload || w.Client != "c1" || w.Time != stamp {
					t.Errorf("wrapped payload reads back as %+v, %v", w, err)
				}
			}
		})
	}
}

// TestEnrichCopiesPayload: the payload is a view of the record, valid only
// during the call; the wrapped payload must not share it.
func TestEnrichCopiesPayload(t *testing.T) {
	payload := []byte("text")
	c := defaultConfig()
	ch := enrich(&c, "c1", payload, nil, time.Unix(0, 0))
	payload[0] = 'X'
	if !strings.Contains(string(ch.payload), `"text":"text"`) {
		t.Fatalf("the wrapped payload changed with the record: %s", ch.payload)
	}
}

// props builds a list of user properties from keys and values.
func props(kv ...string) []propolis.UserProperty {
	var out []propolis.UserProperty
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, propolis.UserProperty{Key: kv[i], Value: kv[i+1]})
	}
	return out
}
