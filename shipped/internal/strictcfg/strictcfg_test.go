package strictcfg

import (
	"testing"
	"time"
)

type sample struct {
	URL     string            `json:"url"`
	TTL     string            `json:"cache_ttl"`
	Enabled bool              `json:"enabled"`
	Aud     Strings           `json:"audience"`
	Inner   struct{ N int }   `json:"inner"`
	Headers map[string]string `json:"headers"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{name: "empty", in: ""},
		{name: "null", in: "null"},
		{name: "ok", in: `{"url":"http://x","audience":["a","b"],"inner":{"N":3}}`},
		{name: "audience string", in: `{"audience":"a"}`},
		{name: "unknown key", in: `{"urll":"x"}`, err: `config: unknown key "urll" (known: url, cache_ttl, enabled, audience, inner, headers)`},
		{name: "mistyped", in: `{"url":3}`, err: `config.url: the number 3, want a string`},
		{name: "mistyped bool", in: `{"enabled":"yes"}`, err: `config.enabled: a string, want true or false`},
		{name: "mistyped nested", in: `{"inner":{"N":"x"}}`, err: `config.inner.N: a string, want an integer that fits int`},
		{name: "mistyped map", in: `{"headers":[1]}`, err: `config.headers: a list, want an object`},
		{name: "audience number", in: `{"audience":3}`, err: `config.audience: want a string or a list of strings`},
		{name: "not a mapping", in: `[1]`, err: `config: a list, want an object`},
		{name: "trailing", in: `{} {}`, err: `config: more than one JSON value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s sample
			err := Decode([]byte(tc.in), &s)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Fatalf("got error %q, want %q", got, tc.err)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "", want: time.Minute},
		{in: "30s", want: 30 * time.Second},
		{in: "90", want: 90 * time.Second},
		{in: "soon", err: `config.ttl: "soon" is not a duration such as "30s" or a whole number of seconds`},
		{in: "48h", err: `config.ttl: 48h0m0s out of range 0s-24h0m0s`},
		{in: "-1s", err: `config.ttl: -1s out of range 0s-24h0m0s`},
	} {
		got, err := Duration("ttl", DurationText(tc.in), time.Minute, 0, 24*time.Hour)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if got != tc.want || msg != tc.err {
			t.Errorf("Duration(%q) = %v, %q; want %v, %q", tc.in, got, msg, tc.want, tc.err)
		}
	}
}

func TestDurationText(t *testing.T) {
	var v struct {
		A DurationText `json:"a"`
		B DurationText `json:"b"`
	}
	if err := Decode([]byte(`{"a":"5m","b":90}`), &v); err != nil || v.A != "5m" || v.B != "90" {
		t.Fatalf("%+v, %v", v, err)
	}
	if err := Decode([]byte(`{"a":-1}`), &v); err == nil || err.Error() != `config.a: want a duration such as "30s" or a whole number of seconds` {
		t.Fatalf("negative: %v", err)
	}
}
