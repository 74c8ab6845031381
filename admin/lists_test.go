package admin_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestClientList: search by prefix, user name, listener and state, pages
// walked with next, and 400 for a bad state or limit.
func TestClientList(t *testing.T) {
	r := startRig(t, testAdmin())
	for i := range 5 {
		connect5(t, r.mqtt, fmt.Sprintf("dev-%d", i), nil, nil)
	}
	c := connect5(t, r.mqtt, "other", nil, nil)
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "other offline", func() bool { ci, ok := r.srv.Client("other"); return ok && !ci.Connected })

	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		q := "/api/v1/clients?prefix=dev-&limit=2&after=" + url.QueryEscape(after)
		m := r.req(t, "GET", q, nil, bearer("viewer")).want(t, 200, "page").json(t)
		if m["total"] != float64(5) {
			t.Fatalf("total %v, want 5", m["total"])
		}
		for _, cl := range m["clients"].([]any) {
			cm := cl.(map[string]any)
			if cm["username"] != "wat" || cm["connected"] != true || cm["listener"] != "tcp" || cm["protocol_version"] != float64(5) {
				t.Fatalf("client %v", cm)
			}
			ids = append(ids, cm["client_id"].(string))
		}
		after = m["next"].(string)
		if after == "" {
			break
		}
		if pages > 5 {
			t.Fatal("too many pages")
		}
	}
	if strings.Join(ids, ",") != "dev-0,dev-1,dev-2,dev-3,dev-4" {
		t.Fatalf("ids %v", ids)
	}
	m := r.req(t, "GET", "/api/v1/clients?state=offline", nil, bearer("viewer")).want(t, 200, "offline").json(t)
	list := m["clients"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["client_id"] != "other" || list[0].(map[string]any)["offline_since"] == nil {
		t.Fatalf("offline: %v", m)
	}
	if m := r.req(t, "GET", "/api/v1/clients?username=nobody", nil, bearer("viewer")).want(t, 200, "username").json(t); m["total"] != float64(0) {
		t.Fatalf("username nobody: %v", m)
	}
	if m := r.req(t, "GET", "/api/v1/clients?listener=tcp&state=connected", nil, bearer("viewer")).want(t, 200, "listener").json(t); m["total"] != float64(5) {
		t.Fatalf("listener tcp, connected: %v", m)
	}
	r.req(t, "GET", "/api/v1/clients?state=asleep", nil, bearer("viewer")).want(t, 400, "bad state")
	r.req(t, "GET", "/api/v1/clients?limit=5000", nil, bearer("viewer")).want(t, 400, "bad limit")
	d := r.req(t, "GET", "/api/v1/clients/dev-0", nil, bearer("viewer")).want(t, 200, "detail").json(t)
	if d["keepalive"] != float64(30) || d["authenticated_by"] != "wat-auth" || d["queue_full_policy"] != "drop-new" || d["offline_since"] != nil {
		t.Fatalf("detail: %v", d)
	}
}

// TestSubscribers: a filter's subscribers with their options.
func TestSubscribers(t *testing.T) {
	r := startRig(t, testAdmin())
	for _, id := range []string{"s2", "s1"} {
		c := connect5(t, r.mqtt, id, nil, nil)
		if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "a/#", QoS: 1, RetainAsPublished: true}}}); err != nil {
			t.Fatal(err)
		}
	}
	m := r.req(t, "GET", "/api/v1/subscriptions?filter="+url.QueryEscape("a/#"), nil, bearer("viewer")).want(t, 200, "subscribers").json(t)
	subs := m["subscribers"].([]any)
	if m["filter"] != "a/#" || len(subs) != 2 || subs[0].(map[string]any)["client_id"] != "s1" || subs[1].(map[string]any)["retain_as_published"] != true {
		t.Fatalf("subscribers: %v", m)
	}
	r.req(t, "GET", "/api/v1/subscriptions", nil, bearer("viewer")).want(t, 400, "no filter")
	r.req(t, "GET", "/api/v1/subscriptions?filter="+url.QueryEscape("a/#/b"), nil, bearer("viewer")).want(t, 400, "bad filter")
}

// TestRetainedList: retained messages by filter, paged.
func TestRetainedList(t *testing.T) {
	r := startRig(t, testAdmin())
	for _, topic := range []string{"s/b", "s/a", "s/c", "x/y"} {
		if err := r.srv.PutRetained(broker.Message{Topic: topic, Payload: []byte(topic), ContentType: "text/plain"}); err != nil {
			t.Fatal(err)
		}
	}
	m := r.req(t, "GET", "/api/v1/retained?filter="+url.QueryEscape("s/+")+"&limit=2", nil, bearer("viewer")).want(t, 200, "page 1").json(t)
	msgs := m["messages"].([]any)
	if m["total"] != float64(3) || len(msgs) != 2 || msgs[0].(map[string]any)["topic"] != "s/a" || msgs[0].(map[string]any)["payload_size"] != float64(3) ||
		msgs[0].(map[string]any)["content_type"] != "text/plain" || m["next"] == "" {
		t.Fatalf("page 1: %v", m)
	}
	m = r.req(t, "GET", "/api/v1/retained?filter="+url.QueryEscape("s/+")+"&limit=2&after="+url.QueryEscape(m["next"].(string)), nil, bearer("viewer")).want(t, 200, "page 2").json(t)
	if msgs := m["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["topic"] != "s/c" || m["next"] != "" {
		t.Fatalf("page 2: %v", m)
	}
	if m := r.req(t, "GET", "/api/v1/retained", nil, bearer("viewer")).want(t, 200, "all").json(t); m["total"] != float64(4) {
		t.Fatalf("all: %v", m)
	}
	r.req(t, "GET", "/api/v1/retained?filter="+url.QueryEscape("#/x"), nil, bearer("viewer")).want(t, 400, "bad filter")
}

// TestBrokerInfo: version, listeners, security extensions and warnings:
// none while wat-auth runs, "no security extension" once it is disabled.
func TestBrokerInfo(t *testing.T) {
	r := startRig(t, testAdmin())
	one := connect5(t, r.mqtt, "one", nil, nil)
	if _, err := one.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "a/#"}, {Topic: "b"}}}); err != nil {
		t.Fatal(err)
	}
	m := r.req(t, "GET", "/api/v1/broker", nil, bearer("viewer")).want(t, 200, "broker").json(t)
	ls := m["listeners"].([]any)
	if m["version"] != "test" || m["abi"] == "" || len(ls) != 1 || ls[0].(map[string]any)["address"] != r.mqtt || ls[0].(map[string]any)["type"] != "tcp" ||
		fmt.Sprint(m["security_extensions"]) != "[wat-auth]" || len(m["warnings"].([]any)) != 0 {
		t.Fatalf("broker: %v", m)
	}
	if s := m["summary"].(map[string]any); s["connections"] != float64(1) || s["sessions"] != float64(1) || s["connects_accepted"] != float64(1) ||
		s["subscriptions"] != float64(2) {
		t.Fatalf("summary: %v", s)
	}
	r.req(t, "POST", "/api/v1/extensions/wat-auth/disable", nil, bearer("admin")).want(t, 200, "disable")
	poll.Settle(t, "the no-security warning", func() string {
		m := r.req(t, "GET", "/api/v1/broker", nil, bearer("viewer")).json(t)
		if fmt.Sprint(m["warnings"]) != "["+admin.WarnNoSecurity+"]" {
			return fmt.Sprint(m["warnings"])
		}
		return ""
	})
}

// TestTraces: a recording started through the API records a real
// client's packets; stop, list, download (one and all, as zips of JSON
// lines), delete; each action audited; a bad spec is a 400 naming the
// field.
func TestTraces(t *testing.T) {
	r := startRig(t, testAdmin())
	rec := r.req(t, "POST", "/api/v1/traces", map[string]any{"client_id": "tr-*", "packets": []string{"PUBLISH"}, "duration_seconds": 60},
		bearer("operator")).want(t, 201, "start").json(t)
	id := rec["id"].(string)
	if rec["state"] != "recording" || rec["spec"].(map[string]any)["client_id"] != "tr-*" || rec["spec"].(map[string]any)["duration_seconds"] != float64(60) {
		t.Fatalf("started: %v", rec)
	}
	r.mustAudit(t, "tok-operator", "trace.start", id, "ok")
	c := connect5(t, r.mqtt, "tr-1", nil, nil)
	if _, err := c.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: "t/1", QoS: 1, Payload: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the PUBLISH recorded", func() bool { got, err := r.rec.Get(id); return err == nil && got.Packets > 0 })
	st := r.req(t, "POST", "/api/v1/traces/"+id+"/stop", nil, bearer("operator")).want(t, 200, "stop").json(t)
	if st["state"] != "stopped" || st["stop_reason"] != "stopped by tok-operator" || st["stopped_at"] == nil {
		t.Fatalf("stopped: %v", st)
	}
	r.req(t, "POST", "/api/v1/traces/"+id+"/stop", nil, bearer("operator")).want(t, 409, "stop twice")
	r.mustAudit(t, "tok-operator", "trace.stop", id, "ok")
	list := r.req(t, "GET", "/api/v1/traces", nil, bearer("operator")).want(t, 200, "list").json(t)["recordings"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Fatalf("list: %v", list)
	}
	for _, path := range []string{"/api/v1/traces/" + id + "/download", "/api/v1/traces/download"} {
		z := r.req(t, "GET", path, nil, bearer("operator")).want(t, 200, path)
		if z.hdr.Get("Content-Type") != "application/zip" || !strings.Contains(z.hdr.Get("Content-Disposition"), "attachment") {
			t.Fatalf("%s: headers %v", path, z.hdr)
		}
		zr, err := zip.NewReader(bytes.NewReader(z.body), int64(len(z.body)))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, line := range strings.Split(zipText(t, z.body), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) == nil && l["type"] == "PUBLISH" && l["client_id"] == "tr-1" && l["topic"] == "t/1" && l["payload_text"] == "hello" {
				found = true
			}
		}
		if !found || len(zr.File) == 0 {
			t.Fatalf("%s: no PUBLISH of tr-1 in:\n%s", path, zipText(t, z.body))
		}
	}
	r.mustAudit(t, "tok-operator", "trace.download", id, "ok")
	r.mustAudit(t, "tok-operator", "trace.download", "all", "ok")
	e := r.req(t, "POST", "/api/v1/traces", map[string]any{"topic_filter": "a/#/b"}, bearer("operator")).want(t, 400, "bad filter").json(t)
	if !strings.Contains(e["error"].(string), "topic_filter") {
		t.Fatalf("error %v does not name topic_filter", e)
	}
	r.req(t, "DELETE", "/api/v1/traces/"+id, nil, bearer("operator")).want(t, 204, "delete")
	r.req(t, "DELETE", "/api/v1/traces/"+id, nil, bearer("operator")).want(t, 404, "delete twice")
	r.req(t, "GET", "/api/v1/traces/"+id+"/download", nil, bearer("operator")).want(t, 404, "download deleted")
	r.mustAudit(t, "tok-operator", "trace.delete", id, "ok")
}
