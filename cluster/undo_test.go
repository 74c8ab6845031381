package cluster

import (
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/natstest"
)

// TestUndoClaim: after a claim failed with a record write that got no
// answer, undoClaim puts back the record the claim replaced when the
// write landed, and otherwise makes the write fail should it arrive late
// (the record rewritten at its revision); with no record before, it
// leaves a tombstone, so a late create fails too.
func TestUndoClaim(t *testing.T) {
	ns := natstest.Start(t, "js")
	a := startSessNode(t, ns, "a", &sessAlive{}, true, "")
	ss := a.sessions
	ctx := brokertest.OpCtx(t)
	key, _ := clientKey("c1")
	orig := sessionRecord{Node: "b", Since: 7, Queue: "g0", Held: 2}
	o := orig
	rev, err := ss.put(ctx, key, 0, &o)
	if err != nil {
		t.Fatal(err)
	}
	same := func(r *sessionRecord) bool {
		return r != nil && r.Node == orig.Node && !r.Online && r.Since == orig.Since && r.Queue == orig.Queue && r.Held == orig.Held
	}

	// The claim's write landed: the record names a, online.
	if rev, err = ss.put(ctx, key, rev, &sessionRecord{Node: "a", Online: true, Since: 7}); err != nil {
		t.Fatal(err)
	}
	o = orig
	ss.undoClaim("c1", key, &o)
	cur, rev, err := ss.get(ctx, key)
	if err != nil || !same(cur) {
		t.Fatalf("after undoing a landed write: %+v, %v; want the record before the claim %+v", cur, err, orig)
	}

	// The claim's write is still on its way (conditional on rev).
	o = orig
	ss.undoClaim("c1", key, &o)
	if cur, _, err := ss.get(ctx, key); err != nil || !same(cur) {
		t.Fatalf("after undoing a write not landed: %+v, %v; want the record unchanged", cur, err)
	}
	if _, err := ss.put(ctx, key, rev, &sessionRecord{Node: "a", Online: true}); !conflict(err) {
		t.Fatalf("the late write after undoClaim: %v, want a conflict", err)
	}

	// No record before the claim: a late create fails.
	key2, _ := clientKey("c2")
	ss.undoClaim("c2", key2, nil)
	if cur, _, err := ss.get(ctx, key2); err != nil || cur == nil || !cur.Tombstone {
		t.Fatalf("after undoing a create: %+v, %v; want a tombstone", cur, err)
	}
	if _, err := ss.put(ctx, key2, 0, &sessionRecord{Node: "a", Online: true}); !conflict(err) {
		t.Fatalf("the late create after undoClaim: %v, want a conflict", err)
	}
}

// TestPurgeQueueKeepsLaterGenerations: a purge bounded by the queues
// stream's last sequence read before it removes every generation stored
// up to then, and keeps one stored after (a later claim and release).
func TestPurgeQueueKeepsLaterGenerations(t *testing.T) {
	ns := natstest.Start(t, "js")
	a := startSessNode(t, ns, "a", &sessAlive{}, true, "")
	ss := a.sessions
	ctx := brokertest.OpCtx(t)
	key, _ := clientKey("c1")
	msgs := []broker.Message{{Topic: "t/1", QoS: 1, Payload: []byte("one")}, {Topic: "t/2", QoS: 1, Payload: []byte("two")}}
	if err := ss.publishHeld(ctx, key, "old", msgs); err != nil {
		t.Fatal(err)
	}
	upTo, err := ss.queuesLast(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.publishHeld(ctx, key, "new", msgs); err != nil {
		t.Fatal(err)
	}
	if err := ss.purgeQueue(ctx, key, upTo); err != nil {
		t.Fatal(err)
	}
	if got, err := ss.readQueue(ctx, key, "old"); err != nil || len(got) != 0 {
		t.Fatalf("generation stored before the bound: %d messages, %v; want none", len(got), err)
	}
	if got, err := ss.readQueue(ctx, key, "new"); err != nil || len(got) != 2 {
		t.Fatalf("generation stored after the bound: %d messages, %v; want 2", len(got), err)
	}
}
