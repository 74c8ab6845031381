package cluster

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestSpacesInTopicAndClientIDSurvive: NATS trims header values, so a
// topic and a client id with leading and trailing spaces and tabs must
// cross nodes unchanged: the subscriber on b gets the exact topic, and
// No Local on b still recognises the publisher of a by its exact id.
func TestSpacesInTopicAndClientIDSurvive(t *testing.T) {
	ns := natstest.Start(t, "n")
	a, b := startNode(t, ns, "a"), startNode(t, ns, "b")
	sub, got := b.connect(t, "sub")
	b.subscribe(t, sub, "t/#")
	const id = " \tpub "
	self, mine := b.connect(t, id)
	if sa, err := self.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1, NoLocal: true}}}); err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe: %v %v", sa, err)
	}
	b.synced(t)
	pub, _ := a.connect(t, id)
	for _, topic := range []string{"t/x \t", "t/ y ", "t/z"} {
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, "b's subscriber gets the messages", func() bool { return len(got.snapshot()) == 3 })
	for _, p := range got.snapshot() {
		if p.Topic != string(p.Payload) {
			t.Fatalf("topic %q reached b as %q", p.Payload, p.Topic)
		}
	}
	if ps := mine.snapshot(); len(ps) != 0 {
		t.Fatalf("the No Local subscriber %q on b got %d of its own messages", id, len(ps))
	}
}
