package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// filtersOf returns the filters of a record's state, sorted (nil for no
// record or no state).
func filtersOf(r *sessionRecord) []string {
	if r == nil || r.State == nil {
		return nil
	}
	var out []string
	for _, sub := range r.State.Subscriptions {
		out = append(out, sub.Filter)
	}
	slices.Sort(out)
	return out
}

// subscribe subscribes c to filters at QoS 1, one SUBSCRIBE each.
func subscribe(t *testing.T, c *paho.Client, filters ...string) {
	t.Helper()
	for _, f := range filters {
		if _, err := c.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}}); err != nil {
			t.Fatalf("subscribe %s: %v", f, err)
		}
	}
}

// kill stops n's part abruptly, its client connected: n is not alive any
// more, releases nothing and its broker closes.
func kill(t *testing.T, n *sessNode, alive *sessAlive) {
	t.Helper()
	alive.set(n.name, false)
	n.on.Store(false)
	n.sessions.close()
	if err := n.srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSessionOnlineSubscriptionsSurviveNodeDeath: a first connection
// subscribes on a (its record, written at the claim, has no state); a
// dies with the client connected; the client connects to b: its session
// is there with the subscription made online on a, and the message
// stored while it was online is replayed.
func TestSessionOnlineSubscriptionsSurviveNodeDeath(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")

	c, present, _ := persistent(t, a, "online", true, nil)
	if present {
		t.Fatal("session present on a first connection")
	}
	subscribe(t, c, "on/#")
	poll.Until(t, "the record on a gets the subscription made online", func() bool {
		r := a.record(t, "online")
		return r != nil && r.Online && r.Node == "a" && slices.Equal(filtersOf(r), []string{"on/#"})
	})
	pub, _ := b.connect(t, "pub")
	sendQoS1(t, pub, "on/x", "while-online-on-a")
	kill(t, a, alive)

	_, present, got := persistent(t, b, "online", false, nil)
	if !present {
		t.Fatal("no session present on b after a died with its client connected")
	}
	poll.Until(t, "the message stored while online on a is replayed on b", func() bool {
		return slices.Contains(got.payloads("on/x"), "while-online-on-a")
	})
	sendQoS1(t, pub, "on/x", "after")
	poll.Until(t, "the subscription made online on a works on b", func() bool {
		return slices.Contains(got.payloads("on/x"), "after")
	})
}

// TestSessionRecordFollowsChanges: the record follows UNSUBSCRIBE and the
// Subscriptions service; changes made while a write waits are coalesced
// into one write with the latest state; a non-persistent session's
// record is never written.
func TestSessionRecordFollowsChanges(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	key, _ := clientKey("follow")

	c, _, _ := persistent(t, a, "follow", true, nil)
	subscribe(t, c, "f/0")
	poll.Until(t, "the record gets f/0", func() bool { return slices.Equal(filtersOf(a.record(t, "follow")), []string{"f/0"}) })
	if _, err := c.Unsubscribe(brokertest.OpCtx(t), &paho.Unsubscribe{Topics: []string{"f/0"}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the record loses f/0", func() bool {
		r := a.record(t, "follow")
		return r != nil && r.State != nil && len(r.State.Subscriptions) == 0
	})
	if err := a.srv.Subscribe("follow", broker.SubscriptionInfo{Filter: "svc/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the record gets the service's subscription", func() bool {
		return slices.Equal(filtersOf(a.record(t, "follow")), []string{"svc/#"})
	})

	// Hold the client id's lock: the next write waits for it while 20
	// SUBSCRIBEs change the session.
	e, err := a.kv.Get(brokertest.OpCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	before := e.Revision()
	sk := a.sessions.key(key)
	sk.mu.Lock()
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("g/%02d", i))
	}
	subscribe(t, c, want...)
	sk.mu.Unlock()
	a.sessions.done(key, sk)
	want = append(want, "svc/#")
	slices.Sort(want)
	poll.Until(t, "the record gets the 20 subscriptions", func() bool { return slices.Equal(filtersOf(a.record(t, "follow")), want) })
	poll.Settle(t, "no write pending", func() string {
		a.sessions.mu.Lock()
		defer a.sessions.mu.Unlock()
		if n := len(a.sessions.syncs); n > 0 {
			return fmt.Sprintf("%d pending", n)
		}
		return ""
	})
	e, err = a.kv.Get(brokertest.OpCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	// One write with the state it read once the lock was free, and at
	// most one more for a change reported after it began (a SUBACK may
	// reach the client before its report).
	if n := e.Revision() - before; n < 1 || n > 2 {
		t.Fatalf("20 changes made %d writes of the record, want 1 or 2", n)
	}

	// A session that ends with its connection: no record, nothing
	// written for its subscriptions.
	brief, _ := a.connect(t, "brief")
	subscribe(t, brief, "b/#")
	if ok, err := a.sessions.syncRecord("brief", mustKey(t, "brief"), &sessionKey{}); ok || err != nil {
		t.Fatalf("record write of a non-persistent session: %v %v", ok, err)
	}
	if r := a.record(t, "brief"); r != nil {
		t.Fatalf("record of a non-persistent session: %+v", r)
	}
}

// mustKey returns the client key of id.
func mustKey(t *testing.T, id string) string {
	t.Helper()
	key, err := clientKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestSessionSyncLeavesOthersClaim: a record another node claimed since
// (or one deleted) is not written by the node that had the session.
func TestSessionSyncLeavesOthersClaim(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	key := mustKey(t, "claimed")
	c, _, _ := persistent(t, a, "claimed", true, nil)
	subscribe(t, c, "c/#")
	poll.Until(t, "the record gets c/#", func() bool { return slices.Equal(filtersOf(a.record(t, "claimed")), []string{"c/#"}) })

	e, err := a.kv.Get(brokertest.OpCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	theirs := &sessionRecord{Node: "b", Online: true, Since: 7}
	if _, err := a.sessions.put(brokertest.OpCtx(t), key, e.Revision(), theirs); err != nil {
		t.Fatal(err)
	}
	if err := a.srv.Subscribe("claimed", broker.SubscriptionInfo{Filter: "late/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.sessions.syncRecord("claimed", key, &sessionKey{}); ok || err != nil {
		t.Fatalf("write over b's claim: %v %v", ok, err)
	}
	if r := a.record(t, "claimed"); r == nil || r.Node != "b" || r.State != nil {
		t.Fatalf("b's record after a's write: %+v", r)
	}
	if err := a.kv.Delete(brokertest.OpCtx(t), key); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.sessions.syncRecord("claimed", key, &sessionKey{}); ok || err != nil {
		t.Fatalf("write of a deleted record: %v %v", ok, err)
	}
	if r := a.record(t, "claimed"); r != nil {
		t.Fatalf("deleted record written again: %+v", r)
	}
}

// jsRequests counts the requests sent to JetStream on ns (the API, KV
// writes, held-message publishes: each message with a reply subject is one
// round trip) from a wiretap connection.
type jsRequests struct {
	nc   *nats.Conn
	subs []*nats.Subscription
}

func tapJetStream(t *testing.T, ns *server.Server) *jsRequests {
	t.Helper()
	r := &jsRequests{nc: natstest.Connect(t, ns)}
	for _, subj := range []string{"$JS.API.>", "$KV.>", queuePrefix + ".>"} {
		sub, err := r.nc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			t.Fatal(err)
		}
		r.subs = append(r.subs, sub)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// take returns the requests seen since the last take, as "subject" lines.
// The requests were answered before the caller's step returned, so they
// were sent to the wiretap before its flush's PONG.
func (r *jsRequests) take(t *testing.T) []string {
	t.Helper()
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sub := range r.subs {
		for {
			m, err := sub.NextMsg(0)
			if err != nil {
				break
			}
			if m.Reply != "" {
				out = append(out, m.Subject)
			}
		}
	}
	return out
}

// TestSessionClaimRoundTrips counts the JetStream round trips of a claim:
// a session that ends with its connection and has no record costs one
// (the record's read); one that outlives it costs three (read, the
// stream's last sequence, the record's write). Before: four in each case
// (the last sequence took two).
func TestSessionClaimRoundTrips(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	tap := tapJetStream(t, ns)
	tap.take(t)
	for _, tc := range []struct {
		name                  string
		id                    string
		clean, persistent     bool
		want                  int
		recordAfter, onlineOn string
	}{
		{"clean, ends with its connection, no record", "c1", true, false, 1, "", ""},
		{"not clean, ends with its connection, no record", "c2", false, false, 1, "", ""},
		{"clean, persistent, no record", "c3", true, true, 3, "a", "a"},
		{"not clean, persistent, no record", "c4", false, true, 3, "a", "a"},
		{"clean, ends with its connection, record without state", "c3", true, false, 3, "a", "a"},
	} {
		st, msgs, err := a.sessions.claim(tc.id, tc.clean, tc.persistent)
		if err != nil || st != nil || len(msgs) != 0 {
			t.Fatalf("%s: claim: %v %v %v", tc.name, st, msgs, err)
		}
		got := tap.take(t)
		if len(got) != tc.want {
			t.Errorf("%s: %d round trips, want %d:\n%s", tc.name, len(got), tc.want, strings.Join(got, "\n"))
		}
		r := a.record(t, tc.id)
		tap.take(t) // the test's own read
		switch {
		case tc.recordAfter == "" && r != nil:
			t.Errorf("%s: record written: %+v", tc.name, r)
		case tc.recordAfter != "" && (r == nil || !r.Online || r.Node != tc.onlineOn):
			t.Errorf("%s: record %+v, want online on %s", tc.name, r, tc.onlineOn)
		}
	}
}

// TestSessionSweepOneNode: only the alive node with the lowest name
// sweeps; when it is not alive, the next one does.
func TestSessionSweepOneNode(t *testing.T) {
	ns := natstest.Start(t, "js")
	alive := &sessAlive{}
	a := startSessNode(t, ns, "a", alive, true, "")
	b := startSessNode(t, ns, "b", alive, true, "")
	ctx := brokertest.OpCtx(t)
	now := time.Now()
	expired := func(id string) {
		st := &broker.SessionState{}
		st.Session.ClientID, st.Session.SessionExpiry = id, 60
		if _, err := a.sessions.put(ctx, mustKey(t, id), 0, &sessionRecord{Node: "a", Expiry: 60,
			DisconnectedAt: now.Add(-time.Hour).Unix(), State: st}); err != nil {
			t.Fatal(err)
		}
	}
	expired("gone1")
	if n, swept, err := b.sessions.sweepTick(now); swept || n != 0 || err != nil {
		t.Fatalf("b swept with a alive: %d %v %v", n, swept, err)
	}
	if n, swept, err := a.sessions.sweepTick(now); !swept || n != 1 || err != nil {
		t.Fatalf("a's sweep: %d %v %v, want 1 deleted", n, swept, err)
	}
	expired("gone2")
	alive.set("a", false)
	if n, swept, err := a.sessions.sweepTick(now); swept || n != 0 || err != nil {
		t.Fatalf("a swept while not alive: %d %v %v", n, swept, err)
	}
	if n, swept, err := b.sessions.sweepTick(now); !swept || n != 1 || err != nil {
		t.Fatalf("b's sweep with a gone: %d %v %v, want 1 deleted", n, swept, err)
	}
}
