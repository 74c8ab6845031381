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

// A delayed will mochi holds for a client id of this node is dropped when
// another node of the cluster takes the id over within the delay
// (MQTT-3.1.3-9: the client came back, elsewhere). The hook notes each
// delayed will mochi queued (noteMochiWill, from OnDisconnect) until its
// delay is over or a connection of the id is established here (mochi
// drops the will then); ClaimedElsewhere makes mochi drop a noted one the
// way a DISCONNECT of the client id would (processDisconnect deletes the
// id's delayed will), through a throwaway inline client of that id.

// noteMochiWill records, in a cluster, that mochi queued the delayed will
// of cl (its read loop ended with err, so sendLWT ran), until its delay
// is over.
func (h *hook) noteMochiWill(cl *mqtt.Client, err error) {
	if h.cluster == nil || err == nil || cl.Net.Inline {
		return
	}
	w := &cl.Properties.Will
	if atomic.LoadUint32(&w.Flag) == 0 || w.WillDelayInterval == 0 {
		return
	}
	mark := new(int) // this will's own mark, for the clean-up below
	h.mochiWills.Store(cl.ID, mark)
	time.AfterFunc(time.Duration(w.WillDelayInterval)*time.Second+time.Second, func() {
		h.mochiWills.CompareAndDelete(cl.ID, mark) // published by now
	})
}

// ClaimedElsewhere tells the broker that another node of the cluster took
// clientID over while this node holds no connection of it: the delayed
// will of its last connection here, if one is pending, is not published
// (the client reconnected within the delay, on another node). Called by
// the cluster (cluster/owner.go) on its KV watch's goroutine.
func (s *Server) ClaimedElsewhere(clientID string) {
	h := s.hook
	if h.cluster == nil {
		return
	}
	h.delayedWills.Delete(clientID) // clusterWill's: not forwarded
	if _, ok := h.mochiWills.LoadAndDelete(clientID); !ok {
		return
	}
	if cl, ok := s.mochi.Clients.Get(clientID); ok && !cl.Closed() {
		return // connected here again meanwhile: mochi dropped the will itself
	}
	// A DISCONNECT processed for the id deletes mochi's delayed will of
	// the id [MQTT-3.1.2-8]; the client it comes from is a throwaway
	// inline one (no connection, in no map).
	fake := s.mochi.NewClient(nil, "", clientID, true)
	_ = s.mochi.InjectPacket(fake, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	h.log.Info("delayed will dropped: the client id connected on another node within the delay", "client", clientID)
}
