package cluster

import (
	"fmt"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The tests of this file check that a session changing hands never loses
// a message the cluster acknowledged, and never waits on itself.

// persistentNoAck connects id to n as persistent does (expiry 300 s, no
// clean start), but acknowledges nothing it receives: the messages stay
// in flight in its session.
func persistentNoAck(t *testing.T, n *sessNode, id string) (*paho.Client, *received) {
	t.Helper()
	got := &received{}
	c := brokertest.DialV5(t, n.addr, paho.ClientConfig{ClientID: id, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){got.add}})
	exp := uint32(300)
	ca, err := c.Connect(brokertest.OpCtx(t), &paho.Connect{ClientID: id, KeepAlive: 60,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}})
	if err != nil || ca.ReasonCode != 0 || !ca.SessionPresent {
		t.Fatalf("connect %s to %s: %v %+v, want session present", id, n.name, err, ca)
	}
	return c, got
}

// TestSessionClaimKeepsUnackedOnNodeDeath: messages a claim handed to a
// node, received by the client but not acknowledged, are still owed when
// that node dies: the next claim, on another node, delivers them all.
func TestSessionClaimKeepsUnackedOnNodeDeath(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")

	sub, _, _ := persistent(t, a, "unacked", true, nil)
	subscribe(t, sub, "ua/#")
	leave(t, a, sub, "unacked")
	pub, _ := b.connect(t, "pub")
	want := []string{"1", "2", "3", "4", "5"}
	sendQoS1(t, pub, "ua/x", want...)

	_, got := persistentNoAck(t, a, "unacked")
	poll.Until(t, "the claim on a hands the 5 messages to the client", func() bool {
		return len(got.payloads("ua/x")) == len(want)
	})
	kill(t, a, alive)

	_, present, again := persistent(t, b, "unacked", false, nil)
	if !present {
		t.Fatal("no session present on b after a died")
	}
	poll.Settle(t, "every message a held unacknowledged arrives on b", func() string {
		return missing(again.payloads("ua/x"), want)
	})
}

// missing says which of want got lacks ("" when none: duplicates and
// order aside).
func missing(got, want []string) string {
	var out []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d missing (%v), got %d", len(out), len(want), out, len(got))
}

// TestSessionReconnectDuringOwnRelease: a client reconnects to the node
// that is releasing its session, while the session's many held messages
// are being stored: the CONNECT waits for the release, then claims what
// it stored (no claim waiting on its own node's release until it times
// out): session present, every message.
func TestSessionReconnectDuringOwnRelease(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")

	sub, _, _ := persistent(t, a, "busy", true, nil)
	subscribe(t, sub, "bz/#")
	leave(t, a, sub, "busy")
	pub, _ := a.connect(t, "pub")
	var want []string
	for i := range 400 {
		want = append(want, fmt.Sprint(i))
	}
	sendQoS1(t, pub, "bz/x", want...)
	c, got := persistentNoAck(t, a, "busy")
	poll.Settle(t, "the 400 messages in flight to the client, unacknowledged", func() string {
		return missing(got.payloads("bz/x"), want)
	})
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	// The release has exported the session (it left the broker) and is
	// storing its 400 held messages.
	poll.Until(t, "a's release of busy under way", func() bool {
		_, ok := a.srv.Client("busy")
		r := a.record(t, "busy")
		return !ok && r != nil && r.Online
	})
	_, present, again := persistent(t, a, "busy", false, nil)
	if !present {
		t.Fatal("no session present on reconnecting during the release")
	}
	poll.Settle(t, "every held message arrives after the reconnect", func() string {
		return missing(again.payloads("bz/x"), want)
	})
}
