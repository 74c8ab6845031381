package broker

import (
	"context"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// passing is an Interceptors at every point that changes nothing, as the
// host is for a delivery its extensions' outbound filters do not match.
type passing struct{}

func (passing) Active() InterceptPoints                            { return 0xFF }
func (passing) InterceptConnect(context.Context, *Connect)         {}
func (passing) InterceptConnack(Peer, *Connack)                    {}
func (passing) InterceptPublish(Peer, *Message) Prevented          { return Prevented{} }
func (passing) InterceptDelivery(Peer, string, *Message) Prevented { return Prevented{} }
func (passing) WantsDelivery(string, string) bool                  { return true }
func (passing) InterceptSubscribe(Peer, *Subscription) Prevented   { return Prevented{} }
func (passing) InterceptDisconnect(Peer, *DisconnectPacket)        {}

// TestDeliveryUnchangedAllocatesNothing: a delivery no interceptor changes
// costs no allocation, user properties included (they are viewed, not
// copied).
func TestDeliveryUnchangedAllocatesNothing(t *testing.T) {
	h := &hook{ext: Extensions{Interceptors: passing{}}}
	cl := &mqtt.Client{ID: "sub"}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", Payload: []byte("x"), PacketID: 1,
		Properties: packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}, {Key: "k2", Val: "v2"}}}}
	ic := h.interceptors(InterceptPublishOutbound)
	if n := testing.AllocsPerRun(1000, func() { p := pk; h.interceptDelivery(ic, cl, &p) }); n != 0 {
		t.Fatalf("%.0f allocations per delivery that no interceptor changes (a PUBLISH with 2 user properties), want 0", n)
	}
}

// TestPublishUnchangedAllocatesNothing: an inbound PUBLISH no interceptor
// changes costs no allocation in interceptPublish, user properties
// included; the packet is changed in place, so it must stay on the
// caller's stack (a pointer to it leaking would allocate its 800 bytes
// per message).
func TestPublishUnchangedAllocatesNothing(t *testing.T) {
	h := &hook{ext: Extensions{Interceptors: passing{}}}
	cl := &mqtt.Client{ID: "pub"}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", Payload: []byte("x"), PacketID: 1,
		Properties: packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}, {Key: "k2", Val: "v2"}}}}
	h.clients.Store(cl, &clientState{peer: Peer{ID: "pub", ProtocolVersion: 5}})
	ic := h.interceptors(InterceptPublishInbound)
	n := testing.AllocsPerRun(1000, func() {
		p := pk
		if err := h.interceptPublish(ic, cl, &p); err != nil {
			t.Fatalf("interceptPublish refused an unchanged PUBLISH: %v", err)
		}
	})
	if n != 0 {
		t.Fatalf("%.0f allocations per PUBLISH that no interceptor changes (2 user properties), want 0", n)
	}
}
