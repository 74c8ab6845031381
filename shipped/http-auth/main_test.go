package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func mustConfig(t *testing.T, raw string) {
	t.Helper()
	s, err := parseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	cfg = s
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct{ name, in, err string }{
		{name: "minimal", in: `{"url":"http://127.0.0.1:8080/auth"}`},
		{name: "full", in: `{"url":"https://auth.internal/mqtt","headers":{"Authorization":"Bearer x"},"password_encoding":"base64","cache_ttl":"5m","deny_cache_ttl":0,"fallback":"allow","fallback_permissions":{"subscribe":["status/#"]}}`},
		{name: "no url", in: `{}`, err: "config.url: required: the endpoint's http:// or https:// URL"},
		{name: "bad url", in: `{"url":"127.0.0.1:8080"}`, err: `config.url: "127.0.0.1:8080" is not an http:// or https:// URL`},
		{name: "typo", in: `{"url":"http://a/","cache_tll":"1m"}`, err: `config: unknown key "cache_tll" (known: url, headers, password_encoding, cache_ttl, deny_cache_ttl, fallback, fallback_permissions, default_permissions)`},
		{name: "encoding", in: `{"url":"http://a/","password_encoding":"hex"}`, err: `config.password_encoding: "hex", want string or base64`},
		{name: "ttl", in: `{"url":"http://a/","cache_ttl":"2d"}`, err: `config.cache_ttl: "2d" is not a duration such as "30s" or a whole number of seconds`},
		{name: "ttl too long", in: `{"url":"http://a/","cache_ttl":"25h"}`, err: `config.cache_ttl: 25h0m0s out of range 0s-24h0m0s`},
		{name: "fallback", in: `{"url":"http://a/","fallback":"open"}`, err: `config.fallback: "open", want deny, allow or next`},
		{name: "fallback permissions without allow", in: `{"url":"http://a/","fallback_permissions":{"all":["#"]}}`, err: `config.fallback_permissions: only used with fallback allow (fallback is deny)`},
		{name: "bad fallback filter", in: `{"url":"http://a/","fallback":"allow","fallback_permissions":{"all":["a#"]}}`, err: `config.fallback_permissions: all[0] "a#": level 1 ("a#"): a wildcard must be the whole level`},
		{name: "reserved header", in: `{"url":"http://a/","headers":{"content-type":"text/plain"}}`, err: `config.headers: content-type is set by http-auth or the broker`},
		{name: "bad header", in: `{"url":"http://a/","headers":{"X-A":"1\r\nX-B: 2"}}`, err: `config.headers.X-A: the value holds a NUL, CR or LF`},
		{name: "NUL in value", in: `{"url":"http://a/","headers":{"X-A":"a\u0000b"}}`, err: `config.headers.X-A: the value holds a NUL, CR or LF`},
		{name: "slash in name", in: `{"url":"http://a/","headers":{"X-Hook/Key":"s3cret"}}`, err: "config.headers: \"X-Hook/Key\" is not a valid header name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~, at most 256 bytes)"},
		{name: "space in name", in: `{"url":"http://a/","headers":{"X Key":"s"}}`, err: "config.headers: \"X Key\" is not a valid header name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~, at most 256 bytes)"},
		{name: "empty name", in: `{"url":"http://a/","headers":{"":"s"}}`, err: "config.headers: \"\" is not a valid header name (an HTTP token: letters, digits and !#$%&'*+-.^_`|~, at most 256 bytes)"},
		{name: "headers type", in: `{"url":"http://a/","headers":["x"]}`, err: `config.headers: a list, want an object`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.in))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Fatalf("got %q, want %q", got, tc.err)
			}
		})
	}
	s, _ := parseConfig([]byte(`{"url":"http://user:secret@auth.internal/x?key=s3cret"}`))
	if s.logURL != "http://xxxxx@auth.internal/x?xxxxx" || s.fallback != fallbackDeny || s.cacheTTL != time.Minute || s.denyCacheTTL != 10*time.Second {
		t.Fatalf("defaults and redaction: %+v", s)
	}
}

func TestRequestBody(t *testing.T) {
	mustConfig(t, `{"url":"http://a/"}`)
	c := &propolis.Connect{ClientID: "c1", Username: "u", Password: []byte("pw"), RemoteAddr: "127.0.0.1:5000", ProtocolVersion: 5, Listener: "tcp"}
	b, _ := json.Marshal(newRequest(c))
	want := `{"action":"connect","clientid":"c1","username":"u","password":"pw","password_encoding":"string","peer_addr":"127.0.0.1:5000","protocol_version":5,"listener":"tcp","tls":false}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	c.Password = []byte{0xff, 0x00, 'a'} // not UTF-8: base64 whatever the setting
	if r := newRequest(c); r.Password != "/wBh" || r.PasswordEncoding != "base64" {
		t.Fatalf("binary password: %+v", r)
	}
	mustConfig(t, `{"url":"http://a/","password_encoding":"base64"}`)
	c.Password = []byte("pw")
	if r := newRequest(c); r.Password != "cHc=" || r.PasswordEncoding != "base64" {
		t.Fatalf("base64 setting: %+v", r)
	}
}

func TestResponses(t *testing.T) {
	mustConfig(t, `{"url":"http://a/","cache_ttl":"2m","deny_cache_ttl":"5s","default_permissions":{"subscribe":["public/#"]}}`)
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string // the result, as fmt prints it
		ttl    time.Duration
		err    string
	}{
		{name: "allow with permissions", status: 200, body: `{"result":"allow","permissions":{"publish":["devices/{clientid}/up"],"subscribe":["devices/{clientid}/down"]}}`,
			want: fmt.Sprint(propolis.AuthResult{Verdict: propolis.Allow(), Permissions: []propolis.Permission{propolis.AllowPublish("devices/{clientid}/up"), propolis.AllowSubscribe("devices/{clientid}/down")}}), ttl: 2 * time.Minute},
		{name: "allow with defaults", status: 200, body: `{"result":"allow","extra":1}`,
			want: fmt.Sprint(propolis.AuthResult{Verdict: propolis.Allow(), Permissions: []propolis.Permission{propolis.AllowSubscribe("public/#")}}), ttl: 2 * time.Minute},
		{name: "deny", status: 200, body: `{"result":"deny","reason":"banned"}`, want: fmt.Sprint(denied("banned")), ttl: 5 * time.Second},
		{name: "ignore", status: 200, body: `{"result":"ignore"}`, want: fmt.Sprint(propolis.AuthResult{Verdict: propolis.Next()}), ttl: 2 * time.Minute},
		{name: "403", status: 403, body: `forbidden`, want: fmt.Sprint(denied("")), ttl: 5 * time.Second},
		{name: "401 with reason", status: 401, body: `{"reason":"expired password"}`, want: fmt.Sprint(denied("expired password")), ttl: 5 * time.Second},
		{name: "500", status: 500, err: "HTTP status 500"},
		{name: "404", status: 404, err: "HTTP status 404"},
		{name: "not JSON", status: 200, body: `ok`, err: "status 200 with a body that is not a JSON object: invalid character 'o' looking for beginning of value"},
		{name: "unknown result", status: 200, body: `{"result":"ok"}`, err: `status 200 with result "ok", want "allow", "deny" or "ignore"`},
		{name: "bad permissions", status: 200, body: `{"result":"allow","permissions":{"pub":["x"]}}`, err: `response permissions: want {"publish": [...], "subscribe": [...], "all": [...], "deny": [...]}: json: unknown field "pub"`},
		{name: "bad filter", status: 200, body: `{"result":"allow","permissions":{"all":["#/x"]}}`, err: `response permissions: all[0] "#/x": "#" must be the last level`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, ttl, err := parseResponse(&propolis.HTTPResponse{Status: tc.status, Body: []byte(tc.body)})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.err {
				t.Fatalf("error %q, want %q", got, tc.err)
			}
			if err == nil && (fmt.Sprint(res) != tc.want || ttl != tc.ttl) {
				t.Fatalf("got %s for %s\nwant %s for %s", fmt.Sprint(res), ttl, tc.want, tc.ttl)
			}
		})
	}
}

func TestFallback(t *testing.T) {
	defer func(p func(*propolis.HTTPRequest) (*propolis.HTTPResponse, error)) { post = p }(post)
	var sent *propolis.HTTPRequest
	post = func(r *propolis.HTTPRequest) (*propolis.HTTPResponse, error) {
		sent = r
		return nil, propolis.ErrInternal
	}
	c := &propolis.Connect{ClientID: "c1", Password: []byte("pw")}
	for _, tc := range []struct{ cfg, want string }{
		{`{"url":"http://a/","headers":{"Authorization":"Bearer t"}}`, fmt.Sprint(propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "authentication service unavailable")})},
		{`{"url":"http://a/","fallback":"next"}`, fmt.Sprint(propolis.AuthResult{Verdict: propolis.Next()})},
		{`{"url":"http://a/","fallback":"allow","fallback_permissions":{"subscribe":["status/#"]}}`, fmt.Sprint(propolis.AuthResult{Verdict: propolis.Allow(), Permissions: []propolis.Permission{propolis.AllowSubscribe("status/#")}})},
	} {
		mustConfig(t, tc.cfg)
		if got := fmt.Sprint(authenticate(c)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.cfg, got, tc.want)
		}
	}
	if sent == nil || sent.Method != "POST" || sent.URL != "http://a/" {
		t.Fatalf("request %+v", sent)
	}
	// The configured header went out in the first case.
	mustConfig(t, `{"url":"http://a/","headers":{"Authorization":"Bearer t"}}`)
	authenticate(c)
	if fmt.Sprint(sent.Header) != fmt.Sprint([]propolis.HTTPHeader{{Name: "Content-Type", Value: "application/json"}, {Name: "Accept", Value: "application/json"}, {Name: "Authorization", Value: "Bearer t"}}) {
		t.Fatalf("headers %+v", sent.Header)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{propolis.ErrNotPermitted, "configuration error: propolis: NOT_PERMITTED: the manifest must list http under services and the URL's host under http.hosts"},
		{propolis.ErrInvalidArgument, "configuration error: propolis: INVALID_ARGUMENT: the broker refused the request (url, or a header in config.headers)"},
		{propolis.ErrTooLarge, "propolis: TOO_LARGE: the answer is larger than the manifest's http.max_response"},
		{propolis.ErrInternal, "no answer (propolis: INTERNAL; the broker log has the cause, a timeout is limits.authenticate_deadline)"},
	} {
		post = func(*propolis.HTTPRequest) (*propolis.HTTPResponse, error) { return nil, tc.err }
		if _, _, err := ask(c); !errors.Is(err, tc.err) || err.Error() != tc.want {
			t.Errorf("%v: got %v, want %q", tc.err, err, tc.want)
		}
	}
}

// TestMisconfiguredNeverFallsBack: a request the broker refuses to send
// (INVALID_ARGUMENT, NOT_PERMITTED) is a configuration error, not an
// endpoint failure: the client is refused even with fallback allow or
// next, which would otherwise let everyone in.
func TestMisconfiguredNeverFallsBack(t *testing.T) {
	defer func(p func(*propolis.HTTPRequest) (*propolis.HTTPResponse, error)) { post = p }(post)
	c := &propolis.Connect{ClientID: "c1", Password: []byte("pw")}
	want := fmt.Sprint(propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "authentication service unavailable")})
	for _, fb := range []string{`"allow","fallback_permissions":{"all":["#"]}`, `"next"`, `"deny"`} {
		mustConfig(t, `{"url":"http://a/","fallback":`+fb+`}`)
		for _, e := range []error{propolis.ErrInvalidArgument, propolis.ErrNotPermitted} {
			post = func(*propolis.HTTPRequest) (*propolis.HTTPResponse, error) { return nil, e }
			if got := fmt.Sprint(authenticate(c)); got != want {
				t.Errorf("fallback %s, %v: got %s, want %s", fb, e, got, want)
			}
		}
	}
}
