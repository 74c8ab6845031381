package broker_test

import (
	"time"

	"testing"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestPendingOnlyWhenAStoredSessionSubscribes: a QoS 1 publish is written
// as pending (and deleted once queued) only when a crash could lose it for
// someone: a stored session subscribes to its topic, or it is retained. A
// publish that only clean sessions receive costs no store write.
func TestPendingOnlyWhenAStoredSessionSubscribes(t *testing.T) {
	p := openCounting(t, t.TempDir())
	cfg := testConfig(t.TempDir())
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}}, Logger: testLogger(t), Persistence: p})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	addr := s.Addr(cfg.Listeners[0].Name)

	got := make(chan string, 10)
	handler := func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) }
	watcher := v3Connect(t, v3Options(addr, "watcher").SetDefaultPublishHandler(handler))
	wait(t, "subscribe", watcher.Subscribe("t/#", 1, nil))
	pub := v3Connect(t, v3Options(addr, "pub"))
	publish := func(topic string, retained bool, payload string) {
		t.Helper()
		wait(t, "publish", pub.Publish(topic, 1, retained, payload))
		select {
		case m := <-got:
			if m != payload {
				t.Fatalf("delivered %q, want %q", m, payload)
			}
		case <-time.After(poll.Timeout):
			t.Fatalf("%q not delivered", payload)
		}
	}

	publish("t/a", false, "clean subscribers only")
	if n := p.n("PutPending"); n != 0 {
		t.Fatalf("PutPending called %d times for a message only a clean session receives, want 0", n)
	}

	publish("t/r", true, "retained")
	if n := p.n("PutPending"); n != 1 {
		t.Fatalf("PutPending called %d times after a retained publish, want 1", n)
	}

	keeper := v3Connect(t, v3Options(addr, "keeper").SetCleanSession(false))
	wait(t, "subscribe", keeper.Subscribe("t/+", 1, nil))
	publish("t/b", false, "a stored session subscribes")
	if n := p.n("PutPending"); n != 2 {
		t.Fatalf("PutPending called %d times with a stored subscriber, want 2", n)
	}
	poll.Until(t, "both pending records deleted", func() bool { return p.n("DeletePending") == 2 })

	publish("t/a/deeper", false, "outside the stored session's filter")
	if n := p.n("PutPending"); n != 2 {
		t.Fatalf("PutPending called %d times for a topic the stored session does not match, want 2", n)
	}
}
