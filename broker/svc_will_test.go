package broker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// kicker allows everything and disconnects (broker.Server.Disconnect, will
// kept) a client that publishes to kick/me, from its own goroutine between
// two packets: mochi then ends the connection without publishing the will,
// and the broker publishes it itself (kickedWill).
type kicker struct{ srv atomic.Pointer[broker.Server] }

func (k *kicker) Authenticate(_ context.Context, c *broker.Connect) broker.AuthResult {
	return broker.AuthResult{Decision: broker.Allow, Client: kickerClient{k, c.ClientID}}
}

func (k *kicker) SecurityExtensions() []string { return []string{"kicker"} }

type kickerClient struct {
	k  *kicker
	id string
}

func (c kickerClient) AuthorizePublish(p *broker.Publish) broker.Verdict {
	if p.Topic == "kick/me" {
		_ = c.k.srv.Load().Disconnect(c.id, 0x98, "kicked", false)
	}
	return broker.Verdict{Decision: broker.Allow}
}

func (c kickerClient) AuthorizeSubscribe(*broker.Subscribe) broker.Verdict {
	return broker.Verdict{Decision: broker.Allow}
}

// TestKickedWillNotSentAfterReturn: the delayed will of a client the
// broker disconnected is not published when the client came back within
// the delay, even if it has left again by the time the delay ends
// ([MQTT-3.1.3-9]).
func TestKickedWillNotSentAfterReturn(t *testing.T) {
	k := &kicker{}
	b := &svcBroker{t: t, cfg: testConfig(t.TempDir())}
	b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: k})
	k.srv.Store(b.Server)
	delays := make(chan func(), 1)
	b.SetWillTimer(func(_ time.Duration, f func()) { delays <- f })

	got := make(chan string, 8)
	watcher := v3Connect(t, v3Options(b.addr, "watcher"))
	defer watcher.Disconnect(0)
	wait(t, "subscribe", watcher.Subscribe("will/#", 1, func(_ paho3.Client, m paho3.Message) { got <- m.Topic() }))

	delay := uint32(60)
	w, _ := b.connect5("w", false, 600, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "will/w", Payload: []byte("gone"), QoS: 1}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	if _, err := w.Publish(ctx5(t), &paho.Publish{Topic: "kick/me"}); err != nil {
		t.Fatal(err)
	}
	var publishWill func()
	select {
	case publishWill = <-delays:
	case <-time.After(poll.Timeout):
		t.Fatal("the broker did not hold the will of the client it disconnected")
	}

	// Back within the delay (without a will), and gone again.
	again, present := b.connect5("w", false, 600, nil)
	if !present {
		t.Fatal("session not resumed")
	}
	again.leave()
	b.awaitOffline("w")

	publishWill() // the delay ends
	if err := b.Publish(broker.Message{Topic: "will/marker", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != "will/marker" {
			t.Fatalf("watcher got %s before the marker: the will went out after the client came back", topic)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("marker not received")
	}
}
