package broker

import (
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Delayed wills of sessions that end with their connection, in a cluster.
//
// mochi publishes a delayed will (sendLWT, then sendDelayedLWT once the
// delay is over) to its local subscribers, but reports it (OnWillSent,
// which forwards it to the cluster) only if the client is still in its
// client map then. A session that ends with its connection (MQTT 5
// Session Expiry 0, 3.1.1 clean session) is removed from the map at
// once, so its will never left the node. The hook keeps such a will
// itself (clusterWill) and forwards it when the delay is over, unless a
// connection of the client id was established meanwhile (MQTT-3.1.3-9:
// OnSessionEstablished cancels it, cancelClusterWill). Local delivery
// stays mochi's.

// clusterWill is called by OnDisconnect: in a cluster, a delayed will
// that mochi queued (err is the read loop's error, so sendLWT ran) for a
// session ending now (expire, not taken over) is forwarded after its
// delay by the hook's own timer.
func (h *hook) clusterWill(cl *mqtt.Client, err error, expire bool) {
	if h.cluster == nil || err == nil || !expire || cl.IsTakenOver() || cl.Net.Inline {
		return
	}
	w := cl.Properties.Will
	if atomic.LoadUint32(&w.Flag) == 0 || w.WillDelayInterval == 0 {
		return
	}
	pk := willPacket(&w, cl.ID)
	h.delayedWills.Store(cl.ID, cl)
	after := h.willTimer
	if after == nil {
		after = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	after(time.Duration(w.WillDelayInterval)*time.Second, func() {
		if !h.delayedWills.CompareAndDelete(cl.ID, cl) || h.closed.Load() {
			return // a connection of the id came (and maybe left) meanwhile
		}
		if _, ok := h.mochi.Clients.Get(cl.ID); ok {
			return // a connection of the id is there: mochi dropped the will, or reports it
		}
		_ = h.forward(&pk, cl.ID) // logged; a will has nobody to refuse
	})
}

// cancelClusterWill drops the delayed will clusterWill keeps for id: a
// connection of the id was established within the delay.
func (h *hook) cancelClusterWill(id string) {
	if h.cluster != nil {
		h.delayedWills.Delete(id)
	}
}

// willPacket is the PUBLISH of will w of client id, as mochi builds it.
func willPacket(w *mqtt.Will, id string) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: w.Qos, Retain: w.Retain},
		TopicName: w.TopicName, Payload: w.Payload, Origin: id, Properties: packets.Properties{User: w.User},
		PacketID: 1} // required by validation for QoS > 0; the inline client sends no ack
}
