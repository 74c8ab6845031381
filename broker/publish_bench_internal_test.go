package broker

import (
	"log/slog"
	"sync/atomic"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// allowing authorizes every PUBLISH and SUBSCRIBE.
type allowing struct{}

func (allowing) AuthorizePublish(*Publish) Verdict     { return Verdict{Decision: Allow} }
func (allowing) AuthorizeSubscribe(*Subscribe) Verdict { return Verdict{Decision: Allow} }

// BenchmarkOnPublishIntercepted measures the broker's own part of an
// incoming QoS 0 PUBLISH (OnPublish: authorization, interception,
// stamping), without a network, mochi's delivery or a Wasm call: with no
// Interceptors and with one that changes nothing (passing), whose
// difference is what the broker pays per intercepted PUBLISH around the
// host's call. CPU-bound and deterministic, unlike BenchmarkPublishIntercepted.
func BenchmarkOnPublishIntercepted(b *testing.B) {
	for _, tc := range []struct {
		name string
		ic   Interceptors
	}{{"none", nil}, {"noop-inbound", passing{}}} {
		b.Run(tc.name, func(b *testing.B) {
			var cfg atomic.Pointer[config.Config]
			cfg.Store(&config.Config{})
			h := &hook{ext: Extensions{Interceptors: tc.ic}, log: slog.New(slog.DiscardHandler), cfg: &cfg}
			cl := &mqtt.Client{ID: "sensor-1"}
			h.clients.Store(cl, &clientState{authz: allowing{}, peer: Peer{ID: "sensor-1", ProtocolVersion: 5}})
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "devices/sensor-1/temperature",
				Payload: []byte(`{"t":21.5}`), Properties: packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}}}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.OnPublish(cl, pk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// unmatched is an outbound interceptor whose filters match no delivery.
type unmatched struct{ passing }

func (unmatched) WantsDelivery(string, string) bool { return false }

// BenchmarkEncodeDelivery measures the broker's own part of one QoS 0
// delivery about to be written (OnPacketEncode), without a network or a
// Wasm call: with no Interceptors, with an outbound interceptor whose
// filters match nothing (unmatched: what such an extension costs a
// delivery, besides the host's filter test, host
// BenchmarkInterceptDelivery), and with one that is called and changes
// nothing (passing).
func BenchmarkEncodeDelivery(b *testing.B) {
	for _, tc := range []struct {
		name string
		ic   Interceptors
	}{{"none", nil}, {"unmatched-outbound", unmatched{}}, {"noop-outbound", passing{}}} {
		b.Run(tc.name, func(b *testing.B) {
			h := &hook{ext: Extensions{Interceptors: tc.ic}, log: slog.New(slog.DiscardHandler)}
			cl := &mqtt.Client{ID: "subscriber-1"}
			h.clients.Store(cl, &clientState{peer: Peer{ID: "subscriber-1", ProtocolVersion: 5}})
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "devices/sensor-1/temperature",
				Origin: "sensor-1", Payload: []byte(`{"t":21.5}`), Properties: packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}}}}
			b.ReportAllocs()
			for b.Loop() {
				if out := h.OnPacketEncode(cl, pk); out.TopicName != pk.TopicName {
					b.Fatal("delivery changed")
				}
			}
		})
	}
}
