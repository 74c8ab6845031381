package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// pidHook is a hook knowing one client, with a session's aliases, for
// the tests of renameInbound and renameAnswer without a network.
func pidHook(tb testing.TB) (*hook, *mqtt.Client) {
	tb.Helper()
	cl := mqtt.New(nil).NewClient(nil, "t", "pid", false)
	h := &hook{}
	h.clients.Store(cl, &clientState{ids: h.sessionIDs(cl.ID)})
	return h, cl
}

// delivering puts a delivery with packet id id in cl's Inflight.
func delivering(cl *mqtt.Client, id uint16) {
	cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id})
}

// TestRenameInboundWithoutFreeID: with every packet id a delivery's, a
// client's packet has no alias to take and keeps its id (mochi's handling
// then), and nothing is left behind.
func TestRenameInboundWithoutFreeID(t *testing.T) {
	h, cl := pidHook(t)
	for id := 1; id <= 65535; id++ {
		delivering(cl, uint16(id))
	}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 7}
	h.renameInbound(cl, &pk)
	if pk.PacketID != 7 {
		t.Fatalf("packet id %d, want 7 kept", pk.PacketID)
	}
	if n := h.state(cl).ids.n.Load(); n != 0 {
		t.Fatalf("%d aliases left, want 0", n)
	}
}

// TestRenameAnswerEndsTransientAliases: the answer that ends a flow drops
// its alias: a SUBACK, an UNSUBACK or a refusing PUBREC when written; a
// PUBACK or PUBCOMP once mochi completes the flow (OnQosComplete, after a
// successful write: a failed one is resent under the alias at the next
// connection, and must still be mapped back); a success PUBREC keeps it
// until the PUBCOMP.
func TestRenameAnswerEndsTransientAliases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      byte // the client's packet
		qos     byte
		answer  byte // the broker's answer
		code    byte
		aliases int32 // left after the answer
		done    byte  // the packet mochi completes the flow with (0: none)
	}{
		{"QoS 1 PUBLISH, PUBACK", packets.Publish, 1, packets.Puback, 0, 1, packets.Puback},
		{"QoS 2 PUBLISH, PUBREC", packets.Publish, 2, packets.Pubrec, 0, 1, 0},
		{"QoS 2 PUBLISH, refusing PUBREC", packets.Publish, 2, packets.Pubrec, 0x87, 0, 0},
		{"SUBSCRIBE, SUBACK", packets.Subscribe, 0, packets.Suback, 0, 0, 0},
		{"UNSUBSCRIBE, UNSUBACK", packets.Unsubscribe, 0, packets.Unsuback, 0, 0, 0},
		{"PUBREL, PUBCOMP", packets.Pubrel, 0, packets.Pubcomp, 0, 1, packets.Pubrel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, cl := pidHook(t)
			delivering(cl, 1)
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: tc.in, Qos: tc.qos}, PacketID: 1}
			h.renameInbound(cl, &pk)
			if pk.PacketID == 1 || pk.PacketID == 0 {
				t.Fatalf("renamed to %d, want an alias", pk.PacketID)
			}
			ans := h.renameAnswer(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: tc.answer}, PacketID: pk.PacketID, ReasonCode: tc.code})
			if ans.PacketID != 1 {
				t.Fatalf("answer with id %d, want 1", ans.PacketID)
			}
			if n := h.state(cl).ids.n.Load(); n != tc.aliases {
				t.Fatalf("%d aliases left, want %d", n, tc.aliases)
			}
			if tc.done == 0 {
				return
			}
			// The completion: mochi's own PUBACK (Created set), or the
			// client's PUBREL, under the alias.
			h.OnQosComplete(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: tc.done}, PacketID: pk.PacketID, Created: 1})
			if n := h.state(cl).ids.n.Load(); n != 0 {
				t.Fatalf("%d aliases left once the flow completed, want 0", n)
			}
		})
	}
}

// BenchmarkRenameInbound is the cost OnPacketRead adds to a client's QoS 1
// PUBLISH: "empty" with no flow in flight (a publisher that subscribes to
// nothing), "free" when its id is no delivery's but others are in flight
// (one Inflight lookup), "collision" for a whole renamed flow (the PUBLISH
// and its PUBACK).
func BenchmarkRenameInbound(b *testing.B) {
	b.Run("empty", func(b *testing.B) {
		h, cl := pidHook(b)
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1}
		for b.Loop() {
			h.renameInbound(cl, &pk)
			if pk.PacketID != 1 {
				b.Fatalf("renamed to %d", pk.PacketID)
			}
		}
	})
	b.Run("free", func(b *testing.B) {
		h, cl := pidHook(b)
		delivering(cl, 2)
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1}
		for b.Loop() {
			h.renameInbound(cl, &pk)
			if pk.PacketID != 1 {
				b.Fatalf("renamed to %d", pk.PacketID)
			}
		}
	})
	b.Run("collision", func(b *testing.B) {
		h, cl := pidHook(b)
		delivering(cl, 1)
		for b.Loop() {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1}
			h.renameInbound(cl, &pk)
			ans := h.renameAnswer(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
			if pk.PacketID == 1 || ans.PacketID != 1 {
				b.Fatalf("renamed to %d, answered %d", pk.PacketID, ans.PacketID)
			}
			h.aliasEnded(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID, Created: 1})
		}
	})
}
