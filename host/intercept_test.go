package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The interceptors run against testdata/guests/interceptprobe, whose
// manifest config says what every interceptor does (its doc comment), by
// calling Host's broker.Interceptors methods directly: no broker needed.

// iprobe is one interceptprobe extension of a test.
type iprobe struct {
	id       string
	priority int
	config   string // the config section's lines, indented
	limits   string // the limits section's lines, indented (default: a 5s call deadline, so that waiting for a replaced instance on a busy machine is no failure)
}

// probeHost installs the probes into a new folder and loads it.
func probeHost(t *testing.T, probes ...iprobe) (*Host, *logBuffer, string) {
	t.Helper()
	wasm := buildGuest(t, "testdata/guests", "interceptprobe")
	ext := t.TempDir()
	for _, p := range probes {
		installExtension(t, ext, p.id, wasm, p.priority, probeManifest(p))
	}
	h, logs := newTestHost(t, ext)
	for _, p := range probes {
		if st := statusOf(t, h, p.id); st.State != StateRunning {
			t.Fatalf("%s: %+v", p.id, st)
		}
	}
	return h, logs, ext
}

func probeManifest(p iprobe) string {
	limits := p.limits
	if limits == "" {
		limits = "  call_deadline: 5s\n"
	}
	if !strings.Contains(limits, "pool_size") {
		limits += "  pool_size: 1\n"
	}
	return "abi: \"1.2\"\nlimits:\n" + limits + "config:\n" + p.config
}

var peer = broker.Peer{ID: "c1", Username: "u", ProtocolVersion: 5}

// message is a PUBLISH with every field set.
func message() *broker.Message {
	return &broker.Message{Topic: "t/1", Payload: []byte("x"), QoS: 1, MessageExpiry: 9, PayloadFormat: 0,
		ContentType: "ct", ResponseTopic: "r", CorrelationData: []byte("cd"),
		UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}}}
}

func TestInterceptActive(t *testing.T) {
	h, _, _ := probeHost(t)
	if a := h.Active(); a != 0 {
		t.Errorf("no interceptor: Active = %b", a)
	}
	// Intercepting nothing is free: the chain is empty and m unchanged.
	m := message()
	if p := h.InterceptPublish(peer, m); p.Stop || !reflect.DeepEqual(m, message()) {
		t.Errorf("%+v, %+v", p, m)
	}
	h, _, _ = probeHost(t, iprobe{id: "p", config: "  mode: noop\n"})
	if a := h.Active(); a != 0b111111 {
		t.Errorf("every interceptor exported: Active = %b", a)
	}
	for p := broker.InterceptConnect; p <= broker.InterceptDisconnect; p++ {
		if !h.Active().Has(p) {
			t.Errorf("point %d not active", p)
		}
	}
}

// TestInterceptSetAll: every field each interceptor may change arrives
// changed in the broker's packet.
func TestInterceptSetAll(t *testing.T) {
	h, logs, _ := probeHost(t, iprobe{id: "p", config: "  mode: set-all\n  tag: a\n"})

	c := &broker.Connect{ClientID: "c1", Username: "u", HasUsername: true, Password: []byte("pw"), ProtocolVersion: 5,
		Keepalive: 10, SessionExpiry: 1, ReceiveMaximum: 100, UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}}}
	h.InterceptConnect(context.Background(), c)
	want := &broker.Connect{ClientID: "c1-a", Username: "user-a", HasUsername: true, Password: []byte("pass-a"), ProtocolVersion: 5,
		Keepalive: 42, SessionExpiry: 77, ReceiveMaximum: 9,
		UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}, {Key: "a", Value: "1"}},
		Will:           &broker.WillInfo{Topic: "will/a", Payload: []byte("gone"), QoS: 1, Retain: true, Delay: 5}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("CONNECT\n%+v (will %+v)\nwant\n%+v (will %+v)", c, c.Will, want, want.Will)
	}

	ack := &broker.Connack{SessionPresent: true}
	h.InterceptConnack(peer, ack)
	if !reflect.DeepEqual(ack, &broker.Connack{SessionPresent: true, ReasonString: "welcome a",
		UserProperties: []broker.UserProperty{{Key: "a", Value: "1"}}}) {
		t.Errorf("CONNACK %+v", ack)
	}

	m := message()
	if p := h.InterceptPublish(peer, m); p.Stop {
		t.Fatalf("prevented: %+v", p)
	}
	wantM := &broker.Message{Topic: "a/t/1", Payload: []byte("[x]"), QoS: 0, Retain: true, MessageExpiry: 100, PayloadFormat: 1,
		ContentType: "text/a", ResponseTopic: "replies/a", CorrelationData: []byte("corr-a"),
		UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}, {Key: "a", Value: "1"}}}
	if !reflect.DeepEqual(m, wantM) {
		t.Errorf("PUBLISH inbound\n%+v\nwant\n%+v", m, wantM)
	}

	m = message()
	if p := h.InterceptDelivery(peer, "publisher", m); p.Stop {
		t.Fatalf("prevented: %+v", p)
	}
	wantM = message()
	wantM.Topic, wantM.Payload = "a/t/1", []byte("[x]")
	wantM.UserProperties = append(wantM.UserProperties, broker.UserProperty{Key: "a", Value: "1"})
	if !reflect.DeepEqual(m, wantM) {
		t.Errorf("PUBLISH outbound\n%+v\nwant\n%+v", m, wantM)
	}

	s := &broker.Subscription{Filter: "f/#", QoS: 2}
	if p := h.InterceptSubscribe(peer, s); p.Stop {
		t.Fatalf("prevented: %+v", p)
	}
	if !reflect.DeepEqual(s, &broker.Subscription{Filter: "f/#", QoS: 0,
		Options: broker.SubscriptionOptions{NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}) {
		t.Errorf("SUBSCRIBE %+v", s)
	}
	s = &broker.Subscription{Filter: "$share/g/f", QoS: 1, Shared: true}
	h.InterceptSubscribe(peer, s)
	if s.Options.NoLocal || !s.Options.RetainAsPublished || s.QoS != 0 {
		t.Errorf("shared SUBSCRIBE %+v", s)
	}

	for _, out := range []bool{false, true} {
		d := &broker.DisconnectPacket{Outbound: out, ReasonCode: 0x8E}
		h.InterceptDisconnect(peer, d)
		if !reflect.DeepEqual(d, &broker.DisconnectPacket{Outbound: out, ReasonCode: 0x8E, ReasonString: "bye a",
			UserProperties: []broker.UserProperty{{Key: "a", Value: "1"}}}) {
			t.Errorf("DISCONNECT %+v", d)
		}
	}
	if st := statusOf(t, h, "p"); st.Errors != 0 {
		t.Errorf("%d errors:\n%s", st.Errors, logs)
	}
}

// TestInterceptChain: interceptors run in priority order, each seeing what
// the previous produced; the topic a filter matches is the one as it
// reaches that extension.
func TestInterceptChain(t *testing.T) {
	h, _, _ := probeHost(t,
		iprobe{id: "first", priority: 10, config: "  mode: set-all\n  tag: legacy\n"},
		iprobe{id: "second", priority: 5, config: "  mode: add-property\n  tag: saw\n  inbound_filters: [\"legacy/#\"]\n"})
	m := message()
	h.InterceptPublish(peer, m)
	want := []broker.UserProperty{{Key: "k", Value: "v"}, {Key: "legacy", Value: "1"}, {Key: "saw", Value: "legacy/t/1"}}
	if m.Topic != "legacy/t/1" || !reflect.DeepEqual(m.UserProperties, want) {
		t.Errorf("topic %q, properties %+v; want legacy/t/1, %+v", m.Topic, m.UserProperties, want)
	}

	// The other way round: second is called first, on the original topic,
	// which its filter does not match.
	h, _, _ = probeHost(t,
		iprobe{id: "first", priority: 5, config: "  mode: set-all\n  tag: legacy\n"},
		iprobe{id: "second", priority: 10, config: "  mode: add-property\n  tag: saw\n  inbound_filters: [\"legacy/#\"]\n"})
	m = message()
	h.InterceptPublish(peer, m)
	if want := want[:2]; !reflect.DeepEqual(m.UserProperties, want) {
		t.Errorf("properties %+v, want %+v", m.UserProperties, want)
	}
	// Without a filter, second sees the original topic.
	h, _, _ = probeHost(t,
		iprobe{id: "first", priority: 5, config: "  mode: set-all\n  tag: legacy\n"},
		iprobe{id: "second", priority: 10, config: "  mode: add-property\n  tag: saw\n"})
	m = message()
	h.InterceptPublish(peer, m)
	if want := []broker.UserProperty{{Key: "k", Value: "v"}, {Key: "saw", Value: "t/1"}, {Key: "legacy", Value: "1"}}; !reflect.DeepEqual(m.UserProperties, want) {
		t.Errorf("properties %+v, want %+v", m.UserProperties, want)
	}
}

// TestInterceptFilters: publish interceptors are called only for the
// topics their filters match (from the start configuration), and the
// status shows the filters.
func TestInterceptFilters(t *testing.T) {
	h, _, _ := probeHost(t, iprobe{id: "p", config: "  mode: add-property\n  tag: seen\n" +
		"  inbound_filters: [\"legacy/#\", \"old/+\"]\n  outbound_filters: [\"alerts/#\"]\n"})
	st := statusOf(t, h, "p")
	if !reflect.DeepEqual(st.InterceptInboundFilters, []string{"legacy/#", "old/+"}) ||
		!reflect.DeepEqual(st.InterceptOutboundFilters, []string{"alerts/#"}) {
		t.Errorf("status filters %q, %q", st.InterceptInboundFilters, st.InterceptOutboundFilters)
	}
	calls := st.Calls
	for _, tc := range []struct {
		topic         string
		inbound, outb bool
	}{
		{"legacy/a/b", true, false},
		{"old/x", true, false},
		{"old/x/y", false, false},
		{"alerts/fire", false, true},
		{"other", false, false},
	} {
		m := &broker.Message{Topic: tc.topic}
		h.InterceptPublish(peer, m)
		if got := len(m.UserProperties) == 1; got != tc.inbound {
			t.Errorf("inbound %s: intercepted %v", tc.topic, got)
		}
		m = &broker.Message{Topic: tc.topic}
		h.InterceptDelivery(peer, "", m)
		if got := len(m.UserProperties) == 1; got != tc.outb {
			t.Errorf("outbound %s: intercepted %v", tc.topic, got)
		}
	}
	if n := statusOf(t, h, "p").Calls - calls; n != 3 {
		t.Errorf("%d calls, want 3 (filtered messages cost no call)", n)
	}
}

// TestInterceptClients: the outbound interceptor is called only for
// deliveries to subscribers whose client id matches its patterns (from
// the start configuration), and only where its topic filters match too;
// the inbound one is not narrowed by them; the status shows the patterns.
func TestInterceptClients(t *testing.T) {
	h, _, _ := probeHost(t, iprobe{id: "p", config: "  mode: add-property\n  tag: seen\n" +
		"  outbound_clients: [\"app-*\", \"ops\"]\n"})
	st := statusOf(t, h, "p")
	if !reflect.DeepEqual(st.InterceptOutboundClients, []string{"app-*", "ops"}) || st.InterceptOutboundFilters != nil {
		t.Errorf("status: clients %q, filters %q", st.InterceptOutboundClients, st.InterceptOutboundFilters)
	}
	calls := st.Calls
	for _, tc := range []struct {
		client string
		want   bool
	}{
		{"app-1", true},
		{"app-", true},
		{"ops", true},
		{"dev-1", false},
		{"app", false},
		{"ops-2", false},
	} {
		m := &broker.Message{Topic: "t/1"}
		h.InterceptDelivery(broker.Peer{ID: tc.client, ProtocolVersion: 5}, "pub", m)
		want := []broker.UserProperty(nil)
		if tc.want {
			want = []broker.UserProperty{{Key: "seen", Value: "t/1"}}
		}
		if !reflect.DeepEqual(m.UserProperties, want) {
			t.Errorf("delivery to %s: properties %+v, want %+v", tc.client, m.UserProperties, want)
		}
		if got := h.WantsDelivery(tc.client, "t/1"); got != tc.want {
			t.Errorf("WantsDelivery(%s, t/1) = %v, want %v", tc.client, got, tc.want)
		}
	}
	// Client patterns do not narrow the inbound interceptor.
	m := &broker.Message{Topic: "t/1"}
	h.InterceptPublish(broker.Peer{ID: "dev-1", ProtocolVersion: 5}, m)
	if len(m.UserProperties) != 1 {
		t.Errorf("inbound from dev-1 not intercepted: %+v", m.UserProperties)
	}
	if n := statusOf(t, h, "p").Calls - calls; n != 4 {
		t.Errorf("%d calls, want 4 (deliveries to other clients cost no call)", n)
	}

	// With topic filters too, a delivery must match both.
	h, _, _ = probeHost(t, iprobe{id: "p", config: "  mode: add-property\n  tag: seen\n" +
		"  outbound_clients: [\"app-*\"]\n  outbound_filters: [\"alerts/#\"]\n"})
	for _, tc := range []struct {
		client, topic string
		want          bool
	}{
		{"app-1", "alerts/fire", true},
		{"app-1", "other", false},
		{"dev-1", "alerts/fire", false},
	} {
		m := &broker.Message{Topic: tc.topic}
		h.InterceptDelivery(broker.Peer{ID: tc.client, ProtocolVersion: 5}, "", m)
		if got := len(m.UserProperties) == 1; got != tc.want {
			t.Errorf("delivery of %s to %s: intercepted %v, want %v", tc.topic, tc.client, got, tc.want)
		}
		if got := h.WantsDelivery(tc.client, tc.topic); got != tc.want {
			t.Errorf("WantsDelivery(%s, %s) = %v, want %v", tc.client, tc.topic, got, tc.want)
		}
	}

	// Two extensions: a delivery is wanted when either would be called.
	h, _, _ = probeHost(t,
		iprobe{id: "topics", priority: 20, config: "  mode: add-property\n  tag: seen\n  outbound_filters: [\"alerts/#\"]\n"},
		iprobe{id: "clients", priority: 10, config: "  mode: add-property\n  tag: seen\n  outbound_clients: [\"app-*\"]\n"})
	for _, tc := range []struct {
		client, topic string
		want          bool
	}{
		{"app-1", "other", true},
		{"dev-1", "alerts/fire", true},
		{"dev-1", "other", false},
	} {
		if got := h.WantsDelivery(tc.client, tc.topic); got != tc.want {
			t.Errorf("two extensions: WantsDelivery(%s, %s) = %v, want %v", tc.client, tc.topic, got, tc.want)
		}
	}
}

// TestInterceptClientRefused: an invalid pattern from the configuration
// refuses the start, naming the pattern and the status.
func TestInterceptClientRefused(t *testing.T) {
	wasm := buildGuest(t, "testdata/guests", "interceptprobe")
	ext := t.TempDir()
	installExtension(t, ext, "p", wasm, 0, probeManifest(iprobe{config: "  outbound_clients: [\"a*b\"]\n"}))
	h, _ := newTestHost(t, ext)
	st := statusOf(t, h, "p")
	if st.State != StateFailed || !strings.Contains(st.Reason, `outbound_clients a*b: propolis: INVALID_ARGUMENT`) {
		t.Errorf("%s: %q", st.State, st.Reason)
	}
}

// TestInterceptPrevent: DENY stops the packet with the reason code (0:
// 0x83) and reason string, and stops the chain.
func TestInterceptPrevent(t *testing.T) {
	h, _, _ := probeHost(t,
		iprobe{id: "before", priority: 20, config: "  mode: add-property\n  tag: before\n"},
		iprobe{id: "stopper", priority: 10, config: "  mode: prevent\n  code: 153\n  reason: schema\n"},
		iprobe{id: "after", priority: 5, config: "  mode: add-property\n  tag: after\n"})
	want := broker.Prevented{Stop: true, ReasonCode: 0x99, ReasonString: "schema", Extension: "stopper"}
	m := &broker.Message{Topic: "t"}
	if p := h.InterceptPublish(peer, m); p != want {
		t.Errorf("inbound: %+v, want %+v", p, want)
	}
	if !reflect.DeepEqual(m.UserProperties, []broker.UserProperty{{Key: "before", Value: "t"}}) {
		t.Errorf("the chain went on after DENY, or an earlier change was lost: %+v", m.UserProperties)
	}
	if p := h.InterceptDelivery(peer, "x", &broker.Message{Topic: "t"}); p != want {
		t.Errorf("outbound: %+v", p)
	}
	if p := h.InterceptSubscribe(peer, &broker.Subscription{Filter: "a/#"}); p != want {
		t.Errorf("subscribe: %+v", p)
	}
	// The non-preventing interceptors go on.
	ack := &broker.Connack{}
	h.InterceptConnack(peer, ack)
	if len(ack.UserProperties) != 3 {
		t.Errorf("CONNACK properties %+v", ack.UserProperties)
	}

	h, _, _ = probeHost(t, iprobe{id: "stopper", config: "  mode: prevent\n"})
	if p := h.InterceptPublish(peer, &broker.Message{Topic: "t"}); p != (broker.Prevented{Stop: true, ReasonCode: 0x83, Extension: "stopper"}) {
		t.Errorf("code 0: %+v", p)
	}
}

// TestInterceptFailuresLeavePacketUnchanged: a trap, an overrun, a refused
// change (even after good ones) or a garbage answer leaves the packet as
// it was before that extension, the chain goes on, and the failure is
// counted and logged with extension, callback and client.
func TestInterceptFailuresLeavePacketUnchanged(t *testing.T) {
	for _, tc := range []struct {
		mode, limits, cause string
	}{
		{"trap", "", "interceptprobe: trap mode"},
		{"spin", "  call_deadline: 50ms\n", "call deadline exceeded"},
		{"invalid-topic", "", `invalid answer: packet_set topic: \"bad/+/topic\" has a wildcard`},
		{"forbidden-field", "", "invalid answer: packet_set_int qos: QoS 2 above the message's 1: a QoS may only go down"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h, logs, _ := probeHost(t,
				iprobe{id: "bad", priority: 10, config: "  mode: " + tc.mode + "\n", limits: tc.limits},
				iprobe{id: "after", priority: 5, config: "  mode: add-property\n  tag: after\n"})
			m := message()
			if p := h.InterceptPublish(peer, m); p.Stop {
				t.Fatalf("prevented: %+v", p)
			}
			want := message()
			want.UserProperties = append(want.UserProperties, broker.UserProperty{Key: "after", Value: "t/1"})
			if !reflect.DeepEqual(m, want) {
				t.Errorf("packet\n%+v\nwant\n%+v", m, want)
			}
			if st := statusOf(t, h, "bad"); st.Errors != 1 || st.State != StateRunning {
				t.Errorf("status %+v, want 1 error, running", st)
			}
			line := fmt.Sprintf(`msg="interceptor failed; packet left unchanged" extension=bad callback=propolis_intercept_publish_inbound client=c1`)
			if !strings.Contains(logs.String(), line) || !strings.Contains(logs.String(), tc.cause) {
				t.Errorf("log lacks %q / %q:\n%s", line, tc.cause, logs)
			}
		})
	}

	// Every interceptor: an invalid change leaves its packet unchanged.
	h, _, _ := probeHost(t, iprobe{id: "bad", config: "  mode: forbidden-field\n"})
	c := &broker.Connect{ClientID: "c1"}
	h.InterceptConnect(context.Background(), c)
	if !reflect.DeepEqual(c, &broker.Connect{ClientID: "c1"}) {
		t.Errorf("CONNECT %+v", c)
	}
	ack := &broker.Connack{ReasonString: "r"}
	h.InterceptConnack(peer, ack)
	if !reflect.DeepEqual(ack, &broker.Connack{ReasonString: "r"}) {
		t.Errorf("CONNACK %+v", ack)
	}
	m := &broker.Message{Topic: "t", QoS: 2}
	h.InterceptDelivery(peer, "", m)
	if !reflect.DeepEqual(m, &broker.Message{Topic: "t", QoS: 2}) {
		t.Errorf("outbound %+v", m)
	}
	for _, s := range []*broker.Subscription{{Filter: "f", QoS: 1}, {Filter: "$share/g/f", QoS: 1, Shared: true}} {
		orig := *s
		if p := h.InterceptSubscribe(peer, s); p.Stop || !reflect.DeepEqual(*s, orig) {
			t.Errorf("SUBSCRIBE %+v, %+v", s, p)
		}
	}
	d := &broker.DisconnectPacket{ReasonCode: 4}
	h.InterceptDisconnect(peer, d)
	if !reflect.DeepEqual(d, &broker.DisconnectPacket{ReasonCode: 4}) {
		t.Errorf("DISCONNECT %+v", d)
	}
	if st := statusOf(t, h, "bad"); st.Errors != 6 {
		t.Errorf("%d errors, want 6", st.Errors)
	}
}

// TestInterceptGarbageAnswers: answers an interceptor may not give (DENY
// from intercept_connect, undefined decisions) are invalid answers and
// leave the packet unchanged (testdata/wasm/error/intercept_garbage.wat).
func TestInterceptGarbageAnswers(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "garbage", wasmFixture("error/intercept_garbage"), 0, "limits:\n  call_deadline: 5s\n")
	h, logs := newTestHost(t, ext)
	c := &broker.Connect{ClientID: "c1"}
	h.InterceptConnect(context.Background(), c)
	h.InterceptConnack(peer, &broker.Connack{})
	m := message()
	if p := h.InterceptPublish(peer, m); p.Stop || !reflect.DeepEqual(m, message()) {
		t.Errorf("inbound: %+v, %+v", p, m)
	}
	if p := h.InterceptDelivery(peer, "", m); p.Stop || !reflect.DeepEqual(m, message()) {
		t.Errorf("outbound: %+v, %+v", p, m)
	}
	if p := h.InterceptSubscribe(peer, &broker.Subscription{Filter: "f"}); p.Stop {
		t.Errorf("subscribe: %+v", p)
	}
	h.InterceptDisconnect(peer, &broker.DisconnectPacket{})
	if st := statusOf(t, h, "garbage"); st.Errors != 6 {
		t.Errorf("%d errors, want 6:\n%s", st.Errors, logs)
	}
	if !strings.Contains(logs.String(), "invalid answer: decision 0x2") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestInterceptCrashLoopStops: ten failures in ten seconds stop the
// extension (ABI.md section 7); stopped, it leaves packets unchanged and
// the client unaffected, and the chain goes on.
func TestInterceptCrashLoopStops(t *testing.T) {
	h, _, _ := probeHost(t,
		iprobe{id: "bad", priority: 10, config: "  mode: trap\n"},
		iprobe{id: "after", priority: 5, config: "  mode: add-property\n  tag: after\n"})
	calls := 0
	poll.Until(t, "stopped after a crash loop", func() bool {
		calls++
		h.InterceptPublish(peer, &broker.Message{Topic: "t"})
		st := statusOf(t, h, "bad")
		return st.State == StateFailed && strings.Contains(st.Reason, "crash loop")
	})
	if calls < crashLoopFailures {
		t.Errorf("stopped after %d calls, before %d failures", calls, crashLoopFailures)
	}
	m := &broker.Message{Topic: "t"}
	if p := h.InterceptPublish(peer, m); p.Stop || !reflect.DeepEqual(m.UserProperties, []broker.UserProperty{{Key: "after", Value: "t"}}) {
		t.Errorf("after the stop: %+v, %+v", p, m)
	}
}

// TestInterceptHotReload: a new version of an interceptor extension
// changes what the next call does; removing it ends the interception.
func TestInterceptHotReload(t *testing.T) {
	h, _, ext := probeHost(t, iprobe{id: "p", config: "  mode: add-property\n  tag: v1\n"})
	m := &broker.Message{Topic: "t"}
	h.InterceptPublish(peer, m)
	if len(m.UserProperties) != 1 || m.UserProperties[0].Key != "v1" {
		t.Fatalf("v1: %+v", m.UserProperties)
	}
	manifest := "id: p\nname: p\nversion: 2.0.0\npriority: 0\nmodule: ext.wasm\n" +
		probeManifest(iprobe{config: "  mode: prevent\n  code: 151\n"})
	if err := os.WriteFile(filepath.Join(ext, "p", ManifestFile), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "reloaded", func() bool {
		h.scan(context.Background(), false)
		return statusOf(t, h, "p").Version == "2.0.0"
	})
	if p := h.InterceptPublish(peer, &broker.Message{Topic: "t"}); p.ReasonCode != 0x97 {
		t.Errorf("after the reload: %+v", p)
	}
	if err := os.WriteFile(filepath.Join(ext, "p", DisabledFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "disabled", func() bool {
		h.scan(context.Background(), false)
		return h.Active() == 0
	})
	if p := h.InterceptPublish(peer, &broker.Message{Topic: "t"}); p.Stop {
		t.Errorf("after disable: %+v", p)
	}
}

// TestInterceptConnectHonoursContext: a CONNECT whose deadline passed is
// not intercepted, and the extension is not blamed.
func TestInterceptConnectHonoursContext(t *testing.T) {
	h, _, _ := probeHost(t, iprobe{id: "p", config: "  mode: set-all\n"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &broker.Connect{ClientID: "c1"}
	h.InterceptConnect(ctx, c)
	if c.ClientID != "c1" {
		t.Errorf("intercepted after the deadline: %+v", c)
	}
	if st := statusOf(t, h, "p"); st.Errors != 0 {
		t.Errorf("%d errors", st.Errors)
	}
}

// TestInterceptConcurrent: calls from many clients at once, over a pool of
// instances, each get their own changes (staged changes never leak from
// one call into another).
func TestInterceptConcurrent(t *testing.T) {
	h, _, _ := probeHost(t, iprobe{id: "p", config: "  mode: set-all\n  tag: x\n", limits: "  call_deadline: 5s\n  pool_size: 3\n"})
	const clients, calls = 8, 200
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		go func(c int) {
			cl := broker.Peer{ID: fmt.Sprintf("c%d", c), ProtocolVersion: 5}
			for i := 0; i < calls; i++ {
				topic := fmt.Sprintf("t/%d/%d", c, i)
				m := &broker.Message{Topic: topic, Payload: []byte(topic), QoS: 2}
				h.InterceptPublish(cl, m)
				if m.Topic != "x/"+topic || string(m.Payload) != "["+topic+"]" || len(m.UserProperties) != 1 {
					errs <- fmt.Errorf("client %d call %d: %+v", c, i, m)
					return
				}
			}
			errs <- nil
		}(c)
	}
	for c := 0; c < clients; c++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if st := statusOf(t, h, "p"); st.Errors != 0 {
		t.Errorf("%d errors", st.Errors)
	}
}
