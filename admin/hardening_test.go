package admin_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// Tests of what a stranger, a web page the operator visits, or a user
// with few permissions can make the API do: each one was a finding of the
// security review of issue 14.

// TestLoginBadUserName: a login whose user name no user can have (too
// long, a control character) is a 400 before anything is counted, logged
// or audited; a body bigger than a login needs is refused too.
func TestLoginBadUserName(t *testing.T) {
	r := startRig(t, testAdmin())
	for what, name := range map[string]string{"300 bytes": strings.Repeat("n", 300), "newline": "ali\nce", "colon": "a:b"} {
		c := r.req(t, "POST", "/api/v1/login", map[string]string{"user": name, "password": "x"}, nil).want(t, 400, what)
		if !strings.Contains(c.json(t)["error"].(string), "user: bad user name") {
			t.Fatalf("%s: %s", what, c.body)
		}
	}
	r.req(t, "POST", "/api/v1/login", map[string]string{"user": strings.Repeat("n", 1<<20), "password": "x"}, nil).want(t, 400, "1 MiB name")
	if lines := r.auditLines(t); len(lines) != 0 {
		t.Fatalf("audit lines for refused names: %+v", lines)
	}
	if strings.Contains(r.logs.String(), "failed login") {
		t.Fatalf("refused names logged as failed logins:\n%s", r.logs.String())
	}
	// The limits were not touched: victor still has his whole burst.
	for i := range access.DefaultLoginLimits.PerUserBurst {
		r.req(t, "POST", "/api/v1/login", map[string]string{"user": "victor", "password": "guess" + strconv.Itoa(i)}, nil).want(t, 401, "bad password")
	}
}

// TestPayloadHiddenFromViewer: a role without retained.payload learns
// nothing of a payload: asking for JSON or text of a payload that is
// neither answers 200 with payload_hidden, not an error quoting it.
func TestPayloadHiddenFromViewer(t *testing.T) {
	r := startRig(t, testAdmin())
	if err := r.srv.PutRetained(broker.Message{Topic: "s", Payload: []byte("{\"pin\": 4711}\nhunter2")}); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.PutRetained(broker.Message{Topic: "b", Payload: []byte("secret\xff")}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"topic=s&encoding=json", "topic=b&encoding=text", "topic=b"} {
		m := r.req(t, "GET", "/api/v1/retained/message?"+q, nil, bearer("viewer")).want(t, 200, q).json(t)
		if m["payload_hidden"] != true || m["payload"] != nil || m["encoding"] == "hex" {
			t.Fatalf("%s: %v", q, m)
		}
	}
	// With the permission the errors stay.
	r.req(t, "GET", "/api/v1/retained/message?topic=s&encoding=json", nil, bearer("admin")).want(t, 400, "admin, not JSON")
	r.req(t, "GET", "/api/v1/retained/message?topic=s&encoding=nope", nil, bearer("viewer")).want(t, 400, "unknown encoding")
}

// TestRefusalsAudited: refused requests to routes that act are audited,
// whoever they claim to be: bad basic auth, an unknown token, a missing
// CSRF token, another site's Origin; so are refusals of a missing
// permission. Many refusals are throttled, and the next line says how
// many were left out.
func TestRefusalsAudited(t *testing.T) {
	r := startRig(t, testAdmin())
	cookie, _ := r.login(t, "oscar")
	r.req(t, "POST", "/api/v1/clients/x/disconnect", nil, func(h *http.Request) { h.SetBasicAuth("alice", "wrong") }).want(t, 401, "bad basic")
	r.req(t, "POST", "/api/v1/clients/y/disconnect", nil, func(h *http.Request) { h.Header.Set("Authorization", "Bearer nope") }).want(t, 401, "bad bearer")
	r.req(t, "POST", "/api/v1/clients/z/disconnect", nil, withCookie(cookie, "")).want(t, 403, "no CSRF")
	r.req(t, "POST", "/api/v1/clients/w/disconnect", nil, func(h *http.Request) {
		bearer("admin")(h)
		h.Header.Set("Origin", "https://evil.example")
	}).want(t, 403, "evil origin")
	r.mustAudit(t, "alice", "client.disconnect", "x", "denied")
	r.mustAudit(t, "", "client.disconnect", "y", "denied")
	r.mustAudit(t, "oscar", "client.disconnect", "z", "denied")
	r.mustAudit(t, "tok-admin", "client.disconnect", "w", "denied")

	// A flood of refusals writes a bounded number of lines.
	before := len(r.auditLines(t))
	for range 100 {
		r.req(t, "POST", "/api/v1/clients/f/disconnect", nil, bearer("viewer")).want(t, 403, "viewer")
	}
	if n := len(r.auditLines(t)) - before; n >= 100 || n < 1 {
		t.Fatalf("%d audit lines for 100 refusals: want fewer (throttled), at least one", n)
	}
	poll.Until(t, "a refusal line saying how many were left out", func() bool {
		r.req(t, "POST", "/api/v1/clients/f/disconnect", nil, bearer("viewer")).want(t, 403, "viewer")
		for _, e := range r.auditLines(t) {
			if strings.Contains(e.Error, "refused requests before this one, not audited") {
				return true
			}
		}
		return false
	})
}

// TestAuditBeforeAction: an action's attempt line is written before it is
// taken; when the audit log cannot be written the action is refused with
// 503 naming the log, and not taken.
func TestAuditBeforeAction(t *testing.T) {
	r := startRig(t, testAdmin())
	connect5(t, r.mqtt, "victim", nil, nil)
	if err := r.srv.PutRetained(broker.Message{Topic: "keep", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	r.req(t, "DELETE", "/api/v1/retained/message?topic=nothing", nil, bearer("admin")).want(t, 404, "delete nothing")
	lines := r.auditLines(t)
	if len(lines) != 2 || lines[0].Result != "attempt" || lines[1].Result != "error" || lines[0].Target != "nothing" {
		t.Fatalf("want an attempt line then the result: %+v", lines)
	}
	if err := r.auditLog.Close(); err != nil {
		t.Fatal(err)
	}
	c := r.req(t, "POST", "/api/v1/clients/victim/disconnect", nil, bearer("admin")).want(t, 503, "disconnect, audit log closed")
	if !strings.Contains(c.json(t)["error"].(string), "audit log "+r.audit) {
		t.Fatalf("503 does not name the audit log: %s", c.body)
	}
	r.req(t, "DELETE", "/api/v1/retained/message?topic=keep", nil, bearer("admin")).want(t, 503, "delete, audit log closed")
	r.req(t, "POST", "/api/v1/login", map[string]string{"user": "alice", "password": testPassword}, nil).want(t, 503, "login, audit log closed")
	if ci, _ := r.srv.Client("victim"); !ci.Connected {
		t.Fatal("the client was disconnected though the audit log could not be written")
	}
	if _, ok := r.srv.Retained("keep"); !ok {
		t.Fatal("the retained message was deleted though the audit log could not be written")
	}
}

// TestCrossSite: login needs a JSON body with nothing after it; no route
// answers a request a browser makes for another site (Sec-Fetch-Site,
// Origin), GET included; scripts, which send neither, pass.
func TestCrossSite(t *testing.T) {
	r := startRig(t, testAdmin())
	creds := []byte(`{"user":"alice","password":"` + testPassword + `"}`)
	c := r.req(t, "POST", "/api/v1/login", creds, func(h *http.Request) { h.Header.Set("Content-Type", "text/plain") }).want(t, 415, "text/plain login")
	if c.hdr.Get("Set-Cookie") != "" {
		t.Fatalf("a refused login set a cookie: %v", c.hdr)
	}
	r.req(t, "POST", "/api/v1/login", append(creds, " trailing junk="...), nil).want(t, 400, "trailing data")
	r.req(t, "POST", "/api/v1/login", creds, func(h *http.Request) { h.Header.Set("Origin", "https://evil.example") }).want(t, 403, "cross-site Origin login")
	r.req(t, "POST", "/api/v1/login", creds, func(h *http.Request) { h.Header.Set("Sec-Fetch-Site", "cross-site") }).want(t, 403, "cross-site login")
	r.req(t, "POST", "/api/v1/login", creds, func(h *http.Request) { h.Header.Set("Content-Type", "application/json; charset=utf-8") }).want(t, 200, "JSON login")
	r.req(t, "POST", "/api/v1/login", creds, func(h *http.Request) { h.Header.Set("Origin", r.url) }).want(t, 200, "same-origin login")
	r.req(t, "GET", "/api/v1/clients", nil, func(h *http.Request) {
		bearer("admin")(h)
		h.Header.Set("Sec-Fetch-Site", "cross-site")
	}).want(t, 403, "cross-site GET")
	r.req(t, "POST", "/api/v1/clients/nobody/disconnect", []byte(`{"prevent_will":true}`), func(h *http.Request) {
		bearer("admin")(h)
		h.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}).want(t, 415, "form body")
	r.req(t, "GET", "/api/v1/me", nil, func(h *http.Request) {
		bearer("admin")(h)
		h.Header.Set("Sec-Fetch-Site", "same-origin")
	}).want(t, 200, "same-origin GET")
}

// TestDownloadNeedsCSRF: in local mode and with a session cookie, a zip
// download needs the CSRF token (header or csrf_token parameter), so an
// <img> on another site cannot make the broker zip every recording; a
// cross-site request is refused before that.
func TestDownloadNeedsCSRF(t *testing.T) {
	r := startRig(t, config.Default().Admin)
	me := r.req(t, "GET", "/api/v1/me", nil, nil).want(t, 200, "me").json(t)
	csrf := me["csrf_token"].(string)
	r.req(t, "GET", "/api/v1/traces/download", nil, nil).want(t, 403, "local, no token")
	r.req(t, "GET", "/api/v1/traces/download?csrf_token=wrong", nil, nil).want(t, 403, "local, wrong token")
	r.req(t, "GET", "/api/v1/traces/download?csrf_token="+csrf, nil, func(h *http.Request) { h.Header.Set("Sec-Fetch-Site", "cross-site") }).want(t, 403, "cross-site")
	r.req(t, "GET", "/api/v1/traces/download?csrf_token="+csrf, nil, nil).want(t, 200, "local, token parameter")
	r.req(t, "GET", "/api/v1/traces/download", nil, func(h *http.Request) { h.Header.Set(access.CSRFHeader, csrf) }).want(t, 200, "local, token header")
	n := 0
	for _, e := range r.auditLines(t) {
		if e.Action == "trace.download" && e.Result == "ok" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d trace.download ok lines, want 2", n)
	}

	s := startRig(t, testAdmin())
	cookie, csrf := s.login(t, "alice")
	s.req(t, "GET", "/api/v1/traces/download", nil, withCookie(cookie, "")).want(t, 403, "session, no token")
	s.req(t, "GET", "/api/v1/traces/download?csrf_token="+csrf, nil, withCookie(cookie, "")).want(t, 200, "session, token parameter")
	s.req(t, "GET", "/api/v1/traces/download", nil, bearer("admin")).want(t, 200, "bearer needs none")
}

// TestStaleCookieInLocalMode: a browser that logged in before the last
// user was removed (a reload into local mode) is served as "local", and
// its cookie is cleared.
func TestStaleCookieInLocalMode(t *testing.T) {
	r := startRig(t, testAdmin())
	cookie, _ := r.login(t, "alice")
	local, err := access.Build(config.Default().Admin, "")
	if err != nil {
		t.Fatal(err)
	}
	r.acc.Use(local)
	c := r.req(t, "GET", "/api/v1/me", nil, withCookie(cookie, "")).want(t, 200, "me with a stale cookie")
	if m := c.json(t); m["auth"] != "local" {
		t.Fatalf("me: %v", m)
	}
	cleared := false
	for _, ck := range (&http.Response{Header: c.hdr}).Cookies() {
		cleared = cleared || (ck.Name == access.CookieName && ck.MaxAge < 0)
	}
	if !cleared {
		t.Fatalf("the stale cookie is not cleared: %v", c.hdr)
	}
	csrf := c.json(t)["csrf_token"].(string)
	r.req(t, "POST", "/api/v1/logout", nil, withCookie(cookie, csrf)).want(t, 204, "logout with a stale cookie")
}

// TestUnknownTokensLimited: unknown bearer tokens count against the
// remote IP's login limit (429 after the burst), so that they cannot
// flood the log; a known token from the same IP still works.
func TestUnknownTokensLimited(t *testing.T) {
	r := startRig(t, testAdmin())
	for range access.DefaultLoginLimits.PerIPBurst {
		r.req(t, "GET", "/api/v1/me", nil, func(h *http.Request) { h.Header.Set("Authorization", "Bearer nope") }).want(t, 401, "unknown token")
	}
	c := r.req(t, "GET", "/api/v1/me", nil, func(h *http.Request) { h.Header.Set("Authorization", "Bearer nope") }).want(t, 429, "unknown token, limited")
	if c.hdr.Get("Retry-After") == "" {
		t.Fatalf("no Retry-After: %v", c.hdr)
	}
	if n := strings.Count(r.logs.String(), "unknown bearer token"); n != access.DefaultLoginLimits.PerIPBurst {
		t.Fatalf("%d warn lines, want %d", n, access.DefaultLoginLimits.PerIPBurst)
	}
	r.req(t, "GET", "/api/v1/me", nil, bearer("viewer")).want(t, 200, "a known token")
}
