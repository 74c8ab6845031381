package admin_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The findings of a new operator: wording of errors, payload-level fields,
// audit details.

// TestUnknownTokenWording: a wrong API token is told as such, not as a bad
// user name or password.
func TestUnknownTokenWording(t *testing.T) {
	r := startRig(t, testAdmin())
	c := r.req(t, "GET", "/api/v1/me", nil, func(h *http.Request) { h.Header.Set("Authorization", "Bearer nope") }).want(t, 401, "unknown token")
	if got := c.json(t)["error"]; got != "unknown API token" {
		t.Fatalf("error %q, want \"unknown API token\"", got)
	}
	c = r.req(t, "GET", "/api/v1/me", nil, func(h *http.Request) { h.SetBasicAuth("alice", "wrong") }).want(t, 401, "bad password")
	if got := c.json(t)["error"]; got != "bad user name or password" {
		t.Fatalf("error %q, want \"bad user name or password\"", got)
	}
}

// TestRetainedPayloadLevelFields: the response topic and correlation data
// of a retained message, published by a real MQTT 5 client, come with
// retained.payload only.
func TestRetainedPayloadLevelFields(t *testing.T) {
	r := startRig(t, testAdmin())
	c := connect5(t, r.mqtt, "requester", nil, nil)
	if _, err := c.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "req/1", QoS: 1, Retain: true, Payload: []byte("ask"),
		Properties: &paho.PublishProperties{ResponseTopic: "reply/secret-inbox", CorrelationData: []byte("corr-42")}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the retained message", func() bool { _, ok := r.srv.Retained("req/1"); return ok })
	for _, tc := range []struct {
		role string
		see  bool
	}{{"viewer", false}, {allButRole(access.RetainedPayload), false}, {"admin", true}} {
		m := r.req(t, "GET", "/api/v1/retained/message?topic=req/1", nil, bearer(tc.role)).want(t, 200, tc.role).json(t)
		_, rt := m["response_topic"]
		_, cd := m["correlation_data"]
		if rt != tc.see || cd != tc.see {
			t.Fatalf("%s: response_topic present %v, correlation_data present %v, want %v: %v", tc.role, rt, cd, tc.see, m)
		}
		if tc.see && (m["response_topic"] != "reply/secret-inbox" || m["correlation_data"] != "Y29yci00Mg==") {
			t.Fatalf("%s: %v", tc.role, m)
		}
	}
}

// TestErrorWording: errors name the parameter and say what is wrong, in
// the API's words, without the broker's internal prefixes or the broker
// machine's paths.
func TestErrorWording(t *testing.T) {
	r := startRig(t, testAdmin())
	connect5(t, r.mqtt, "c1", nil, nil)
	for _, tc := range []struct {
		method, path string
		body         any
		code         int
		want         string
	}{
		{"GET", "/api/v1/retained?filter=sensors/%23/x", nil, 400, `filter "sensors/#/x": not a topic filter ("#" must be the last level)`},
		{"GET", "/api/v1/retained?filter=a/b%2B", nil, 400, `filter "a/b+": not a topic filter (level 2 ("b+"): a wildcard must be the whole level)`},
		{"GET", "/api/v1/retained?filter=%24share/g/a", nil, 400, `filter "$share/g/a": a shared subscription ($share/...) receives no retained messages; give its topic filter`},
		{"GET", "/api/v1/subscriptions?filter=a/%23/b", nil, 400, `filter "a/#/b": not a topic filter ("#" must be the last level)`},
		{"POST", "/api/v1/clients/c1/disconnect", map[string]any{"reason_code": 1}, 400, `request body: reason code 0x01 is not one a server sends (0x80 and up)`},
		{"POST", "/api/v1/clients/nobody/invalidate", nil, 404, `client "nobody": no session`},
		{"POST", "/api/v1/extensions/nosuch/disable", nil, 404, `no extension "nosuch" in the extensions folder`},
	} {
		c := r.req(t, tc.method, tc.path, tc.body, bearer("admin")).want(t, tc.code, tc.path)
		if got := c.json(t)["error"]; got != tc.want {
			t.Errorf("%s %s: error %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

// TestAuditDetails: the result line of an action carries the request's
// parameters, and the broker's log names who took it.
func TestAuditDetails(t *testing.T) {
	r := startRig(t, testAdmin())
	gone := make(chan struct{}, 1)
	connect5(t, r.mqtt, "d1", nil, func(cc *paho.ClientConfig) {
		cc.OnServerDisconnect = func(*paho.Disconnect) { gone <- struct{}{} }
	})
	r.req(t, "POST", "/api/v1/clients/d1/disconnect", map[string]any{"prevent_will": true, "reason_code": 0x8b, "reason": "maintenance"},
		bearer("operator")).want(t, 204, "disconnect")
	select {
	case <-gone:
	case <-time.After(poll.Timeout):
		t.Fatal("d1 was not disconnected")
	}
	rec := r.req(t, "POST", "/api/v1/traces", map[string]any{"client_id": "d*", "topic_filter": "t/#", "packets": []string{"PUBLISH"}},
		bearer("operator")).want(t, 201, "start a trace").json(t)
	// duration_seconds 0 (left out) is the default, 600, as the answer says.
	if spec := rec["spec"].(map[string]any); spec["duration_seconds"] != float64(600) {
		t.Fatalf("spec %v: want duration_seconds 600 (the default)", spec)
	}
	want := map[string]string{
		"client.disconnect": `{"prevent_will":true,"reason":"maintenance","reason_code":139}`,
		"trace.start":       `{"client_id":"d*","duration_seconds":0,"max_bytes":0,"packets":["PUBLISH"],"topic_filter":"t/#"}`,
	}
	for _, e := range r.auditLines(t) {
		w, ok := want[e.Action]
		if !ok {
			continue
		}
		got, _ := json.Marshal(e.Details)
		if e.Result == "attempt" {
			continue
		}
		if e.Result != "ok" || string(got) != w || e.User != "tok-operator" {
			t.Errorf("%s: result %s user %s details %s, want ok tok-operator %s", e.Action, e.Result, e.User, got, w)
		}
		delete(want, e.Action)
	}
	if len(want) > 0 {
		t.Fatalf("no result lines for %v", want)
	}
	for _, l := range []string{`msg="admin API: client.disconnect" action=client.disconnect target=d1 user=tok-operator auth=token`,
		`msg="admin API: trace.start" action=trace.start target=` + rec["id"].(string) + ` user=tok-operator auth=token`} {
		if !strings.Contains(r.logs.String(), l) {
			t.Errorf("log lacks %s", l)
		}
	}
}
