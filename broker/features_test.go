package broker_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

func TestWillIsAuthorizedAndSent(t *testing.T) {
	rules := &brokertest.Rules{DenyPrefix: map[string]broker.Verdict{"forbidden/": {Decision: broker.Deny}}}
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules})
	r := newRecv()
	watcher := v3Connect(t, v3Options(addr, "watcher"))
	wait(t, "subscribe", watcher.Subscribe("wills/#", 1, r.handler))

	// A will on a forbidden topic refuses the CONNECT.
	tok := newPahoClient(v3Options(addr, "bad-will").SetWill("forbidden/x", "bye", 1, false)).Connect()
	tok.WaitTimeout(poll.Timeout)
	if rc := tok.(*paho3.ConnectToken).ReturnCode(); tok.Error() == nil || rc != 0x05 {
		t.Fatalf("CONNECT with a forbidden will topic: return code %#x, want 0x05", rc)
	}

	// An allowed will is published when the connection is lost.
	c, err := brokertest.DialWill(addr, "dying", "wills/dying", "gone")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Drop()
	m := r.next(t, poll.Timeout)
	if m.Topic() != "wills/dying" || string(m.Payload()) != "gone" {
		t.Fatalf("will = %s %q", m.Topic(), m.Payload())
	}
}

func TestSharedSubscriptionSplitsMessages(t *testing.T) {
	_, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	a, b := newRecv(), newRecv()
	ca := v3Connect(t, v3Options(addr, "worker-a"))
	cb := v3Connect(t, v3Options(addr, "worker-b"))
	wait(t, "subscribe a", ca.Subscribe("$share/workers/jobs", 1, a.handler))
	wait(t, "subscribe b", cb.Subscribe("$share/workers/jobs", 1, b.handler))
	// A fence on a plain topic both workers subscribe to, published after
	// the jobs: a client receives messages in the order they were routed to
	// it, so once both workers have the fence every job has arrived, and no
	// duplicate can still come.
	fa, fb := newRecv(), newRecv()
	wait(t, "subscribe a to the fence", ca.Subscribe("fence", 1, fa.handler))
	wait(t, "subscribe b to the fence", cb.Subscribe("fence", 1, fb.handler))
	pub := v3Connect(t, v3Options(addr, "boss"))
	const n = 20
	for i := 0; i < n; i++ {
		wait(t, "publish", pub.Publish("jobs", 1, false, []byte{byte(i)}))
	}
	wait(t, "publish the fence", pub.Publish("fence", 1, false, []byte("fence")))
	fa.next(t, poll.Timeout)
	fb.next(t, poll.Timeout)
	if len(a.ch)+len(b.ch) != n || len(a.ch) == 0 || len(b.ch) == 0 {
		t.Fatalf("delivered %d+%d, want %d in all, shared between both", len(a.ch), len(b.ch), n)
	}
}

func TestMessageExpiryDropsQueuedMessages(t *testing.T) {
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	sub, _ := connectV5Session(t, addr, "offline", 3600, nil)
	if _, err := sub.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ttl/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = sub.Disconnect(&paho.Disconnect{})

	pub := v5Dial(t, addr, paho.ClientConfig{ClientID: "pub"})
	if _, err := pub.Connect(ctx5(t), &paho.Connect{ClientID: "pub", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	short, long := uint32(1), uint32(600)
	for _, p := range []*paho.Publish{
		{Topic: "ttl/short", QoS: 1, Payload: []byte("short"), Properties: &paho.PublishProperties{MessageExpiry: &short}},
		{Topic: "ttl/long", QoS: 1, Payload: []byte("long"), Properties: &paho.PublishProperties{MessageExpiry: &long}},
	} {
		if _, err := pub.Publish(ctx5(t), p); err != nil {
			t.Fatal(err)
		}
	}
	// The broker's expiry sweep removes "short" from the offline session's
	// queue, in memory and then in the store, once its second has passed.
	queued := func(topic string) bool {
		snap, err := s.Store().Load()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range snap.Inflight {
			if m.ClientID == "offline" && m.Topic == topic {
				return true
			}
		}
		return false
	}
	poll.Until(t, "ttl/long queued for the offline session", func() bool { return queued("ttl/long") })
	poll.Until(t, "ttl/short expired from the queue", func() bool { return !queued("ttl/short") })

	got := make(chan string, 4)
	_, present := connectV5Session(t, addr, "offline", 3600, func(p paho.PublishReceived) (bool, error) {
		got <- string(p.Packet.Payload)
		return true, nil
	})
	if !present {
		t.Fatal("session lost")
	}
	select {
	case m := <-got:
		if m != "long" {
			t.Fatalf("first message %q, want long (short expired)", m)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("queued message not delivered")
	}
	select {
	case m := <-got:
		t.Fatalf("expired message %q delivered", m)
	case <-time.After(300 * time.Millisecond):
	}
}
