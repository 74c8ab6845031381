package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// The retained message of the level a multi-level wildcard hangs off.
//
// MQTT 5 4.7.1.2 (and 3.1.1 4.7.1.2): "sport/#" also matches "sport", so a
// new subscription to sport/# is sent the retained message of sport
// (3.8.4, [MQTT-3.3.1-9]). mochi sends a new subscription the retained
// messages its topic tree scan finds (Topics.Messages), and that scan
// never returns the level the # hangs off. The hook sends those from
// OnSubscribed, the last seam before mochi writes the SUBACK (MQTT 5 3.8.4
// lets the server send matching PUBLISH packets before it), with mochi's
// rules for a retained message at subscribe time: the Retain flag set,
// retain handling 1 (only for a new subscription) and 2 (never), no
// retained messages for a shared subscription (4.8.2), No Local, the
// subscription's QoS and identifier, and the client's read check
// (OnACLCheck, as mochi asks it). The upstream fix would be in mochi's
// scan: for a # at depth d, also take the retained message of the node it
// hangs off.

// sendParentRetained sends cl, for each filter of the SUBSCRIBE pk granted
// (codes below 0x80) that ends in "/#", the retained messages on the
// topics its # hangs off (the filter without "/#": one topic, or those
// matching its single-level wildcards). Called from OnSubscribed on the
// client's reading goroutine, after the reason codes are final.
func (h *hook) sendParentRetained(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline || h.mochi.Topics.Retained.Len() == 0 {
		return
	}
	st := h.state(cl)
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 || !strings.HasSuffix(f.Filter, "/#") {
			continue
		}
		if _, _, shared := topic.SplitShared(f.Filter); shared {
			continue
		}
		existed := st != nil && st.sub.existedBefore(f.Filter)
		if f.RetainHandling == 2 || (f.RetainHandling == 1 && existed) {
			continue
		}
		sub, ok := cl.State.Subscriptions.Get(f.Filter) // gone when the store refused it
		if !ok {
			continue
		}
		parent := strings.TrimSuffix(f.Filter, "/#")
		var msgs []packets.Packet
		if !strings.Contains(parent, "+") {
			if m, ok := h.mochi.Topics.Retained.Get(parent); ok {
				msgs = append(msgs, m)
			}
		} else {
			msgs = h.mochi.Topics.Messages(parent) // topics of exactly the parent's depth
		}
		now := time.Now().Unix()
		for j := range msgs {
			m := &msgs[j]
			if len(m.Payload) == 0 || (m.Expiry > 0 && m.Expiry <= now) || !topic.Match(f.Filter, m.TopicName) {
				continue
			}
			if sub.NoLocal && m.Origin == cl.ID { // [MQTT-3.8.3-3]
				continue
			}
			if !h.mayRead(cl, m.TopicName) {
				continue
			}
			out := m.Copy(false)
			out.FixedHeader.Retain = true
			out.FixedHeader.Qos = min(out.FixedHeader.Qos, sub.Qos, h.mochi.Options.Capabilities.MaximumQos)
			out.Properties.SubscriptionIdentifier = nil
			if sub.Identifier > 0 {
				out.Properties.SubscriptionIdentifier = []int{sub.Identifier}
			}
			if err := h.sendCopy(cl, out); err != nil {
				h.log.Debug("retained message of a # subscription's parent topic not sent", "client", cl.ID, "topic", m.TopicName, "error", err)
			}
		}
	}
}

// sendCopy sends cl one PUBLISH meant for it alone, the way mochi's
// unexported publishToClient does with the send quota off (see
// sendquota.go): a QoS 1/2 copy gets a packet id and goes into the
// session's in-flight map (stored by saveInflight for a persistent
// session, resent at the next connection), and a connected client is
// written the PUBLISH at once (through the outConn, which holds it while
// the client's in-flight window is full). A QoS 1/2 copy is dropped
// (counted) when the in-flight map is full; a QoS 0 copy to an offline
// client is dropped. It returns mochi's error for a packet id it could
// not give or a failed write.
func (h *hook) sendCopy(cl *mqtt.Client, pk packets.Packet) error {
	if pk.FixedHeader.Qos > 0 {
		if cl.State.Inflight.Len() >= int(h.mochi.Options.Capabilities.MaximumInflight) {
			atomic.AddInt64(&h.mochi.Info.InflightDropped, 1)
			return nil
		}
		id, err := cl.NextPacketID()
		if err != nil {
			atomic.AddInt64(&h.mochi.Info.InflightDropped, 1)
			return fmt.Errorf("no packet id: %w", err)
		}
		pk.PacketID = uint16(id)
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&h.mochi.Info.Inflight, 1)
			h.saveInflight(cl, pk)
		}
	}
	if cl.Closed() {
		return nil // queued (QoS 1/2) or dropped (QoS 0), as for any message
	}
	if err := cl.WritePacket(pk); err != nil && !errors.Is(err, mqtt.ErrConnectionClosed) {
		return err
	}
	return nil
}
