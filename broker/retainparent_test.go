package broker_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// MQTT 5 4.7.1.2 (and 3.1.1 4.7.1.2): "sport/#" also matches "sport"; a
// new subscription is sent the retained message of every topic it
// matches (3.8.4), so that one too, with the rules of any retained message
// sent at subscribe time (3.3.1.3, 3.8.3.1, 3.3.4).
func TestSubscribeSendsRetainedOfWildcardParent(t *testing.T) {
	b := startAdmin(t)
	for _, tp := range []string{"sport", "sport/tennis", "x", "$x"} {
		if err := b.PutRetained(broker.Message{Topic: tp, Payload: []byte("r " + tp), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	received := func(c *client5, n int) map[string]*paho.Publish {
		t.Helper()
		got := map[string]*paho.Publish{}
		for range n {
			p := c.next(t)
			got[p.Topic] = p
		}
		c.none(t)
		return got
	}
	sub := func(c *client5, o paho.SubscribeOptions, id int) {
		t.Helper()
		s := &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{o}}
		if id > 0 {
			s.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: &id}
		}
		if _, err := c.Subscribe(ctx5(t), s); err != nil {
			t.Fatalf("subscribe %s: %v", o.Topic, err)
		}
	}

	c := b.connectAs("s1", "tcp", "")
	sub(c, paho.SubscribeOptions{Topic: "sport/#", QoS: 1}, 7)
	got := received(c, 2)
	p := got["sport"]
	if p == nil || string(p.Payload) != "r sport" || !p.Retain || p.QoS != 1 ||
		p.Properties == nil || p.Properties.SubscriptionIdentifier == nil || *p.Properties.SubscriptionIdentifier != 7 {
		t.Fatalf("sport/# got %v; sport as %+v, want retained QoS 1 with subscription id 7", keys(got), p)
	}
	if got["sport/tennis"] == nil {
		t.Errorf("sport/# got %v, want sport/tennis too", keys(got))
	}
	// Retain handling 1: only for a new subscription.
	sub(c, paho.SubscribeOptions{Topic: "sport/#", QoS: 1, RetainHandling: 1}, 0)
	c.none(t)

	// A first-level wildcard: every one-level topic but those starting
	// with '$' (4.7.2); QoS capped by the subscription's.
	c2 := b.connectAs("s2", "tcp", "")
	sub(c2, paho.SubscribeOptions{Topic: "+/#", QoS: 0}, 0)
	got = received(c2, 3)
	for _, tp := range []string{"sport", "sport/tennis", "x"} {
		if p := got[tp]; p == nil || p.QoS != 0 || !p.Retain {
			t.Errorf("+/# got %v; %s as %+v, want retained at QoS 0", keys(got), tp, p)
		}
	}

	// Retain handling 2: none; a shared subscription: none (4.8.2).
	c3 := b.connectAs("s3", "tcp", "")
	sub(c3, paho.SubscribeOptions{Topic: "sport/#", QoS: 1, RetainHandling: 2}, 0)
	sub(c3, paho.SubscribeOptions{Topic: "$share/g/sport/#", QoS: 1}, 0)
	c3.none(t)

	// No Local: not the client's own retained message.
	c4 := b.connectAs("s4", "tcp", "")
	if _, err := c4.Publish(ctx5(t), &paho.Publish{Topic: "own", QoS: 1, Retain: true, Payload: []byte("mine")}); err != nil {
		t.Fatal(err)
	}
	sub(c4, paho.SubscribeOptions{Topic: "own/#", QoS: 1, NoLocal: true}, 0)
	c4.none(t)
	c5 := b.connectAs("s5", "tcp", "")
	sub(c5, paho.SubscribeOptions{Topic: "own/#", QoS: 1}, 0)
	if p := c5.next(t); p.Topic != "own" || string(p.Payload) != "mine" {
		t.Errorf("own/# from another client: %s %q, want own \"mine\"", p.Topic, p.Payload)
	}
}

// MQTT 3.1.1 4.7.1.2 says the same: a 3.1.1 subscriber to sport/# gets
// sport's retained message, with the RETAIN flag (3.3.1.3).
func TestSubscribeSendsRetainedOfWildcardParent311(t *testing.T) {
	b := startAdmin(t)
	if err := b.PutRetained(broker.Message{Topic: "sport", Payload: []byte("r sport"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	got := make(chan paho3.Message, 4)
	c := v3Connect(t, v3Options(b.Addr("tcp"), "v3"))
	defer c.Disconnect(0)
	wait(t, "subscribe sport/#", c.Subscribe("sport/#", 1, func(_ paho3.Client, m paho3.Message) { got <- m }))
	select {
	case m := <-got:
		if m.Topic() != "sport" || string(m.Payload()) != "r sport" || !m.Retained() || m.Qos() != 1 {
			t.Errorf("got %s %q retained %v QoS %d, want sport \"r sport\" retained at QoS 1", m.Topic(), m.Payload(), m.Retained(), m.Qos())
		}
	case <-time.After(poll.Timeout):
		t.Fatal("3.1.1 subscriber to sport/# got no retained message")
	}
}

// keys lists the topics received.
func keys(m map[string]*paho.Publish) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
