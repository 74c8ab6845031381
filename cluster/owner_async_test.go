package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestConnectedDoesNotWaitForJetStream stops the NATS server under node
// A (its KV puts then wait for their timeout, set far beyond the test's):
// a client connecting to A is served at once all the same, as the put of
// its entry is not made on its goroutine.
func TestConnectedDoesNotWaitForJetStream(t *testing.T) {
	ns := natstest.Start(t, "n")
	a := startSessionNode(t, ns, "a", func(o *ownerOptions) { o.Timeout = time.Hour; o.Drain = time.Second })
	ns.Shutdown()
	poll.Until(t, "node a disconnected from nats", func() bool { return !a.nc.IsConnected() })
	c := connect5(t, a, "patient", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe after connecting with jetstream gone: %v", err)
	}
}

// TestOwnersSkipWithoutJetStream: while Ready reports false, no entry is
// put (and nothing waits); once it reports true, the next connection's
// entry is.
func TestOwnersSkipWithoutJetStream(t *testing.T) {
	ns := natstest.Start(t, "n")
	var ready atomic.Bool
	a := startSessionNode(t, ns, "a", func(o *ownerOptions) { o.Ready = ready.Load })
	connect5(t, a, "early", nil, nil)
	poll.Until(t, "the put of early skipped", func() bool { return a.owners.skipped.Load() > 0 })
	if o := ownerOf(t, a, "early"); o != "" {
		t.Fatalf("the bucket names %q for early, put while jetstream was not ready", o)
	}
	ready.Store(true)
	connect5(t, a, "late", nil, nil)
	poll.Until(t, "the bucket names a for late", func() bool { return ownerOf(t, a, "late") == "a" })
}

// TestOwnersOrderPerClient connects and disconnects one client id on A
// many times in a row without waiting: the queued puts and deletes run in
// order, so the bucket ends with no entry after the last disconnection,
// and with A's entry while a last connection stays.
func TestOwnersOrderPerClient(t *testing.T) {
	ns := natstest.Start(t, "n")
	a := startSessionNode(t, ns, "a")
	for range 20 {
		c := connect5(t, a, "blink", nil, nil)
		if err := c.Disconnect(&paho.Disconnect{}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, "no client blink on a", func() bool { return !a.connected("blink") })
	poll.Settle(t, "no entry for blink", func() string {
		if o := ownerOf(t, a, "blink"); o != "" {
			return "the bucket names " + o
		}
		return ""
	})
	connect5(t, a, "blink", nil, nil)
	poll.Settle(t, "a's entry for blink", func() string {
		if !ownEntry(t, a, "blink") {
			return fmt.Sprintf("the bucket names %q, not a's latest put", ownerOf(t, a, "blink"))
		}
		return ""
	})
}
