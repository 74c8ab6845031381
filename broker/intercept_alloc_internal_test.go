package broker

import (
	"context"
	"log/slog"
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

// asking is an outbound interceptor that records what WantsDelivery was
// asked, answers want (or panics), and renames the topic of every delivery
// it is given.
type asking struct {
	passing
	want, panics bool
	asked        [][2]string
	called       int
}

func (a *asking) WantsDelivery(clientID, topic string) bool {
	a.asked = append(a.asked, [2]string{clientID, topic})
	if a.panics {
		panic("filter test failed")
	}
	return a.want
}

func (a *asking) InterceptDelivery(_ Peer, _ string, m *Message) Prevented {
	a.called++
	m.Topic = "renamed/" + m.Topic
	return Prevented{}
}

// TestDeliveryAsksWantsDelivery: the broker asks WantsDelivery with the
// subscriber's client id and the PUBLISH's topic; for false it calls no
// interceptor, writes the PUBLISH unchanged and allocates nothing; for
// true, and when WantsDelivery panics, the interceptor runs.
func TestDeliveryAsksWantsDelivery(t *testing.T) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a/b", Payload: []byte("x"), PacketID: 1}
	cl := &mqtt.Client{ID: "sub"}
	for _, tc := range []struct {
		name         string
		want, panics bool
		topic        string
	}{
		{"declined", false, false, "a/b"},
		{"wanted", true, false, "renamed/a/b"},
		{"filter test panics", false, true, "renamed/a/b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic := &asking{want: tc.want, panics: tc.panics}
			h := &hook{ext: Extensions{Interceptors: ic}, log: slog.New(slog.DiscardHandler)}
			p := pk
			h.interceptDelivery(h.interceptors(InterceptPublishOutbound), cl, &p)
			if len(ic.asked) != 1 || ic.asked[0] != [2]string{"sub", "a/b"} {
				t.Errorf("WantsDelivery asked %q, want once (sub, a/b)", ic.asked)
			}
			if p.TopicName != tc.topic {
				t.Errorf("delivered on %q, want %q (InterceptDelivery called %d times)", p.TopicName, tc.topic, ic.called)
			}
		})
	}
	ic := &asking{asked: make([][2]string, 0, 2000)}
	h := &hook{ext: Extensions{Interceptors: ic}}
	if n := testing.AllocsPerRun(1000, func() { p := pk; h.interceptDelivery(ic, cl, &p) }); n != 0 {
		t.Fatalf("%.0f allocations per declined delivery, want 0", n)
	}
}
