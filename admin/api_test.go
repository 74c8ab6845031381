package admin_test

import (
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// routesOf is the route table of an API (which needs nothing to list it).
func routesOf() []admin.Route { return admin.New(admin.Options{}).Routes() }

// concrete fills a route's path parameters and query for the permission
// matrix: ids and topics that do not exist for the routes that change
// state (so that an allowed call changes nothing: 404), real ones for the
// others.
func concrete(rt admin.Route) string { return concreteWith(rt, "20260101-000000-00000000") }

// concreteWith is concrete with the id of a trace recording.
func concreteWith(rt admin.Route, recording string) string {
	p := rt.Path
	id := "c-live"
	if rt.Method != http.MethodGet {
		id = "nobody"
	}
	if strings.Contains(p, "/extensions/") {
		id = "no-such-extension"
	}
	if strings.Contains(p, "/traces/") {
		id = recording
	}
	p = strings.ReplaceAll(p, "{id}", url.PathEscape(id))
	if strings.HasSuffix(p, "/retained/message") {
		topic := "marker/retained"
		if rt.Method != http.MethodGet {
			topic = "no/such/topic"
		}
		p += "?topic=" + url.QueryEscape(topic)
	}
	if strings.HasSuffix(p, "/subscriptions") {
		p += "?filter=a/%23"
	}
	return p
}

// TestPermissions: every route that needs a permission answers a token
// whose role grants only that permission, and refuses with 403 one whose
// role grants every permission but it.
func TestPermissions(t *testing.T) {
	r := startRig(t, testAdmin())
	connect5(t, r.mqtt, "c-live", nil, nil)
	if err := r.srv.PutRetained(broker.Message{Topic: "marker/retained", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	for _, rt := range routesOf() {
		if rt.Permission == "" {
			continue
		}
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			path := concrete(rt)
			allowed := r.req(t, rt.Method, path, nil, bearer(onlyRole(rt.Permission)))
			if allowed.code == http.StatusForbidden || allowed.code == http.StatusUnauthorized || allowed.code >= 500 {
				t.Errorf("with only %s: status %d: %s", rt.Permission, allowed.code, allowed.body)
			}
			refused := r.req(t, rt.Method, path, nil, bearer(allButRole(rt.Permission)))
			if refused.code != http.StatusForbidden || !strings.Contains(string(refused.body), "permission "+string(rt.Permission)+" required") {
				t.Errorf("without %s: status %d, want 403 naming the permission: %s", rt.Permission, refused.code, refused.body)
			}
		})
	}
	// No credentials at all: 401 everywhere but login.
	for _, rt := range routesOf() {
		if rt.Public {
			continue
		}
		if c := r.req(t, rt.Method, concrete(rt), nil, nil); c.code != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: status %d, want 401: %s", rt.Method, rt.Path, c.code, c.body)
		}
	}
	// The refused state-changing calls changed nothing.
	r.req(t, "POST", "/api/v1/clients/c-live/disconnect", nil, bearer(allButRole(access.ClientsDisconnect))).want(t, 403, "disconnect without permission")
	r.req(t, "POST", "/api/v1/clients/c-live/invalidate", nil, bearer(allButRole(access.SessionsInvalidate))).want(t, 403, "invalidate without permission")
	if ci, ok := r.srv.Client("c-live"); !ok || !ci.Connected {
		t.Fatalf("a refused disconnect or invalidate acted: %+v %v", ci, ok)
	}
	r.mustAudit(t, "tok-"+allButRole(access.ClientsDisconnect), "client.disconnect", "c-live", "denied")
}

// TestUnknownRouteAndMethod: JSON 404 and 405 with Allow.
func TestUnknownRouteAndMethod(t *testing.T) {
	r := startRig(t, testAdmin())
	c := r.req(t, "GET", "/api/v1/nothing", nil, bearer("admin")).want(t, 404, "unknown route")
	if c.json(t)["error"] == nil {
		t.Fatalf("404 without an error key: %s", c.body)
	}
	c = r.req(t, "PUT", "/api/v1/me", nil, bearer("admin")).want(t, 405, "PUT /me")
	if c.hdr.Get("Allow") != "GET" {
		t.Fatalf("Allow %q", c.hdr.Get("Allow"))
	}
}

// TestClientDetail: a connected client's detail with its subscriptions
// and session attributes; a client id with a slash; 404 for none.
func TestClientDetail(t *testing.T) {
	r := startRig(t, testAdmin())
	c := connect5(t, r.mqtt, "dev/1", nil, nil)
	if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "a/#", QoS: 1, NoLocal: true}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.PutAttribute("dev/1", "text", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.PutAttribute("dev/1", "bin", []byte{0xff, 0x00}); err != nil {
		t.Fatal(err)
	}
	d := r.req(t, "GET", "/api/v1/clients/"+url.PathEscape("dev/1"), nil, bearer("viewer")).want(t, 200, "detail").json(t)
	if d["client_id"] != "dev/1" || d["username"] != "wat" || d["connected"] != true || d["protocol_version"] != float64(5) ||
		d["listener"] != "tcp" || d["session_expiry"] != float64(120) || d["connected_since"] == nil {
		t.Fatalf("detail: %v", d)
	}
	subs := d["subscriptions"].([]any)
	if len(subs) != 1 || subs[0].(map[string]any)["filter"] != "a/#" || subs[0].(map[string]any)["qos"] != float64(1) || subs[0].(map[string]any)["no_local"] != true {
		t.Fatalf("subscriptions: %v", subs)
	}
	attrs := d["session_attributes"].([]any)
	if len(attrs) != 2 || attrs[0].(map[string]any)["key"] != "bin" || attrs[0].(map[string]any)["value_base64"] != "/wA=" ||
		attrs[1].(map[string]any)["value"] != "hello" {
		t.Fatalf("session attributes: %v", attrs)
	}
	r.req(t, "GET", "/api/v1/clients/nobody", nil, bearer("viewer")).want(t, 404, "unknown client")
}

// TestDisconnect: the real client is disconnected with the reason code;
// its will is published, or not with prevent_will; the audit log has
// both; an offline session answers 409.
func TestDisconnect(t *testing.T) {
	r := startRig(t, testAdmin())
	wills := make(chan string, 4)
	watcher := connect5(t, r.mqtt, "watcher", nil, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			wills <- p.Packet.Topic
			return true, nil
		}}
	})
	if _, err := watcher.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "will/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	for _, prevent := range []bool{false, true} {
		id := "w-keep"
		if prevent {
			id = "w-prevent"
		}
		gone := make(chan byte, 1)
		connect5(t, r.mqtt, id, func(cp *paho.Connect) {
			cp.WillMessage = &paho.WillMessage{Topic: "will/" + id, Payload: []byte("gone"), QoS: 1}
		}, func(cc *paho.ClientConfig) {
			cc.OnServerDisconnect = func(d *paho.Disconnect) { gone <- d.ReasonCode }
		})
		r.req(t, "POST", "/api/v1/clients/"+id+"/disconnect", map[string]any{"prevent_will": prevent, "reason": "maintenance"},
			bearer("operator")).want(t, 204, "disconnect "+id)
		select {
		case code := <-gone:
			if code != 0x98 {
				t.Fatalf("%s: DISCONNECT reason %#x, want 0x98", id, code)
			}
		case <-time.After(poll.Timeout):
			t.Fatalf("%s: the paho client was not disconnected", id)
		}
		poll.Until(t, id+" offline", func() bool { ci, ok := r.srv.Client(id); return ok && !ci.Connected })
		r.mustAudit(t, "tok-operator", "client.disconnect", id, "ok")
		// An offline session cannot be disconnected.
		r.req(t, "POST", "/api/v1/clients/"+id+"/disconnect", nil, bearer("operator")).want(t, 409, "disconnect offline "+id)
	}
	// The marker comes after any will: only w-keep's will arrived.
	if err := r.srv.Publish(broker.Message{Topic: "will/marker", Payload: []byte("m"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for done := false; !done; {
		select {
		case topic := <-wills:
			got = append(got, topic)
			done = topic == "will/marker"
		case <-time.After(poll.Timeout):
			t.Fatalf("no marker; got %v", got)
		}
	}
	if strings.Join(got, ",") != "will/w-keep,will/marker" {
		t.Fatalf("published: %v, want w-keep's will only", got)
	}
	r.req(t, "POST", "/api/v1/clients/w-keep/disconnect", map[string]any{"reason_code": 7}, bearer("operator")).want(t, 400, "reason code 7")
	r.req(t, "POST", "/api/v1/clients/w-keep/disconnect", []byte(`{"prevent":true}`), bearer("operator")).want(t, 400, "unknown field")
}

// TestInvalidate: the session is removed with its subscriptions; the
// client is disconnected; the audit log has it.
func TestInvalidate(t *testing.T) {
	r := startRig(t, testAdmin())
	gone := make(chan struct{}, 1)
	c := connect5(t, r.mqtt, "stale", nil, func(cc *paho.ClientConfig) {
		cc.OnServerDisconnect = func(*paho.Disconnect) { gone <- struct{}{} }
	})
	if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "x", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	r.req(t, "POST", "/api/v1/clients/stale/invalidate", nil, bearer("operator")).want(t, 204, "invalidate")
	select {
	case <-gone:
	case <-time.After(poll.Timeout):
		t.Fatal("the client was not disconnected")
	}
	if _, ok := r.srv.Client("stale"); ok {
		t.Fatal("session still there")
	}
	r.req(t, "GET", "/api/v1/clients/stale", nil, bearer("viewer")).want(t, 404, "invalidated client")
	r.req(t, "POST", "/api/v1/clients/stale/invalidate", nil, bearer("operator")).want(t, 404, "invalidate twice")
	r.mustAudit(t, "tok-operator", "session.invalidate", "stale", "ok")
	r.mustAudit(t, "tok-operator", "session.invalidate", "stale", "error")
}

// TestRetainedMessage: a retained message published by a real client,
// viewed as text, hex and JSON (400 naming the offset when it is not),
// its payload hidden without retained.payload, its user properties only
// with userproperties.view; deleted, with the audit line.
func TestRetainedMessage(t *testing.T) {
	r := startRig(t, testAdmin())
	c := connect5(t, r.mqtt, "pub", nil, nil)
	if _, err := c.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "sensors/t1", QoS: 1, Retain: true, Payload: []byte(`{"t": 21.5}`),
		Properties: &paho.PublishProperties{ContentType: "application/json", User: paho.UserProperties{{Key: "site", Value: "secret-site"}}}}); err != nil {
		t.Fatal(err)
	}
	q := "/api/v1/retained/message?topic=" + url.QueryEscape("sensors/t1")
	poll.Until(t, "the retained message", func() bool { _, ok := r.srv.Retained("sensors/t1"); return ok })
	m := r.req(t, "GET", q, nil, bearer("admin")).want(t, 200, "view").json(t)
	if m["payload"] != `{"t": 21.5}` || m["encoding"] != "text" || m["content_type"] != "application/json" || m["qos"] != float64(1) || m["payload_size"] != float64(11) {
		t.Fatalf("text view: %v", m)
	}
	ups, _ := m["user_properties"].([]any)
	if len(ups) != 1 || ups[0].(map[string]any)["value"] != "secret-site" {
		t.Fatalf("user properties for admin: %v", m["user_properties"])
	}
	m = r.req(t, "GET", q+"&encoding=hex", nil, bearer("admin")).want(t, 200, "hex").json(t)
	if m["payload"] != hex.EncodeToString([]byte(`{"t": 21.5}`)) {
		t.Fatalf("hex view: %v", m["payload"])
	}
	m = r.req(t, "GET", q+"&encoding=json", nil, bearer("admin")).want(t, 200, "json").json(t)
	if m["payload"] != "{\n  \"t\": 21.5\n}" {
		t.Fatalf("json view: %q", m["payload"])
	}
	// The viewer role has retained.view only.
	v := r.req(t, "GET", q, nil, bearer("viewer")).want(t, 200, "viewer")
	vm := v.json(t)
	if _, has := vm["payload"]; has || vm["payload_hidden"] != true || strings.Contains(string(v.body), "secret-site") || strings.Contains(string(v.body), "user_properties") {
		t.Fatalf("viewer sees payload or user properties: %s", v.body)
	}

	if err := r.srv.PutRetained(broker.Message{Topic: "bin", Payload: []byte{'a', 0xff, 'b'}}); err != nil {
		t.Fatal(err)
	}
	e := r.req(t, "GET", "/api/v1/retained/message?topic=bin&encoding=text", nil, bearer("admin")).want(t, 400, "binary as text").json(t)
	if !strings.Contains(e["error"].(string), "offset 1") {
		t.Fatalf("error %v does not name offset 1", e)
	}
	e = r.req(t, "GET", "/api/v1/retained/message?topic=bin&encoding=json", nil, bearer("admin")).want(t, 400, "binary as json").json(t)
	if !strings.Contains(e["error"].(string), "not JSON at offset") {
		t.Fatalf("error %v does not name the offset", e)
	}
	if m := r.req(t, "GET", "/api/v1/retained/message?topic=bin", nil, bearer("admin")).want(t, 200, "default encoding").json(t); m["encoding"] != "hex" || m["payload"] != "61ff62" {
		t.Fatalf("binary payload by default: %v", m)
	}
	r.req(t, "GET", "/api/v1/retained/message?topic=bin&encoding=base32", nil, bearer("admin")).want(t, 400, "unknown encoding")

	r.req(t, "DELETE", q, nil, bearer("operator")).want(t, 204, "delete")
	if _, ok := r.srv.Retained("sensors/t1"); ok {
		t.Fatal("still retained")
	}
	r.req(t, "GET", q, nil, bearer("admin")).want(t, 404, "deleted")
	r.mustAudit(t, "tok-operator", "retained.delete", "sensors/t1", "ok")
}

// TestExtensionDisableEnable: disable creates the DISABLED file (through
// host.Disable, as the CLI) and the running host stops the extension, so
// clients are refused; enable starts it again.
func TestExtensionDisableEnable(t *testing.T) {
	r := startRig(t, testAdmin())
	list := r.req(t, "GET", "/api/v1/extensions", nil, bearer("viewer")).want(t, 200, "list").json(t)
	exts := list["extensions"].([]any)
	if len(exts) != 1 || exts[0].(map[string]any)["id"] != "wat-auth" || exts[0].(map[string]any)["state"] != "running" ||
		exts[0].(map[string]any)["disabled"] != false {
		t.Fatalf("extensions: %v", exts)
	}
	d := r.req(t, "POST", "/api/v1/extensions/wat-auth/disable", nil, bearer("operator")).want(t, 200, "disable").json(t)
	if d["disabled"] != true {
		t.Fatalf("after disable: %v", d)
	}
	if _, err := os.Stat(filepath.Join(r.exts, "wat-auth", host.DisabledFile)); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		for _, s := range r.h.Status() {
			if s.ID == "wat-auth" {
				return string(s.State)
			}
		}
		return ""
	}
	poll.Until(t, "the host to stop wat-auth", func() bool { return state() == string(host.StateDisabled) })
	if len(r.h.SecurityExtensions()) != 0 {
		t.Fatalf("security extensions after disable: %v", r.h.SecurityExtensions())
	}
	r.mustAudit(t, "tok-operator", "extension.disable", "wat-auth", "ok")
	r.req(t, "POST", "/api/v1/extensions/wat-auth/enable", nil, bearer("operator")).want(t, 200, "enable")
	poll.Until(t, "the host to start wat-auth", func() bool { return state() == string(host.StateRunning) })
	connect5(t, r.mqtt, "back", nil, nil)
	r.mustAudit(t, "tok-operator", "extension.enable", "wat-auth", "ok")
	// The new version counts the CONNECT it authenticated; the folder's
	// counters are the host's, whatever the version.
	list = r.req(t, "GET", "/api/v1/extensions", nil, bearer("viewer")).want(t, 200, "list").json(t)
	counters := list["extensions"].([]any)[0].(map[string]any)["counters"].(map[string]any)
	if counters["calls"].(float64) < 1 || counters["instances"].(float64) < 1 || counters["errors"].(float64) != 0 {
		t.Fatalf("counters after a CONNECT: %v", counters)
	}
	for _, s := range r.h.Status() {
		if s.ID == "wat-auth" && (counters["reloads"].(float64) != float64(s.Reloads) || counters["crash_loop_stops"].(float64) != float64(s.CrashLoopStops)) {
			t.Fatalf("folder counters %v, host's %+v", counters, s)
		}
	}
	r.req(t, "POST", "/api/v1/extensions/nope/disable", nil, bearer("operator")).want(t, 404, "unknown extension")
	r.req(t, "POST", "/api/v1/extensions/..%2F..%2Fetc/disable", nil, bearer("operator")).want(t, 404, "bad id")
}

// TestBrokerConfigRedacted: the configuration in effect, with password
// hashes and token digests redacted.
func TestBrokerConfigRedacted(t *testing.T) {
	r := startRig(t, testAdmin())
	c := r.req(t, "GET", "/api/v1/broker/config", nil, bearer("admin")).want(t, 200, "config")
	if strings.Contains(string(c.body), "pbkdf2") || strings.Contains(string(c.body), access.TokenDigest(tokenFor("admin"))) {
		t.Fatalf("secrets in the configuration: %s", c.body)
	}
	cfg := c.json(t)
	adm := cfg["admin"].(map[string]any)
	u := adm["users"].([]any)[0].(map[string]any)
	tok := adm["tokens"].([]any)[0].(map[string]any)
	if u["name"] != "alice" || u["password_hash"] != "REDACTED" || tok["sha256"] != "REDACTED" {
		t.Fatalf("admin section: %v", adm)
	}
	if cfg["mqtt"].(map[string]any)["connect_timeout"] != "10s" || cfg["listeners"].([]any)[0].(map[string]any)["name"] != "tcp" {
		t.Fatalf("config: %s", c.body)
	}
	r.req(t, "GET", "/api/v1/broker/config", nil, bearer("operator")).want(t, 403, "operator has no config.view")
}
