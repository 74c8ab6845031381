package broker

import (
	"log/slog"
	"math"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file enforces the broker's Receive Maximum: how many QoS 1 and 2
// PUBLISH packets a client may have sent that the broker has not answered
// with a PUBACK or PUBCOMP (MQTT 5, 3.3.4 and 4.9; the CONNACK announces
// it). A client sending one more is disconnected with 0x93, "receive
// maximum exceeded".
//
// mochi keeps a quota of its own, which is wrong in two ways (RATIONALE.md,
// "Why does the broker count the Receive Maximum itself?"): a QoS 0
// PUBLISH arriving while the quota is used up disconnects the client, and
// the client's PUBREC for a QoS 2 message the broker sent it takes from the
// same quota. So mochi's quota is lifted (OnSessionEstablished) and the
// hook counts:
//
//   - a QoS 1 PUBLISH is answered before the next packet is read, so only
//     QoS 2 flows stay open: the packet ids the broker has sent a PUBREC
//     with a success code for and not yet a PUBCOMP (inboundQuota.sent,
//     from OnPacketEncode, which sees every packet written, including the
//     PUBRECs a resumed session resends);
//   - a QoS 1 or 2 PUBLISH with a new packet id, arriving when that many
//     are open, is refused in OnPacketRead, before mochi handles it
//     (inboundQuota.admit).
//
// A client resending the PUBLISH of an open flow (it did not get the
// PUBREC, or reconnected) is within the quota. mochi answers such a resend
// with PUBREC 0x91, "packet identifier in use", without delivering it
// again, and keeps the flow open. The answer breaks [MQTT-4.3.3-10] (until
// the PUBREL the receiver acknowledges any PUBLISH with the same packet id
// with a PUBREC) and tells the client that a message delivered once
// failed, so it may send it again under a new id: a duplicate. So
// OnPacketEncode turns that PUBREC into the success one mochi first sent
// (inboundQuota.resent), and the flow stays open.

// inboundQuota counts one connection's open inbound QoS 2 flows. It lives
// in the connection's clientState; the client's goroutine uses it (reads,
// and the acknowledgements it writes), the mutex guards it anyway.
type inboundQuota struct {
	mu   sync.Mutex
	max  int                 // the Receive Maximum announced to the client
	open map[uint16]struct{} // packet ids answered with PUBREC, awaiting PUBREL
}

// admit reports whether a QoS 1 or 2 PUBLISH with packet id id is within
// the quota: a retransmission of an open flow is, a new one only while
// fewer than max flows are open.
func (q *inboundQuota) admit(id uint16) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.open[id]; ok {
		return true
	}
	return len(q.open) < q.max
}

// resent turns mochi's answer to a resent PUBLISH of an open QoS 2 flow,
// PUBREC 0x91 "packet identifier in use", into a success PUBREC without a
// reason string (see the top of this file); any other packet is returned
// as it is.
func (q *inboundQuota) resent(pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Pubrec || pk.ReasonCode != packets.ErrPacketIdentifierInUse.Code {
		return pk
	}
	q.mu.Lock()
	_, open := q.open[pk.PacketID]
	q.mu.Unlock()
	if open {
		pk.ReasonCode = packets.CodeSuccess.Code
		pk.Properties.ReasonString = ""
	}
	return pk
}

// sent records an acknowledgement written to the client: a PUBREC with a
// success code opens a flow, a PUBCOMP ends it (a PUBREC with a code of
// 0x80 or more ends the flow at once, MQTT 5, 4.3.3).
func (q *inboundQuota) sent(pk packets.Packet) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case pk.FixedHeader.Type == packets.Pubrec && pk.ReasonCode < 0x80:
		if q.open == nil {
			q.open = make(map[uint16]struct{})
		}
		q.open[pk.PacketID] = struct{}{}
	default:
		delete(q.open, pk.PacketID)
	}
}

// checkReceiveMaximum is OnPacketRead for a PUBLISH: a QoS 1 or 2 one
// beyond cl's quota disconnects cl with 0x93 and is rejected (mochi then
// ends the connection without handling it). It reports whether the packet
// may go on. The broker's inline client and unauthenticated clients pass.
func (h *hook) checkReceiveMaximum(cl *mqtt.Client, pk *packets.Packet) bool {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		return true
	}
	st := h.state(cl)
	if st == nil || st.recv.admit(pk.PacketID) {
		return true
	}
	h.disconnectLogged(cl, packets.ErrReceiveMaximum.Code, packets.ErrReceiveMaximum.Reason, "receive maximum exceeded", slog.String("topic", pk.TopicName))
	return false
}

// liftMochiQuota turns mochi's own receive quota off for cl (see the top
// of this file): OnSessionEstablished calls it, after mochi has set the
// quota for a new or resumed session and before it reads the client's
// first packet.
func liftMochiQuota(cl *mqtt.Client) {
	cl.State.Inflight.ResetReceiveQuota(math.MaxInt32)
}
