package host

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The subscriptions, retained and connection_attributes services, run from
// Go guests (testdata/guests/svcprobe, testdata/guests/connattrs) against
// a real broker, with what they do read on the wire by real MQTT clients.

// subClient is an MQTT 5 client and the messages it receives.
type subClient struct {
	*paho.Client
	msgs chan *paho.Publish
	ack  *paho.Connack
}

// dialSub connects an MQTT 5 client with the given clean start and session
// expiry, and user name when not empty.
func dialSub(t *testing.T, addr, id, user string, clean bool, expiry uint32) *subClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &subClient{msgs: make(chan *paho.Publish, 64)}
	c.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(p paho.PublishReceived) (bool, error) { c.msgs <- p.Packet; return true, nil },
		}})
	cp := &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, RequestProblemInfo: true}}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
	}
	if c.ack, err = c.Connect(ctx(t), cp); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

// next returns the next message c received, or fails the test.
func (c *subClient) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case p := <-c.msgs:
		return p
	case <-time.After(poll.Timeout):
		t.Fatal("no message received")
		return nil
	}
}

// subscribe subscribes at QoS 1 and waits for the SUBACK.
func (c *subClient) subscribe(t *testing.T, filter string) {
	t.Helper()
	if _, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

// publish publishes at QoS 1 and waits for the PUBACK.
func (c *subClient) publish(t *testing.T, topic, payload string, retain bool) {
	t.Helper()
	if _, err := c.Publish(ctx(t), &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// probeSteps runs svcprobe commands and compares each answer with want.
func probeSteps(t *testing.T, c *paho.Client, steps []struct{ cmd, want string }) {
	t.Helper()
	for _, s := range steps {
		if got := probe(t, c, s.cmd); got != s.want {
			t.Errorf("%q: got %q, want %q", s.cmd, got, s.want)
		}
	}
}

// TestSubscriptionServices: a subscription added through the guest makes a
// real client receive matching messages, with its identifier; removing it
// stops them; bad input is INVALID_ARGUMENT, an unknown client NOT_FOUND.
func TestSubscriptionServices(t *testing.T) {
	w, c := probeClient(t, "services: [subscriptions]\n", Options{}, "probe")
	pub := dialSub(t, w.addr, "pub", "", true, 0)
	sub := dialSub(t, w.addr, "sub1", "", true, 0)
	sub.subscribe(t, "marker")

	probeSteps(t, c, []struct{ cmd, want string }{
		{"subs|sub1", "ok:marker/1/false/false/0/0"},
		{"subadd|sub1|jobs/+/run|1|r2|7", "ok"},
		{"subs|sub1", "ok:jobs/+/run/1/false/true/2/7,marker/1/false/false/0/0"},
		// The client being authorized may change its own session.
		{"subadd|probe|self/#|0||0", "ok"},
		{"subs|probe", "ok:self/#/0/false/false/0/0"},
		{"subrm|probe|self/#", "ok"},
		{"subs|probe", "ok"},
	})
	pub.publish(t, "jobs/a/run", "go", false)
	p := sub.next(t)
	if p.Topic != "jobs/a/run" || string(p.Payload) != "go" || p.QoS != 1 ||
		p.Properties == nil || p.Properties.SubscriptionIdentifier == nil || *p.Properties.SubscriptionIdentifier != 7 {
		t.Fatalf("got %s %q QoS %d %+v; want jobs/a/run \"go\" QoS 1 with identifier 7", p.Topic, p.Payload, p.QoS, p.Properties)
	}

	probeSteps(t, c, []struct{ cmd, want string }{
		{"subrm|sub1|jobs/+/run", "ok"},
		{"subrm|sub1|jobs/+/run", "ok"}, // not held: not an error
		{"subs|sub1", "ok:marker/1/false/false/0/0"},
	})
	// Removed: the next message sub1 gets is the marker published after.
	pub.publish(t, "jobs/a/run", "stale", false)
	pub.publish(t, "marker", "m", false)
	if p := sub.next(t); p.Topic != "marker" {
		t.Fatalf("after removal got %s %q, want the marker", p.Topic, p.Payload)
	}

	probeSteps(t, c, []struct{ cmd, want string }{
		{"subs|nobody", "err:propolis: NOT_FOUND"},
		{"subadd|nobody|x|0||0", "err:propolis: NOT_FOUND"},
		{"subrm|nobody|x", "err:propolis: NOT_FOUND"},
		{"subadd|sub1|a/#/b|0||0", "err:propolis: INVALID_ARGUMENT"},
		{"subadd|sub1||0||0", "err:propolis: INVALID_ARGUMENT"},
		{"subadd|sub1|a/\xff|0||0", "err:propolis: INVALID_ARGUMENT"},
		{"subadd|sub1|x|3||0", "err:propolis: INVALID_ARGUMENT"},
		{"subadd|sub1|x|0|3|0", "err:propolis: INVALID_ARGUMENT"},
		{"subadd|sub1|x|0||268435456", "err:propolis: INVALID_ARGUMENT"},
		{"subadd|sub1|$share/g/x|0|n|0", "err:propolis: INVALID_ARGUMENT"},
		{"subs|sub1", "ok:marker/1/false/false/0/0"},
	})
}

// TestSubscriptionOfflineSession: a subscription added to an offline
// persistent session queues matching QoS 1 messages, which the client
// receives when it resumes the session.
func TestSubscriptionOfflineSession(t *testing.T) {
	w, c := probeClient(t, "services: [subscriptions]\n", Options{}, "probe")
	pub := dialSub(t, w.addr, "pub", "", true, 0)
	off := dialSub(t, w.addr, "off1", "", false, 300)
	_ = off.Disconnect(&paho.Disconnect{ReasonCode: 0})
	poll.Until(t, "off1 offline", func() bool {
		info, ok := w.srv.Client("off1")
		return ok && !info.Connected
	})

	probeSteps(t, c, []struct{ cmd, want string }{
		{"subadd|off1|alerts/#|1||0", "ok"},
		{"subs|off1", "ok:alerts/#/1/false/false/0/0"},
	})
	pub.publish(t, "alerts/fire", "while offline", false)
	poll.Until(t, "the message queued for off1", func() bool {
		info, _ := w.srv.Client("off1")
		return info.Queued == 1
	})

	back := dialSub(t, w.addr, "off1", "", false, 300)
	if !back.ack.SessionPresent {
		t.Fatal("off1's session was not resumed")
	}
	if p := back.next(t); p.Topic != "alerts/fire" || string(p.Payload) != "while offline" || p.QoS != 1 {
		t.Fatalf("got %s %q QoS %d, want the queued alerts/fire at QoS 1", p.Topic, p.Payload, p.QoS)
	}
	// And live messages from then on.
	pub.publish(t, "alerts/flood", "live", false)
	if p := back.next(t); p.Topic != "alerts/flood" {
		t.Fatalf("got %s, want alerts/flood", p.Topic)
	}
}

// TestRetainedServices: a message put through the guest reaches a new
// subscriber as retained, with its properties; get reads what a real
// client retained; remove stops new subscribers from getting it; bad
// topics and QoS 7 are INVALID_ARGUMENT.
func TestRetainedServices(t *testing.T) {
	w, c := probeClient(t, "services: [retained]\n", Options{}, "probe")
	pub := dialSub(t, w.addr, "pub", "", true, 0)

	probeSteps(t, c, []struct{ cmd, want string }{
		{"retget|ret/a", "err:propolis: NOT_FOUND"},
		{"retput|ret/a|hello|1|0|text/plain|k=v;k2=v2", "ok"},
		{"retget|ret/a", "ok:hello/qos=1/retain=true/expiry=0/ct=text/plain/props=k=v;k2=v2"},
	})
	s1 := dialSub(t, w.addr, "s1", "", true, 0)
	s1.subscribe(t, "ret/a")
	p := s1.next(t)
	if p.Topic != "ret/a" || string(p.Payload) != "hello" || !p.Retain || p.QoS != 1 || p.Properties == nil ||
		p.Properties.ContentType != "text/plain" || len(p.Properties.User) != 2 || p.Properties.User[1].Value != "v2" {
		t.Fatalf("retained message: %s %q retain %v QoS %d %+v", p.Topic, p.Payload, p.Retain, p.QoS, p.Properties)
	}

	// What a real client retained, read back; the expiry is what remains.
	if _, err := pub.Publish(ctx(t), &paho.Publish{Topic: "ret/b", QoS: 0, Retain: true, Payload: []byte("real"),
		Properties: &paho.PublishProperties{MessageExpiry: ptr[uint32](3600)}}); err != nil {
		t.Fatal(err)
	}
	var got string
	poll.Until(t, "ret/b retained", func() bool {
		got = probe(t, c, "retget|ret/b")
		return strings.HasPrefix(got, "ok:")
	})
	if got != "ok:real/qos=0/retain=true/expiry=3600/ct=/props=" && got != "ok:real/qos=0/retain=true/expiry=3599/ct=/props=" {
		t.Errorf("retget|ret/b: got %q", got)
	}

	probeSteps(t, c, []struct{ cmd, want string }{
		{"retrm|ret/a", "ok"},
		{"retrm|ret/a", "ok"}, // none: not an error
		{"retget|ret/a", "err:propolis: NOT_FOUND"},
	})
	// A new subscriber gets ret/b only, then the marker published after.
	s2 := dialSub(t, w.addr, "s2", "", true, 0)
	s2.subscribe(t, "ret/#")
	if p := s2.next(t); p.Topic != "ret/b" || !p.Retain {
		t.Fatalf("got %s retain %v, want the retained ret/b", p.Topic, p.Retain)
	}
	pub.publish(t, "ret/marker", "m", false)
	if p := s2.next(t); p.Topic != "ret/marker" {
		t.Fatalf("got %s %q, want the marker (ret/a was removed)", p.Topic, p.Payload)
	}
	if _, ok := w.srv.Retained("ret/a"); ok {
		t.Error("the broker still retains ret/a")
	}

	probeSteps(t, c, []struct{ cmd, want string }{
		{"retget|ret/+", "err:propolis: INVALID_ARGUMENT"},
		{"retget|ret/#", "err:propolis: INVALID_ARGUMENT"},
		{"retget|ret/\xff", "err:propolis: INVALID_ARGUMENT"},
		{"retget|", "err:propolis: INVALID_ARGUMENT"},
		{"retput|ret/#|x|0|0", "err:propolis: INVALID_ARGUMENT"},
		{"retput|ret/\xfe|x|0|0", "err:propolis: INVALID_ARGUMENT"},
		{"retput|ret/a|x|7|0", "err:propolis: INVALID_ARGUMENT"},
		{"retput|ret/a||0|0", "err:propolis: INVALID_ARGUMENT"}, // empty payload: use remove
		{"retput|ret/a|x|0|0|\xff", "err:propolis: INVALID_ARGUMENT"},
		{"retrm|ret/+", "err:propolis: INVALID_ARGUMENT"},
		{"retget|ret/a", "err:propolis: NOT_FOUND"},
	})
}

func ptr[T any](v T) *T { return &v }

// TestRetainedMessageEncoding: retained_get answers the message in the
// layout publish takes (abi.Message; abi's tests check the codec).
func TestRetainedMessageEncoding(t *testing.T) {
	m := broker.Message{Topic: "t/1", Payload: []byte("p"), QoS: 2, Retain: true, MessageExpiry: 60, PayloadFormat: 1,
		ContentType: "ct", ResponseTopic: "r/1", CorrelationData: []byte{1, 2},
		UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}}}
	got, err := abi.DecodeMessage(encodeMessage(&m))
	if err != nil {
		t.Fatal(err)
	}
	want := abi.Message{QoS: 2, Flags: abi.MessageRetain, PayloadFormat: 1, MessageExpiry: 60, Topic: "t/1", Payload: []byte("p"),
		UserProperties: []abi.UserProperty{{Key: "k", Value: "v"}}, ContentType: "ct", ResponseTopic: "r/1", CorrelationData: []byte{1, 2}}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("decoded %+v\nwant %+v", got, want)
	}
}

// connProbe sends one connattrs command and returns its answer.
func connProbe(t *testing.T, c *paho.Client, cmd string) string {
	t.Helper()
	r, err := c.Publish(ctx(t), &paho.Publish{Topic: "ca/x", QoS: 1, Payload: []byte(cmd)})
	if r == nil || r.Properties == nil {
		t.Fatalf("probe %q: no PUBACK reason (%+v, %v)", cmd, r, err)
	}
	return r.Properties.ReasonString
}

// TestConnectionAttributeServices: what authenticate stashes is there for
// the same connection's authorizations; a take-over by a new connection of
// the client id starts empty, and the old connection's end leaves the new
// one's alone; the disconnect event reads what the ended connection held
// and cannot write; the size limit is TOO_LARGE; start has no connection.
func TestConnectionAttributeServices(t *testing.T) {
	extDir := t.TempDir()
	installExtension(t, extDir, "connattrs", buildGuest(t, "testdata/guests", "connattrs"), 0,
		"services: [connection_attributes, session_attributes]\n")
	w := startWired(t, extDir, Options{})
	if !strings.Contains(w.logs.String(), "start: connection attribute: propolis: NOT_AVAILABLE") {
		t.Errorf("start did not get NOT_AVAILABLE:\n%s", w.logs)
	}

	alice := dialSub(t, w.addr, "c1", "alice", false, 300)
	for _, s := range []struct{ cmd, want string }{
		{"getall", "ok:before=0,user=alice"},
		{"get|user", "ok:alice"},
		{"get|nothing", "err:propolis: NOT_FOUND"},
		{"put|k|v", "ok"},
		{"getall", "ok:before=0,k=v,user=alice"},
		{"rm|k", "ok"},
		{"rm|k", "ok"},
		{"put||v", "err:propolis: INVALID_ARGUMENT"},
		{"put|" + strings.Repeat("k", 257) + "|v", "err:propolis: TOO_LARGE"},
		{"put|k|" + strings.Repeat("v", 10241), "err:propolis: TOO_LARGE"},
		{"getall", "ok:before=0,user=alice"},
	} {
		if got := connProbe(t, alice.Client, s.cmd); got != s.want {
			t.Errorf("alice %q: got %q, want %q", s.cmd, got, s.want)
		}
	}

	// authorize_subscribe reads the stash too.
	sa, err := alice.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ca/alice"}, {Topic: "ca/bob"}}})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	if sa == nil || len(sa.Reasons) != 2 || sa.Reasons[0] != 0 || sa.Reasons[1] != 0x87 {
		t.Errorf("alice's SUBACK: %+v, want ca/alice granted, ca/bob refused", sa)
	}

	// Take-over: bob's connection of c1 starts empty ("before=0").
	bob := dialSub(t, w.addr, "c1", "bob", false, 300)
	if got := connProbe(t, bob.Client, "getall"); got != "ok:before=0,user=bob" {
		t.Errorf("bob after the take-over: %q", got)
	}
	// Alice's connection ended: its disconnect event read alice's stash,
	// and could not write.
	poll.Until(t, "alice's disconnect event handled", func() bool {
		_, ok, _ := w.srv.Attribute("c1", "at_disconnect")
		return ok
	})
	v, _, _ := w.srv.Attribute("c1", "at_disconnect")
	if want := "before=0,user=alice;put=propolis: NOT_FOUND"; string(v) != want {
		t.Errorf("alice's disconnect event read %q, want %q", v, want)
	}
	// Alice's end left bob's attributes alone.
	if got := connProbe(t, bob.Client, "getall"); got != "ok:before=0,user=bob" {
		t.Errorf("bob after alice's end: %q", got)
	}
	_ = bob.Disconnect(&paho.Disconnect{ReasonCode: 0})
	poll.Until(t, "bob's disconnect event handled", func() bool {
		v, _, _ := w.srv.Attribute("c1", "at_disconnect")
		return strings.Contains(string(v), "user=bob")
	})

	// A connection full up: one more put is TOO_LARGE.
	fill := dialSub(t, w.addr, "c2", "fill", true, 0)
	if got := connProbe(t, fill.Client, "get|limit"); got != "ok:propolis: TOO_LARGE" {
		t.Errorf("fill's put beyond the limit: %q", got)
	}
	if got := connProbe(t, fill.Client, "put|x|"+strings.Repeat("v", 10000)); got != "err:propolis: TOO_LARGE" {
		t.Errorf("fill's put from authorize_publish: %q", got)
	}
}

// TestServiceBadArguments: pointers outside guest memory, buffers across
// its end, a message cut in half, QoS 7 and an unknown options bit are
// INVALID_ARGUMENT from every subscriptions, retained and
// connection_attributes function, never a trap, and change nothing (see
// testdata/wasm/ok/svc_bad_args.wat).
func TestServiceBadArguments(t *testing.T) {
	extDir := t.TempDir()
	installExtension(t, extDir, "bad-args", wasmFixture("ok/svc_bad_args"), 0,
		"services: [subscriptions, retained, connection_attributes]\n")
	w := startWired(t, extDir, Options{})
	c := dialSub(t, w.addr, "c1", "", true, 0)
	for range 3 { // the instance that answered keeps answering
		r, err := c.Publish(ctx(t), &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte("x")})
		if err != nil || r == nil || r.ReasonCode != 0 {
			code := -1
			if r != nil {
				code = int(r.ReasonCode)
			}
			t.Fatalf("PUBACK %#x (%v): call %d did not answer INVALID_ARGUMENT", code, err, code-0x80)
		}
	}
	if subs, err := w.srv.Subscriptions("c1"); err != nil || len(subs) != 0 {
		t.Errorf("c1's subscriptions: %+v, %v; want none", subs, err)
	}
	if m, ok := w.srv.Retained("a/b"); ok {
		t.Errorf("a/b retains %+v", m)
	}
	if st := statusOf(t, w.h, "bad-args"); st.Errors != 0 {
		t.Errorf("%d failed calls (traps), want 0", st.Errors)
	}
}
