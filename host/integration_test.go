package host

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// These tests run the real broker with the real host on loopback, with
// modules built from this repository (examples/, testdata/guests/, and the
// WAT fixtures), and talk to it with Eclipse Paho clients.

// example builds one of examples/ and returns its .wasm.
func example(t testing.TB, name string) string { return buildGuest(t, "examples", name) }

// startBroker runs a broker whose extensions come from extDir.
func startBroker(t testing.TB, extDir string) (string, *Host) {
	t.Helper()
	srv, h := startBrokerServer(t, extDir)
	return srv.Addr("tcp"), h
}

// startBrokerServer is startBroker, returning the broker.
func startBrokerServer(t testing.TB, extDir string) (*broker.Server, *Host) {
	t.Helper()
	h, _ := newTestHost(t, extDir)
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	srv, err := broker.New(broker.Options{Config: cfg, Logger: h.log, Extensions: broker.Extensions{Authenticator: h, Events: h, Interceptors: h}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, h
}

// v5 connects an MQTT 5 client; onPub receives its messages.
func v5(t testing.TB, addr, id, user, pass string, onPub func(paho.PublishReceived)) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cfg := paho.ClientConfig{ClientID: id, Conn: conn}
	if onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) { onPub(p); return true, nil }}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte(pass), true
	}
	ack, err := c.Connect(ctx, cp)
	return c, ack, err
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	t.Cleanup(cancel)
	return c
}

// v3ReturnCode connects an MQTT 3.1.1 client and returns the CONNACK code.
func v3ReturnCode(addr, id, user, pass string) byte {
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectTimeout(poll.Timeout)
	c := paho3.NewClient(o)
	tok := c.Connect()
	tok.WaitTimeout(poll.Timeout)
	defer c.Disconnect(0)
	return tok.(*paho3.ConnectToken).ReturnCode()
}

func TestMQTTNoExtensionRefuses(t *testing.T) {
	addr, _ := startBroker(t, t.TempDir())
	if _, ack, err := v5(t, addr, "c5", "", "", nil); err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("v5: %+v %v, want 0x87", ack, err)
	}
	if rc := v3ReturnCode(addr, "c3", "", ""); rc != 0x05 {
		t.Fatalf("v3 return code %#x, want 0x05", rc)
	}
}

func TestMQTTAllowAll(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	addr, _ := startBroker(t, ext)
	got := make(chan string, 1)
	sub, _, err := v5(t, addr, "sub", "", "", func(p paho.PublishReceived) { got <- string(p.Packet.Payload) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "a/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if rc := v3ReturnCode(addr, "c3", "", ""); rc != 0 {
		t.Fatalf("v3 refused: %#x", rc)
	}
	pub, _, err := v5(t, addr, "pub", "anyone", "anything", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx(t), &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("message not delivered")
	}
}

func TestMQTTWATFixture(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	addr, _ := startBroker(t, ext)

	if _, ack, err := v5(t, addr, "bad", "wat", "wrong", nil); err == nil || ack.ReasonCode != 0x86 || ack.Properties.ReasonString != "bad user name or password" {
		t.Fatalf("wrong password: %+v %v", ack, err)
	}
	if rc := v3ReturnCode(addr, "bad3", "wat", "wrong"); rc != 0x04 {
		t.Fatalf("v3 wrong password: %#x, want 0x04", rc)
	}
	disc := make(chan byte, 1)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{ClientID: "good", Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { disc <- d.ReasonCode }})
	ack, err := c.Connect(ctx(t), &paho.Connect{ClientID: "good", CleanStart: true, Username: "wat", UsernameFlag: true, Password: []byte("secret"), PasswordFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ack.Properties.User) != 1 || ack.Properties.User[0].Key != "via" || ack.Properties.User[0].Value != "wat" {
		t.Fatalf("CONNACK user properties %+v", ack.Properties.User)
	}
	if ack.Properties.SessionExpiryInterval == nil || *ack.Properties.SessionExpiryInterval != 120 {
		t.Fatalf("CONNACK session expiry %v, want 120", ack.Properties.SessionExpiryInterval)
	}
	resp, _ := c.Publish(ctx(t), &paho.Publish{Topic: "readonly/x", QoS: 1, Payload: []byte("x")})
	if resp == nil || resp.ReasonCode != 0x87 || resp.Properties.ReasonString != "topic is read-only" {
		t.Fatalf("readonly publish: %+v", resp)
	}
	if resp, err := c.Publish(ctx(t), &paho.Publish{Topic: "free/x", QoS: 1, Payload: []byte("x")}); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("free publish: %+v %v", resp, err)
	}
	_, _ = c.Publish(ctx(t), &paho.Publish{Topic: "kick", QoS: 0, Payload: []byte("x")})
	select {
	case code := <-disc:
		if code != 0x98 {
			t.Fatalf("disconnect %#x, want 0x98", code)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("not disconnected")
	}
}

// TestMQTTChainNext: banlist (priority 1000) refuses mallory and passes the
// rest on with NEXT to allow-all (priority 0).
func TestMQTTChainNext(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "banlist", example(t, "banlist"), 1000, "config:\n  users: [mallory]\n")
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	addr, _ := startBroker(t, ext)
	if _, _, err := v5(t, addr, "a", "alice", "x", nil); err != nil {
		t.Fatalf("alice refused: %v", err)
	}
	if _, ack, err := v5(t, addr, "m", "mallory", "x", nil); err == nil || ack.ReasonCode != 0x8A {
		t.Fatalf("mallory: %+v %v, want 0x8A", ack, err)
	}
	if rc := v3ReturnCode(addr, "m3", "mallory", "x"); rc != 0x05 {
		t.Fatalf("v3 mallory: %#x, want 0x05", rc)
	}
}

// TestMQTTAuthenticatedBy: the broker reports the id of the extension
// whose decision accepted each client (AuthResult.DecidedBy): banlist
// (priority 1000) passes alice on to allow-all; wat-auth (priority 2000)
// accepts its own user. It is kept while the session is offline.
func TestMQTTAuthenticatedBy(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "banlist", example(t, "banlist"), 1000, "config:\n  users: [mallory]\n")
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	srv, _ := startBrokerServer(t, ext)
	addr := srv.Addr("tcp")
	if _, _, err := v5(t, addr, "a", "alice", "x", nil); err != nil {
		t.Fatalf("alice refused: %v", err)
	}
	carol := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("c3").SetProtocolVersion(4).
		SetUsername("carol").SetPassword("x").SetAutoReconnect(false).SetConnectTimeout(poll.Timeout))
	if tok := carol.Connect(); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
		t.Fatalf("carol (3.1.1) refused: %v", tok.Error())
	}
	defer carol.Disconnect(0)
	if c, ok := srv.Client("a"); !ok || c.AuthenticatedBy != "allow-all" {
		t.Errorf("alice: %+v, %v; want authenticated by allow-all", c, ok)
	}
	if c, ok := srv.Client("c3"); !ok || c.AuthenticatedBy != "allow-all" || c.ProtocolVersion != 4 {
		t.Errorf("carol (3.1.1): %+v, %v; want authenticated by allow-all", c, ok)
	}

	ext2 := t.TempDir()
	installExtension(t, ext2, "wat-auth", wasmFixture("ok/wat_auth"), 2000, "")
	installExtension(t, ext2, "allow-all", example(t, "allow-all"), 0, "")
	srv2, _ := startBrokerServer(t, ext2)
	conn, err := net.Dial("tcp", srv2.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{ClientID: "w", Conn: conn})
	if _, err := c.Connect(ctx(t), &paho.Connect{ClientID: "w", CleanStart: true, Username: "wat", UsernameFlag: true,
		Password: []byte("secret"), PasswordFlag: true}); err != nil {
		t.Fatal(err)
	}
	if info, ok := srv2.Client("w"); !ok || info.AuthenticatedBy != "wat-auth" {
		t.Errorf("wat: %+v, %v; want authenticated by wat-auth", info, ok)
	}
	// wat-auth's session outlives its connection (120 s): offline, it
	// still names who accepted it.
	_ = c.Disconnect(&paho.Disconnect{})
	poll.Until(t, "w offline", func() bool { info, ok := srv2.Client("w"); return ok && !info.Connected })
	if info, _ := srv2.Client("w"); info.AuthenticatedBy != "wat-auth" {
		t.Errorf("w offline: authenticated by %q, want wat-auth", info.AuthenticatedBy)
	}
	page, err := srv2.ListClients(broker.ClientQuery{})
	if err != nil || len(page.Clients) != 1 || page.Clients[0].AuthenticatedBy != "wat-auth" {
		t.Errorf("ListClients: %+v, %v", page, err)
	}
}

// TestMQTTMisbehavingExtensionIsSurvived: an extension that fails in
// authorize_publish denies (fail closed) while other clients keep being
// served; the crash-loop limit stops it, and its publishes stay denied
// until the operator disables it.
func TestMQTTMisbehavingExtensionIsSurvived(t *testing.T) {
	for _, tc := range []struct{ name, fixture, limits string }{
		{"trap", "error/trap", ""},
		{"spin", "error/spin", "limits:\n  call_deadline: 50ms\n"},
		{"memory hog", "error/memory_hog", "limits:\n  memory: 2MiB\n  call_deadline: 5s\n"},
		{"garbage", "error/garbage", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext := t.TempDir()
			installExtension(t, ext, "allow-all", example(t, "allow-all"), 10, "")
			installExtension(t, ext, "bad", wasmFixture(tc.fixture), 0, tc.limits)
			addr, h := startWatchedBroker(t, ext)
			pub, _, err := v5(t, addr, "pub", "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < crashLoopFailures; i++ {
				resp, _ := pub.Publish(ctx(t), &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")})
				if resp == nil || resp.ReasonCode != 0x80 {
					t.Fatalf("publish %d: %+v, want PUBACK 0x80 (fail closed)", i, resp)
				}
				if _, _, err := v5(t, addr, "other", "", "", nil); err != nil {
					t.Fatalf("another client refused while the extension misbehaves: %v", err)
				}
			}
			if st := statusOf(t, h, "bad"); st.State != StateFailed || !strings.Contains(st.Reason, "crash loop") {
				t.Fatalf("bad extension %+v, want failed (crash loop)", st)
			}
			if resp, _ := pub.Publish(ctx(t), &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")}); resp == nil || resp.ReasonCode != 0x80 {
				t.Fatalf("publish after the crash-loop stop: %+v, want still denied", resp)
			}
			if err := os.WriteFile(filepath.Join(ext, "bad", DisabledFile), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			poll.Until(t, "publishes allowed once the operator disabled it", func() bool {
				resp, err := pub.Publish(ctx(t), &paho.Publish{Topic: "t", QoS: 1, Payload: []byte("x")})
				return err == nil && resp.ReasonCode == 0
			})
		})
	}
}

// TestMQTTTopicPermissions: default permissions set at CONNECT are enforced
// by the host for QoS, retain, activity and shared subscriptions.
func TestMQTTTopicPermissions(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "perms", buildGuest(t, "testdata/guests", "perms"), 0, "")
	addr, _ := startBroker(t, ext)
	c, _, err := v5(t, addr, "c1", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		p      paho.Publish
		reason byte
	}{
		{"own telemetry qos1", paho.Publish{Topic: "telemetry/c1/t", QoS: 1}, 0},
		{"qos 2 not allowed", paho.Publish{Topic: "telemetry/c1/t", QoS: 2}, 0x87},
		{"retain not allowed", paho.Publish{Topic: "telemetry/c1/t", QoS: 1, Retain: true}, 0x87},
		{"other client's telemetry", paho.Publish{Topic: "telemetry/c2/t", QoS: 1}, 0x87},
		{"publish on a subscribe-only topic", paho.Publish{Topic: "commands/c1/x", QoS: 1}, 0x87},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Payload = []byte("x")
			resp, err := c.Publish(ctx(t), &tc.p)
			if resp == nil || resp.ReasonCode != tc.reason {
				t.Fatalf("response %+v (err %v), want reason %#x", resp, err, tc.reason)
			}
		})
	}
	ack, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "commands/c1/#", QoS: 1}, {Topic: "commands/#", QoS: 1}, {Topic: "telemetry/c1/#", QoS: 0},
		{Topic: "$share/g/jobs/a", QoS: 0}, {Topic: "jobs/a", QoS: 0},
	}})
	if err != nil && ack == nil {
		t.Fatal(err)
	}
	want := []byte{1, 0x87, 0x87, 0, 0x87}
	for i, w := range want {
		if ack.Reasons[i] != w {
			t.Fatalf("SUBACK %x, want %x", ack.Reasons, want)
		}
	}
}

// TestMQTTTopicACLExample: the topic-acl example confines each client to
// devices/<client id>/.
func TestMQTTTopicACLExample(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "topic-acl", example(t, "topic-acl"), 0, "config:\n  prefix: devices\n")
	addr, _ := startBroker(t, ext)
	c, _, err := v5(t, addr, "c1", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Publish(ctx(t), &paho.Publish{Topic: "devices/c1/temp", QoS: 1, Payload: []byte("1")}); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("own topic: %+v %v", resp, err)
	}
	if resp, _ := c.Publish(ctx(t), &paho.Publish{Topic: "devices/c2/temp", QoS: 1, Payload: []byte("1")}); resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("other client's topic: %+v", resp)
	}
	ack, _ := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/c1/#", QoS: 1}, {Topic: "devices/#", QoS: 1}}})
	if ack == nil || ack.Reasons[0] != 1 || ack.Reasons[1] != 0x87 {
		t.Fatalf("SUBACK %+v", ack)
	}
}

// TestMQTTTopicLintExample: the topic-lint example refuses a topic that
// breaks its convention with 0x90 and its reason, passes the others on,
// and its verdicts are kept per connection (ABI 1.4): publishing the same
// topics again makes no call, so the calls counted stay where they were
// while the cache's hits grow.
func TestMQTTTopicLintExample(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, ext, "topic-lint", example(t, "topic-lint"), 50, "abi: \"1.4\"\nconfig:\n  roots: [devices]\n")
	addr, h := startBroker(t, ext)
	c, _, err := v5(t, addr, "c1", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(topic string) (byte, string) {
		t.Helper()
		r, err := c.Publish(ctx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("1")})
		if r == nil {
			t.Fatalf("publish %s: no PUBACK: %v", topic, err)
		}
		reason := ""
		if r.Properties != nil {
			reason = r.Properties.ReasonString
		}
		return r.ReasonCode, reason
	}
	calls := func() int64 { return statusOf(t, h, "topic-lint").Calls }
	for round := 0; round < 3; round++ {
		if code, reason := publish("devices/c1/temp"); code != 0 {
			t.Fatalf("round %d, a valid topic: %#x %q", round, code, reason)
		}
		if code, reason := publish("devices/c1/Temp"); code != 0x90 || reason != `topic-lint: level 3 "Temp": character 'T' is not allowed (a-z 0-9 - _ .)` {
			t.Fatalf("round %d, upper case: %#x %q", round, code, reason)
		}
		if code, reason := publish("ops/x"); code != 0x90 || reason != `topic-lint: first level "ops" is not one of devices` {
			t.Fatalf("round %d, another root: %#x %q", round, code, reason)
		}
		if round == 0 && calls() != 3 {
			t.Fatalf("calls after the first round: %d, want 3", calls())
		}
	}
	if st := statusOf(t, h, "topic-lint"); st.Calls != 3 || st.AuthorizeCacheHits != 6 {
		t.Fatalf("calls %d, kept verdicts given %d; want 3 and 6", st.Calls, st.AuthorizeCacheHits)
	}
	// Another connection is asked anew.
	c2, _, err := v5(t, addr, "c2", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := c2.Publish(ctx(t), &paho.Publish{Topic: "devices/c2/Temp", QoS: 1, Payload: []byte("1")}); r == nil || r.ReasonCode != 0x90 {
		t.Fatalf("c2: %+v", r)
	}
	if n := calls(); n != 4 {
		t.Fatalf("calls after c2's publish: %d, want 4", n)
	}
	// SUBSCRIBE filters, by the same rules with wildcards: each kept too.
	subscribe := func(filter string) (byte, string) {
		t.Helper()
		r, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if r == nil || len(r.Reasons) != 1 {
			t.Fatalf("subscribe %s: %+v, %v", filter, r, err)
		}
		reason := ""
		if r.Properties != nil {
			reason = r.Properties.ReasonString
		}
		return r.Reasons[0], reason
	}
	for round := 0; round < 2; round++ {
		if code, reason := subscribe("devices/+/temp"); code != 1 {
			t.Fatalf("round %d, a valid filter: %#x %q", round, code, reason)
		}
		if code, reason := subscribe("ops/#"); code != 0x8F || reason != `topic-lint: first level "ops" is not one of devices` {
			t.Fatalf("round %d, a filter under another root: %#x %q", round, code, reason)
		}
	}
	if st := statusOf(t, h, "topic-lint"); st.Calls != 6 || st.AuthorizeCacheHits != 8 {
		t.Fatalf("after the subscribes: calls %d, kept verdicts given %d; want 6 and 8", st.Calls, st.AuthorizeCacheHits)
	}
}

// TestAllowAllWarnsOnce: allow-all's start callback runs on each of the
// pool's instances, but its not-for-production warning is logged once, by
// instance 0 (the START record's instance index, ABI 1.1).
func TestAllowAllWarnsOnce(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "allow-all", example(t, "allow-all"), 0, "limits:\n  pool_size: 4\n  call_deadline: 5s\n")
	addr, h := startBroker(t, ext)
	if code := connectCode(t, addr, "c", ""); code != 0 {
		t.Fatalf("allow-all refused a client: %#x", code)
	}
	logs := testLogs(t, h).String()
	if n := strings.Count(logs, "DO NOT USE IT IN PRODUCTION"); n != 1 {
		t.Fatalf("the warning appears %d times, want 1:\n%s", n, logs)
	}
	if strings.Contains(logs, "declared other callbacks") {
		t.Fatalf("instances disagree on their declarations:\n%s", logs)
	}
}
