package cluster

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
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
	// The second export of busy pauses: the first is its release after
	// the subscription below.
	pause := &pausedExport{id: "busy", skip: 1, exported: make(chan struct{}), resume: make(chan struct{})}
	a := startSessNodeWith(t, ns, "a", alive, true, "", func(srv *broker.Server) sessionBroker {
		pause.Server = srv
		return pause
	})
	resumed := false
	defer func() {
		if !resumed {
			close(pause.resume)
		}
	}()

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
	// paused before storing its 400 held messages (a fast machine stores
	// them between two polls).
	select {
	case <-pause.exported:
	case <-brokertest.OpCtx(t).Done():
		t.Fatal("a did not export the session")
	}
	if _, ok := a.srv.Client("busy"); ok {
		t.Fatal("busy still in a's broker after its export")
	}
	if r := a.record(t, "busy"); r == nil || !r.Online {
		t.Fatalf("busy's record during the release: %+v, want online", r)
	}
	// The release goes on once the reconnect's connection is accepted: its
	// CONNECT then waits for the release, which holds the id's CONNECT turn.
	connections := func() (n uint64) {
		for _, c := range a.srv.Counters().ConnectionsOpened {
			n += c
		}
		return n
	}
	opened := connections()
	resumed = true
	go func() {
		poll.Wait(func() bool { return connections() > opened }) // or resume anyway after poll.Timeout
		close(pause.resume)
	}()
	_, present, again := persistent(t, a, "busy", false, nil)
	if !present {
		t.Fatal("no session present on reconnecting during the release")
	}
	poll.Settle(t, "every held message arrives after the reconnect", func() string {
		return missing(again.payloads("bz/x"), want)
	})
}

// pausedExport is a node's broker whose first export of client id after
// skip others pauses the release: it closes exported, then waits for
// resume to close.
type pausedExport struct {
	*broker.Server
	id       string
	skip     int32
	seen     atomic.Int32
	once     sync.Once
	exported chan struct{}
	resume   chan struct{}
}

func (p *pausedExport) ExportSessionHeld(id string) (broker.SessionState, []broker.Message, error) {
	st, msgs, err := p.Server.ExportSessionHeld(id)
	if err == nil && id == p.id && p.seen.Add(1) > p.skip {
		p.once.Do(func() {
			close(p.exported)
			<-p.resume
		})
	}
	return st, msgs, err
}

// idle reports whether n runs nothing for id (no claim, release or
// pending catch-up: its sessionKey is gone).
func (n *sessNode) idle(t *testing.T, id string) bool {
	key := mustKey(t, id)
	n.sessions.mu.Lock()
	defer n.sessions.mu.Unlock()
	return n.sessions.keys[key] == nil
}

// TestSessionReleaseLosingItsWrite: a's release of a session has exported
// it when b takes the client id with a clean start, and b's own session
// is released with held messages: a's record write loses, and a drops its
// copy (no session resurrected on a) and leaves b's held messages alone.
func TestSessionReleaseLosingItsWrite(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	pause := &pausedExport{id: "contested", exported: make(chan struct{}), resume: make(chan struct{})}
	a := startSessNodeWith(t, ns, "a", alive, true, "", func(srv *broker.Server) sessionBroker {
		pause.Server = srv
		return pause
	})
	b := startSessNode(t, ns, "b", alive, true, "")
	resumed := false
	defer func() {
		if !resumed {
			close(pause.resume)
		}
	}()

	first, _, _ := persistent(t, a, "contested", true, nil)
	subscribe(t, first, "ct/#")
	if err := first.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pause.exported:
	case <-brokertest.OpCtx(t).Done():
		t.Fatal("a did not export the session")
	}

	second, _, _ := persistent(t, b, "contested", true, nil)
	subscribe(t, second, "ct/#")
	if err := second.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	pub, _ := b.connect(t, "pub")
	want := []string{"b1", "b2", "b3"}
	sendQoS1(t, pub, "ct/x", want...) // within b's grace: held by b's session
	poll.Until(t, "b releases its session", func() bool {
		r := b.record(t, "contested")
		return r != nil && !r.Online && r.Node == "b" && r.State != nil
	})
	if r := b.record(t, "contested"); r.Held != len(want) {
		t.Fatalf("b's release stored %d held messages, want %d", r.Held, len(want))
	}

	close(pause.resume)
	resumed = true
	poll.Until(t, "a's release ends", func() bool { return a.idle(t, "contested") })
	if _, ok := a.srv.Client("contested"); ok {
		t.Fatal("a put back the session whose record b holds")
	}
	if r := b.record(t, "contested"); r == nil || r.Node != "b" || r.Online {
		t.Fatalf("record after a's lost write: %+v, want b's, offline", r)
	}
	_, present, got := persistent(t, b, "contested", false, nil)
	if !present {
		t.Fatal("no session present on b")
	}
	poll.Settle(t, "b's held messages arrive", func() string { return missing(got.payloads("ct/x"), want) })
}

// TestSessionReleaseAskedWhileGateOff: a node whose protocol gate reads
// off (replicated sessions off, for a moment) still answers a release
// request for a session its record says it holds: the claim on the other
// node gets the session instead of waiting and refusing the CONNECT.
func TestSessionReleaseAskedWhileGateOff(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")

	c, _, _ := persistent(t, a, "gated", true, nil)
	subscribe(t, c, "gt/#")
	poll.Until(t, "a's record has the subscription", func() bool {
		return slices.Equal(filtersOf(a.record(t, "gated")), []string{"gt/#"})
	})
	a.on.Store(false) // the gate reads off on a: its disconnect releases nothing
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "a holds the offline session", func() bool { info, ok := a.srv.Client("gated"); return ok && !info.Connected })

	_, present, got := persistent(t, b, "gated", false, nil)
	if !present {
		t.Fatal("no session present on b")
	}
	pub, _ := b.connect(t, "pub")
	sendQoS1(t, pub, "gt/x", "after")
	poll.Until(t, "the subscription released by a works on b", func() bool {
		return slices.Contains(got.payloads("gt/x"), "after")
	})
	if _, ok := a.srv.Client("gated"); ok {
		t.Fatal("a still holds the session it released")
	}
}
