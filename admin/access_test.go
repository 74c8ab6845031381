package admin_test

import (
	"archive/zip"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// zipText returns every file of a zip, concatenated.
func zipText(t *testing.T, data []byte) string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	var b strings.Builder
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("== " + f.Name + "\n")
		b.Write(data)
	}
	return b.String()
}

// login logs user in and returns the session cookie and CSRF token.
func (r *rig) login(t *testing.T, user string) (*http.Cookie, string) {
	t.Helper()
	c := r.req(t, "POST", "/api/v1/login", map[string]string{"user": user, "password": testPassword}, nil).want(t, 200, "login "+user)
	var cookie *http.Cookie
	for _, ck := range (&http.Response{Header: c.hdr}).Cookies() {
		if ck.Name == access.CookieName {
			cookie = ck
		}
	}
	if cookie == nil {
		t.Fatalf("login set no %s cookie: %v", access.CookieName, c.hdr)
	}
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/", cookie)
	}
	m := c.json(t)
	if m["user"] != user || m["auth"] != "session" || m["csrf_token"] == "" {
		t.Fatalf("login answer: %v", m)
	}
	return cookie, m["csrf_token"].(string)
}

// withCookie sends the cookie and, when csrf is not "", the CSRF header.
func withCookie(c *http.Cookie, csrf string) func(*http.Request) {
	return func(r *http.Request) {
		r.AddCookie(c)
		if csrf != "" {
			r.Header.Set(access.CSRFHeader, csrf)
		}
	}
}

// TestSessionCSRF: a login session reads with its cookie alone, needs the
// CSRF token for every state-changing request, and ends at logout.
func TestSessionCSRF(t *testing.T) {
	r := startRig(t, testAdmin())
	connect5(t, r.mqtt, "victim", nil, nil)
	cookie, csrf := r.login(t, "oscar")
	me := r.req(t, "GET", "/api/v1/me", nil, withCookie(cookie, "")).want(t, 200, "me").json(t)
	if me["user"] != "oscar" || me["csrf_token"] != csrf || !strings.Contains(strings.Join(toStrings(me["permissions"]), ","), "clients.disconnect") ||
		strings.Contains(strings.Join(toStrings(me["permissions"]), ","), "config.view") {
		t.Fatalf("me: %v", me)
	}
	r.req(t, "POST", "/api/v1/clients/victim/disconnect", nil, withCookie(cookie, "")).want(t, 403, "no CSRF header")
	r.req(t, "POST", "/api/v1/clients/victim/disconnect", nil, withCookie(cookie, "wrong")).want(t, 403, "wrong CSRF header")
	if ci, _ := r.srv.Client("victim"); !ci.Connected {
		t.Fatal("disconnected without a CSRF token")
	}
	r.req(t, "POST", "/api/v1/clients/victim/disconnect", nil, withCookie(cookie, csrf)).want(t, 204, "with CSRF header")
	r.mustAudit(t, "oscar", "client.disconnect", "victim", "ok")
	r.mustAudit(t, "oscar", "login", "oscar", "ok")
	r.req(t, "POST", "/api/v1/logout", nil, withCookie(cookie, "")).want(t, 403, "logout without CSRF")
	r.req(t, "POST", "/api/v1/logout", nil, withCookie(cookie, csrf)).want(t, 204, "logout")
	r.mustAudit(t, "oscar", "logout", "oscar", "ok")
	r.req(t, "GET", "/api/v1/me", nil, withCookie(cookie, "")).want(t, 401, "after logout")
	// Basic and bearer auth need no CSRF token.
	basic := func(hr *http.Request) { hr.SetBasicAuth("oscar", testPassword) }
	if m := r.req(t, "GET", "/api/v1/me", nil, basic).want(t, 200, "basic").json(t); m["auth"] != "basic" || m["csrf_token"] != "" {
		t.Fatalf("basic me: %v", m)
	}
	r.req(t, "POST", "/api/v1/clients/nobody/invalidate", nil, basic).want(t, 404, "basic POST without CSRF")
	r.req(t, "GET", "/api/v1/me", nil, func(hr *http.Request) { hr.SetBasicAuth("oscar", "nope") }).want(t, 401, "basic, bad password")
	if m := r.req(t, "GET", "/api/v1/me", nil, bearer("viewer")).want(t, 200, "token").json(t); m["auth"] != "token" || m["user"] != "tok-viewer" {
		t.Fatalf("token me: %v", m)
	}
	r.req(t, "GET", "/api/v1/me", nil, func(hr *http.Request) { hr.Header.Set("Authorization", "Bearer nope") }).want(t, 401, "unknown token")
}

// toStrings converts a JSON list of strings.
func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// TestLoginRateLimit: failed logins for one user name are refused with
// 429 and Retry-After after the burst, even with the right password, and
// each is logged at warn and audited.
func TestLoginRateLimit(t *testing.T) {
	r := startRig(t, testAdmin())
	burst := access.DefaultLoginLimits.PerUserBurst
	for i := range burst {
		r.req(t, "POST", "/api/v1/login", map[string]string{"user": "victor", "password": "guess" + strconv.Itoa(i)}, nil).want(t, 401, "bad password")
	}
	c := r.req(t, "POST", "/api/v1/login", map[string]string{"user": "victor", "password": testPassword}, nil).want(t, 429, "rate-limited")
	if s, err := strconv.Atoi(c.hdr.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", c.hdr.Get("Retry-After"))
	}
	if !strings.Contains(c.json(t)["error"].(string), `too many failed logins for user "victor"`) {
		t.Fatalf("429 error: %s", c.body)
	}
	logs := r.logs.String()
	if strings.Count(logs, `level=WARN msg="admin API: failed login" user=victor`) != burst || !strings.Contains(logs, `level=WARN msg="admin API: login rate-limited" user=victor`) {
		t.Fatalf("log lacks the failed and limited logins:\n%s", logs)
	}
	n := 0
	for _, e := range r.auditLines(t) {
		if e.Action == "login_failed" && e.User == "victor" && e.Result == "denied" && e.Remote == "127.0.0.1" {
			n++
		}
	}
	if n != burst+1 {
		t.Fatalf("%d login_failed audit lines, want %d", n, burst+1)
	}
	// Another user from the same IP still logs in (the IP's burst is larger).
	r.login(t, "alice")
	// Basic auth shares the user's limit.
	r.req(t, "GET", "/api/v1/me", nil, func(hr *http.Request) { hr.SetBasicAuth("victor", testPassword) }).want(t, 429, "basic while limited")
}

// TestHostHeader: a Host header that is not the endpoint's (DNS
// rebinding) is refused on every route, login included.
func TestHostHeader(t *testing.T) {
	r := startRig(t, testAdmin())
	evil := func(hr *http.Request) {
		hr.Host = "evil.example:80"
		hr.Header.Set("Authorization", "Bearer "+tokenFor("admin"))
	}
	r.req(t, "GET", "/api/v1/me", nil, evil).want(t, 403, "evil host")
	r.req(t, "POST", "/api/v1/login", map[string]string{"user": "alice", "password": testPassword}, func(hr *http.Request) { hr.Host = "evil.example" }).want(t, 403, "evil host login")
	r.req(t, "GET", "/api/v1/me", nil, func(hr *http.Request) { hr.Host = "localhost:1"; bearer("admin")(hr) }).want(t, 200, "localhost")
}

// TestLocalMode: with no users and no tokens, every request is "local"
// with every permission, and state changes still need the CSRF token of
// /me.
func TestLocalMode(t *testing.T) {
	r := startRig(t, config.Default().Admin)
	me := r.req(t, "GET", "/api/v1/me", nil, nil).want(t, 200, "me").json(t)
	if me["user"] != "local" || me["auth"] != "local" || len(toStrings(me["permissions"])) != len(access.Permissions) {
		t.Fatalf("local me: %v", me)
	}
	if err := r.srv.PutRetained(broker.Message{Topic: "t", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	r.req(t, "DELETE", "/api/v1/retained/message?topic=t", nil, nil).want(t, 403, "local without CSRF")
	r.req(t, "DELETE", "/api/v1/retained/message?topic=t", nil, func(hr *http.Request) {
		hr.Header.Set(access.CSRFHeader, me["csrf_token"].(string))
	}).want(t, 204, "local with CSRF")
	r.mustAudit(t, "local", "retained.delete", "t", "ok")
	r.req(t, "POST", "/api/v1/login", map[string]string{"user": "x", "password": "y"}, nil).want(t, 400, "login in local mode")
}

// TestNoUserPropertiesWithoutPermission: a role with every permission but
// userproperties.view sees no user property, nor its key, in the answer
// of any GET route.
func TestNoUserPropertiesWithoutPermission(t *testing.T) {
	r := startRig(t, testAdmin())
	connect5(t, r.mqtt, "c-live", nil, nil)
	if err := r.srv.PutRetained(broker.Message{Topic: "marker/retained", Payload: []byte("x"),
		UserProperties: []broker.UserProperty{{Key: "up-key", Value: "up-secret"}}}); err != nil {
		t.Fatal(err)
	}
	// A recording of a PUBLISH with user properties.
	rec := r.req(t, "POST", "/api/v1/traces", map[string]any{"topic_filter": "up/#"}, bearer("admin")).want(t, 201, "start").json(t)
	pub := connect5(t, r.mqtt, "up-pub", nil, nil)
	if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "up/x", QoS: 1, Payload: []byte("p"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "up-key", Value: "up-secret"}}}}); err != nil {
		t.Fatal(err)
	}
	id := rec["id"].(string)
	poll.Until(t, "the PUBLISH recorded", func() bool { got, err := r.rec.Get(id); return err == nil && got.Packets > 0 })
	r.req(t, "POST", "/api/v1/traces/"+id+"/stop", nil, bearer("admin")).want(t, 200, "stop")
	if !strings.Contains(zipText(t, r.req(t, "GET", "/api/v1/traces/"+id+"/download", nil, bearer("admin")).want(t, 200, "admin download").body), "up-secret") {
		t.Fatal("the recording lacks the user property for admin")
	}

	role := allButRole(access.UserPropertiesView)
	checked := 0
	for _, rt := range routesOf() {
		if rt.Method != http.MethodGet || rt.Path == "/api/v1/cluster" {
			continue // the cluster status holds no message (and is 404 alone)
		}
		c := r.req(t, "GET", concreteWith(rt, id), nil, bearer(role))
		if c.code != 200 {
			t.Errorf("%s: status %d: %s", rt.Path, c.code, c.body)
		}
		body := string(c.body)
		if c.hdr.Get("Content-Type") == "application/zip" {
			body = zipText(t, c.body)
		}
		for _, bad := range []string{"up-secret", "up-key", "user_properties"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s shows %q without userproperties.view: %s", rt.Path, bad, c.body)
			}
		}
		checked++
	}
	// With the permission the retained message shows them.
	if c := r.req(t, "GET", "/api/v1/retained/message?topic=marker/retained", nil, bearer("admin")); !strings.Contains(string(c.body), "up-secret") {
		t.Fatalf("admin does not see the user property: %s", c.body)
	}
	t.Logf("%d GET routes checked", checked)
}
