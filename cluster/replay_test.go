package cluster

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestReplaySkipsUndecodableAndKeepsExpiry: a node starting after another
// wrote a retained message it cannot decode (a newer body version, as a
// rolling upgrade writes) skips and counts it and replays the others; a
// replayed message keeps the expiry it had left, and one expired since is
// not replayed.
func TestReplaySkipsUndecodableAndKeepsExpiry(t *testing.T) {
	ns := natstest.Start(t, "n")
	a := startNode(t, ns, "a")
	future := encode(&broker.Message{Topic: "r/future", Payload: []byte("v2"), Retain: true}, "", "z", retainedSubject("r/future"))
	future.Data[0] = bodyVersion + 1
	if _, err := a.js.PublishMsg(brokertest.OpCtx(t), future); err != nil {
		t.Fatal(err)
	}
	pub, _ := a.connect(t, "pub")
	sent := time.Now()
	for topic, exp := range map[string]uint32{"r/long": 100, "r/short": 1} {
		if _, err := pub.Publish(brokertest.OpCtx(t), &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(topic),
			Properties: &paho.PublishProperties{MessageExpiry: &exp}}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, "two seconds pass", func() bool { return time.Since(sent) > 2*time.Second })
	b := startNode(t, ns, "b") // fails the test if the replay fails
	if b.router.rejected.Load() != 1 {
		t.Fatalf("b rejected %d messages in the replay, want 1", b.router.rejected.Load())
	}
	m, ok := b.broker.Retained("r/long")
	if !ok || m.MessageExpiry > 98 {
		t.Fatalf("r/long on b: %v, expiry %d, want at most 98 s left", ok, m.MessageExpiry)
	}
	if _, ok := b.broker.Retained("r/short"); ok {
		t.Fatal("r/short, expired before b started, was replayed")
	}
}
