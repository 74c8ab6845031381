package host

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The interceptors end to end (ABI 1.2): the real broker, the real host,
// the examples and test guests built from this repository, MQTT 3.1.1 and
// 5 clients over loopback. intercept_test.go tests the host's side call by
// call, broker/intercept_test.go the broker's with a Go interceptor.

// inbox collects the messages an MQTT 5 client receives.
type inbox struct {
	mu  sync.Mutex
	got []*paho.Publish
}

func (b *inbox) add(p paho.PublishReceived) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, p.Packet)
}

// wait returns the n-th message (from 0), polling until it arrived.
func (b *inbox) wait(t *testing.T, n int) *paho.Publish {
	t.Helper()
	var p *paho.Publish
	poll.Until(t, "message delivered", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.got) > n {
			p = b.got[n]
			return true
		}
		return false
	})
	return p
}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

// userProperty returns the value of the user property key, "" if none.
func userProperty(p *paho.Publish, key string) string {
	if p.Properties == nil {
		return ""
	}
	return p.Properties.User.Get(key)
}

// subscribeV5 connects an MQTT 5 client and subscribes it to filter.
func subscribeV5(t *testing.T, addr, id, filter string, qos byte) *inbox {
	t.Helper()
	in := &inbox{}
	c, _, err := v5(t, addr, id, "", "", in.add)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
	return in
}

// v3Client connects an MQTT 3.1.1 client.
func v3Client(t *testing.T, addr, id string) paho3.Client {
	t.Helper()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(poll.Timeout)
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
		t.Fatalf("3.1.1 client %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

const rewriterConfig = `config:
  rules:
    - from: legacy/+/temp
      to: sensors/{1}/temperature
  original_topic_property: original-topic
`

// TestMQTTInterceptExamples: topic-rewriter (priority 20) then
// payload-enricher (priority 10) on a 3.1.1 device's plain-text reading:
// MQTT 5 and 3.1.1 subscribers of the new tree get it rewritten, wrapped in
// JSON and stamped, the second interceptor having seen the first's topic.
func TestMQTTInterceptExamples(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, ext, "topic-rewriter", example(t, "topic-rewriter"), 20, rewriterConfig)
	installExtension(t, ext, "payload-enricher", example(t, "payload-enricher"), 10,
		"config:\n  topics: [\"sensors/#\"]\n  time_property: received-at\n  client_property: client-id\n")
	addr, _ := startBroker(t, ext)

	in5 := subscribeV5(t, addr, "sub5", "sensors/#", 1)
	got3 := make(chan paho3.Message, 4)
	sub3 := v3Client(t, addr, "sub3")
	if tok := sub3.Subscribe("sensors/#", 1, func(_ paho3.Client, m paho3.Message) { got3 <- m }); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	dev := v3Client(t, addr, "dev-7")
	if tok := dev.Publish("legacy/dev-7/temp", 1, false, "warm"); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
		t.Fatalf("3.1.1 publish: %v", tok.Error())
	}

	p := in5.wait(t, 0)
	if p.Topic != "sensors/dev-7/temperature" {
		t.Fatalf("MQTT 5 subscriber got topic %q, want the rewritten sensors/dev-7/temperature", p.Topic)
	}
	var body struct {
		Client string `json:"client"`
		Text   string `json:"text"`
	}
	if err := json.Unmarshal(p.Payload, &body); err != nil || body.Text != "warm" || body.Client != "dev-7" {
		t.Fatalf("payload %q: want the text wrapped in JSON with the client id (%v)", p.Payload, err)
	}
	if p.Properties == nil || p.Properties.ContentType != "application/json" || p.Properties.PayloadFormat == nil || *p.Properties.PayloadFormat != 1 {
		t.Fatalf("properties %+v: want content type application/json, payload format 1", p.Properties)
	}
	if got := userProperty(p, "client-id"); got != "dev-7" {
		t.Fatalf("client-id property %q, want dev-7", got)
	}
	if userProperty(p, "received-at") == "" {
		t.Fatalf("no received-at property: %+v", p.Properties.User)
	}
	if got := userProperty(p, "original-topic"); got != "legacy/dev-7/temp" {
		t.Fatalf("original-topic property %q, want legacy/dev-7/temp", got)
	}
	select {
	case m := <-got3:
		if m.Topic() != "sensors/dev-7/temperature" || !strings.Contains(string(m.Payload()), `"warm"`) {
			t.Fatalf("3.1.1 subscriber got %s %q", m.Topic(), m.Payload())
		}
	case <-time.After(poll.Timeout):
		t.Fatal("3.1.1 subscriber got nothing")
	}
}

// TestMQTTInterceptRewriteCannotBypassPermissions: the perms guest lets c1
// publish on telemetry/c1/# only; a rule rewriting telemetry/c1/leak to a
// topic c1 may not publish to is refused by the second authorization, for
// MQTT 5 (PUBACK 0x87) and 3.1.1 (disconnected), and nothing is delivered.
func TestMQTTInterceptRewriteCannotBypassPermissions(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "perms", buildGuest(t, "testdata/guests", "perms"), 0, "")
	installExtension(t, ext, "topic-rewriter", example(t, "topic-rewriter"), 20,
		"config:\n  rules:\n    - from: telemetry/+/leak\n      to: commands/{1}/x\n")
	addr, _ := startBroker(t, ext)

	in := &inbox{}
	c, _, err := v5(t, addr, "c1", "", "", in.add)
	if err != nil {
		t.Fatal(err)
	}
	// c1 may subscribe to commands/c1/#, where the rewrite would land.
	if ack, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "commands/c1/#", QoS: 1}}}); err != nil || ack.Reasons[0] != 1 {
		t.Fatalf("subscribe: %+v %v", ack, err)
	}
	// Not rewritten: allowed (the control).
	if resp, err := c.Publish(ctx(t), &paho.Publish{Topic: "telemetry/c1/ok", QoS: 1, Payload: []byte("fine")}); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish on its own telemetry: %+v %v", resp, err)
	}
	// Allowed as sent, rewritten to commands/c1/x, which c1 may not publish to.
	resp, _ := c.Publish(ctx(t), &paho.Publish{Topic: "telemetry/c1/leak", QoS: 1, Payload: []byte("leak")})
	if resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("rewritten publish: %+v, want PUBACK 0x87 (the rewritten topic is not permitted)", resp)
	}
	if resp, err := c.Publish(ctx(t), &paho.Publish{Topic: "telemetry/c1/ok", QoS: 1, Payload: []byte("after")}); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish after the refusal: %+v %v (the publisher stays connected)", resp, err)
	}

	// MQTT 3.1.1: a refused QoS 1 PUBLISH disconnects the publisher.
	lost := make(chan struct{}, 1)
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("c3").SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(poll.Timeout).
		SetConnectionLostHandler(func(paho3.Client, error) { lost <- struct{}{} })
	c3 := paho3.NewClient(o)
	if tok := c3.Connect(); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c3.Disconnect(0)
	c3.Publish("telemetry/c3/leak", 1, false, "leak")
	select {
	case <-lost:
	case <-time.After(poll.Timeout):
		t.Fatal("3.1.1 publisher of a rewrite to a forbidden topic not disconnected")
	}
	if n := in.count(); n != 0 {
		t.Fatalf("%d deliveries on commands/c1/#, want none: a refused rewrite was delivered (%s)", n, in.got[0].Payload)
	}
}

// TestMQTTInterceptConnectedClientsAfterHotReload: clients connected before
// an interceptor extension is dropped in are intercepted from their next
// PUBLISH on, without reconnecting.
func TestMQTTInterceptConnectedClientsAfterHotReload(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	addr, _ := startWatchedBroker(t, ext)
	in := subscribeV5(t, addr, "sub", "t/#", 0)
	pub, _, err := v5(t, addr, "pub", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx(t), &paho.Publish{Topic: "t/1", QoS: 1, Payload: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if p := in.wait(t, 0); userProperty(p, "probe") != "" {
		t.Fatalf("intercepted before the interceptor came: %+v", p.Properties)
	}
	dropIn(t, ext, "probe", buildGuest(t, "testdata/guests", "interceptprobe"),
		"id: probe\nversion: 1.0.0\npriority: 5\nmodule: ext.wasm\nconfig:\n  mode: add-property\n")
	n := 1
	poll.Until(t, "the connected publisher's next PUBLISH intercepted", func() bool {
		if _, err := pub.Publish(ctx(t), &paho.Publish{Topic: "t/1", QoS: 1, Payload: []byte("after")}); err != nil {
			t.Fatal(err)
		}
		p := in.wait(t, n)
		n++
		return userProperty(p, "probe") == "t/1"
	})
}

// TestMQTTInterceptFailuresKeepPacketsAndClients: an interceptor that
// traps, overruns its deadline or makes an invalid change leaves the
// PUBLISH as the client sent it (delivered, acknowledged with success) and
// the client connected, below the crash-loop limit.
func TestMQTTInterceptFailuresKeepPacketsAndClients(t *testing.T) {
	for _, mode := range []string{"trap", "spin", "invalid-topic"} {
		t.Run(mode, func(t *testing.T) {
			ext := t.TempDir()
			installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
			installExtension(t, ext, "probe", buildGuest(t, "testdata/guests", "interceptprobe"), 5,
				"limits:\n  call_deadline: 50ms\nconfig:\n  mode: "+mode+"\n")
			addr, h := startBroker(t, ext)
			in := subscribeV5(t, addr, "sub", "t/#", 1)
			pub, _, err := v5(t, addr, "pub", "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			const n = 3 // below the crash-loop limit
			for i := 0; i < n; i++ {
				resp, err := pub.Publish(ctx(t), &paho.Publish{Topic: "t/x", QoS: 1, Payload: []byte("as sent"),
					Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}})
				if err != nil || resp.ReasonCode != 0 {
					t.Fatalf("publish %d: %+v %v, want success (an interceptor never fails closed)", i, resp, err)
				}
				p := in.wait(t, i)
				if p.Topic != "t/x" || string(p.Payload) != "as sent" || userProperty(p, "k") != "v" || userProperty(p, "probe") != "" {
					t.Fatalf("delivery %d changed by a failed interceptor: %s %q %+v", i, p.Topic, p.Payload, p.Properties)
				}
			}
			if st := statusOf(t, h, "probe"); st.Errors < n {
				t.Fatalf("probe status %+v: want its %d failures counted", st, n)
			}
		})
	}
}

// startBrokerIn runs a broker on dataDir (so that a test can restart it),
// with the host's services wired, and returns it with its address.
func startBrokerIn(t *testing.T, extDir, dataDir string) (*broker.Server, string, *Host) {
	t.Helper()
	h, _ := newTestHost(t, extDir)
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = dataDir
	srv, err := broker.New(broker.Options{Config: cfg, Logger: h.log, Extensions: broker.Extensions{Authenticator: h, Events: h, Interceptors: h}})
	if err != nil {
		t.Fatal(err)
	}
	h.UseBroker(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, srv.Addr("tcp"), h
}

// TestMQTTInterceptNestedInService: an extension with one instance kicks a
// client from its tick (client_disconnect) and intercepts DISCONNECT: the
// kick's DISCONNECT is intercepted on the tick's goroutine, where no
// instance is free. That nested call gives up at once, the DISCONNECT goes
// out unintercepted, and neither the tick nor the extension fails.
func TestMQTTInterceptNestedInService(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, ext, "kicker", buildGuest(t, "testdata/guests", "kicker"), 10,
		"services: [clients]\ntick: 100ms\nlimits:\n  pool_size: 1\n  max_pool_size: 1\n")
	_, addr, h := startBrokerIn(t, ext, filepath.Join(t.TempDir(), "data"))
	const kicks = 12 // beyond the crash-loop limit, were the nested calls failures
	for i := 0; i < kicks; i++ {
		gone := make(chan *paho.Disconnect, 1)
		conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{ClientID: "victim", Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { gone <- d }})
		if _, err := c.Connect(ctx(t), &paho.Connect{ClientID: "victim", CleanStart: true, KeepAlive: 30}); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-gone:
			if d.ReasonCode != 0x98 {
				t.Fatalf("kick %d: DISCONNECT %#x, want 0x98", i, d.ReasonCode)
			}
		case <-time.After(poll.Timeout):
			t.Fatalf("kick %d: the victim was not disconnected", i)
		}
		conn.Close()
	}
	// Each nested call is counted as an error (it did not run), but none
	// is a failure towards the crash-loop stop, and no tick overran.
	if st := statusOf(t, h, "kicker"); st.State != StateRunning {
		t.Fatalf("kicker %+v: want running (a nested interceptor call is not the extension's fault)", st)
	}
	if logs := testLogs(t, h).String(); strings.Contains(logs, "deadline") {
		t.Fatalf("a call overran its deadline:\n%s", logs)
	}
}

// TestMQTTInterceptRetainedAndQueuedAcrossRestart: the retained message
// and the message queued for an offline persistent session are stored as
// the inbound interceptors produced them, and come back so after a
// restart of the broker.
func TestMQTTInterceptRetainedAndQueuedAcrossRestart(t *testing.T) {
	ext, data := t.TempDir(), filepath.Join(t.TempDir(), "data")
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, ext, "topic-rewriter", example(t, "topic-rewriter"), 20, rewriterConfig)
	installExtension(t, ext, "payload-enricher", example(t, "payload-enricher"), 10, "config:\n  topics: [\"sensors/#\"]\n")
	srv, addr, _ := startBrokerIn(t, ext, data)

	// A persistent MQTT 5 session subscribed to the new tree, then offline.
	persistent := func(addr string, in *inbox) *paho.Client {
		conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		cfg := paho.ClientConfig{ClientID: "keeper", Conn: conn}
		if in != nil {
			cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) { in.add(p); return true, nil }}
		}
		c := paho.NewClient(cfg)
		expiry := uint32(3600)
		if _, err := c.Connect(ctx(t), &paho.Connect{ClientID: "keeper", KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	keeper := persistent(addr, nil)
	if _, err := keeper.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sensors/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := keeper.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	dev := v3Client(t, addr, "dev-9")
	for _, m := range []struct {
		topic, text string
		retain      bool
	}{{"legacy/dev-9/temp", "kept", true}, {"legacy/dev-9/temp", "queued", false}} {
		if tok := dev.Publish(m.topic, 1, m.retain, m.text); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", m.text, tok.Error())
		}
	}
	dev.Disconnect(0)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	_, addr, _ = startBrokerIn(t, ext, data)
	check := func(who string, p *paho.Publish, text string) {
		t.Helper()
		if p.Topic != "sensors/dev-9/temperature" || !strings.Contains(string(p.Payload), `"text":"`+text+`"`) ||
			userProperty(p, "client-id") != "dev-9" || p.Properties.ContentType != "application/json" {
			t.Fatalf("%s got %s %q %+v: want the rewritten, wrapped, stamped message", who, p.Topic, p.Payload, p.Properties)
		}
	}
	in := &inbox{}
	persistent(addr, in)
	got := map[string]*paho.Publish{}
	for i := 0; i < 2; i++ {
		p := in.wait(t, i)
		var body struct{ Text string }
		_ = json.Unmarshal(p.Payload, &body)
		got[body.Text] = p
	}
	for _, text := range []string{"kept", "queued"} {
		p, ok := got[text]
		if !ok {
			t.Fatalf("the persistent session did not get %q after the restart: %v", text, got)
		}
		check("the persistent session", p, text)
	}
	fresh := subscribeV5(t, addr, "fresh", "sensors/#", 1)
	p := fresh.wait(t, 0)
	if !p.Retain {
		t.Fatalf("a new subscriber's first message is not the retained one: %+v", p)
	}
	check("a new subscriber (retained)", p, "kept")
}

// TestMQTTInterceptOutboundClients: an outbound interceptor narrowed to
// the clients app-* (outbound_clients) stamps the delivery to app-1 and
// leaves the one to dev-1, of the same PUBLISH, as published.
func TestMQTTInterceptOutboundClients(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, ext, "probe", buildGuest(t, "testdata/guests", "interceptprobe"), 5,
		"abi: \"1.2\"\nconfig:\n  mode: add-property\n  tag: out\n  inbound_filters: [\"never/#\"]\n  outbound_clients: [\"app-*\"]\n")
	addr, _ := startBroker(t, ext)
	app := subscribeV5(t, addr, "app-1", "t/#", 1)
	dev := subscribeV5(t, addr, "dev-1", "t/#", 1)
	pub, _, err := v5(t, addr, "pub", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx(t), &paho.Publish{Topic: "t/1", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if p := app.wait(t, 0); userProperty(p, "out") != "t/1" {
		t.Errorf("app-1 got %+v, want the property out=t/1 of its outbound interceptor", p.Properties)
	}
	if p := dev.wait(t, 0); string(p.Payload) != "x" || userProperty(p, "out") != "" {
		t.Errorf("dev-1 got %q %+v, want the message as published", p.Payload, p.Properties)
	}
}
