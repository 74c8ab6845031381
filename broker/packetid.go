package broker

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file keeps a client's packet ids apart from the broker's.
//
// MQTT gives each direction its own packet ids: the client numbers its
// PUBLISH (QoS 1/2), SUBSCRIBE and UNSUBSCRIBE packets, the broker numbers
// its deliveries, and neither knows the other's (MQTT 5, 2.2.1; MQTT
// 3.1.1, 2.3.1). mochi keeps both directions' open flows in one map per
// session, cl.State.Inflight, keyed by the id alone. So when a client's id
// X is that of a delivery the client has not finished (an entry of type
// PUBLISH, or a PUBREL the broker sent), mochi:
//
//   - refuses a SUBSCRIBE or UNSUBSCRIBE X with 0x91 (which 3.1.1 has not);
//   - takes a QoS 1 PUBLISH X as ending the delivery X: the delivery is
//     gone from the session and never resent;
//   - replaces the delivery X with the PUBREC of a QoS 2 PUBLISH X, in
//     memory and in the store (keyed by client and id too);
//   - lets a PUBREL X complete the delivery X.
//
// The hook therefore renames such a flow of the client: OnPacketRead gives
// the packet an alias, an id free in Inflight and used by no other alias,
// before mochi (and the Receive Maximum count, receive.go) sees it, and
// OnPacketEncode gives the answers (PUBACK, PUBREC, PUBCOMP, SUBACK,
// UNSUBACK) the client's id back. Inside the broker, mochi's Inflight, the
// store (saveInflight, inflightAcked) and inboundQuota only ever see the
// alias; outConn sees the client's id on the wire, and reads only the
// client's PUBACK, PUBREC and PUBCOMP, which carry the broker's ids and are
// never renamed.
//
// An alias lives until the answer that ends its flow is written: the
// PUBACK, SUBACK or UNSUBACK, and for QoS 2 the PUBCOMP (or a PUBREC with
// an error code). A resent PUBLISH (DUP) or a PUBREL of an open QoS 2 flow
// finds its alias while mochi keeps the flow's PUBREC under it; an alias
// whose flow mochi no longer has (its packet was refused without an
// answer) is forgotten when the client's id comes again. An id of the
// client that is itself another flow's alias is renamed too, so that one
// id in Inflight names one flow. A PUBREC entry under the client's own id
// is the client's QoS 2 flow, and a resent PUBLISH of it goes to mochi
// unchanged (receive.go answers it).
//
// The aliases live per session (client id), in memory: they survive a
// reconnection, when mochi resends the PUBREC of an open QoS 2 flow, and
// not a restart (see RATIONALE.md, "Why does the broker rename a client's
// packet ids?").

// packetIDs is one session's aliases. Its methods are called on the
// client's goroutine (OnPacketRead and the answers it writes) and on the
// goroutine of a connection resuming the session; mu guards the maps, n
// lets the hot path skip mu while there is no alias.
type packetIDs struct {
	n     atomic.Int32 // len(alias)
	mu    sync.Mutex
	alias map[uint16]uint16 // the client's id -> its alias
	owner map[uint16]uint16 // alias -> the client's id
	next  uint16            // where the search for a free alias starts
}

// sessionIDs returns the aliases of client id's session, made if needed.
func (h *hook) sessionIDs(id string) *packetIDs {
	if v, ok := h.ids.Load(id); ok {
		return v.(*packetIDs)
	}
	v, _ := h.ids.LoadOrStore(id, &packetIDs{})
	return v.(*packetIDs)
}

// keepIDs hands cl's connection its session's aliases; OnSessionEstablish
// calls it, after forgetting those of a session that is not resumed.
func (h *hook) keepIDs(cl *mqtt.Client) {
	if st := h.state(cl); st != nil {
		st.ids = h.sessionIDs(cl.ID)
	}
}

// clientsID reports whether an inbound packet carries an id the client
// chose: a PUBLISH of QoS 1 or 2, a PUBREL, a SUBSCRIBE or an UNSUBSCRIBE.
func clientsID(pk *packets.Packet) bool {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return pk.FixedHeader.Qos > 0
	case packets.Pubrel, packets.Subscribe, packets.Unsubscribe:
		return true
	}
	return false
}

// brokers reports whether an Inflight entry is a flow the broker started:
// a delivery awaiting PUBACK or PUBREC, or the PUBREL the broker sent for
// one (mochi sets a Pubrel entry only in processPubrec).
func brokers(e packets.Packet) bool {
	return e.FixedHeader.Type == packets.Publish || e.FixedHeader.Type == packets.Pubrel
}

// brokersAt reports whether cl's Inflight holds a flow of the broker under
// id.
func brokersAt(cl *mqtt.Client, id uint16) bool {
	e, ok := cl.State.Inflight.Get(id)
	return ok && brokers(e)
}

// renameInbound is OnPacketRead for a packet carrying the client's id
// (clientsID): it gives pk its flow's alias, or a new one when the id is
// that of a flow of the broker or of another alias. While the session has
// no alias it costs a read of Inflight's size, and one Inflight lookup
// when that is not 0 (BenchmarkRenameInbound).
func (h *hook) renameInbound(cl *mqtt.Client, pk *packets.Packet) {
	st := h.state(cl)
	if st == nil || st.ids == nil {
		return
	}
	ids, id := st.ids, pk.PacketID
	if ids.n.Load() == 0 && (cl.State.Inflight.Len() == 0 || !brokersAt(cl, id)) {
		return
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if a, ok := ids.alias[id]; ok {
		if e, open := cl.State.Inflight.Get(a); open && e.FixedHeader.Type == packets.Pubrec {
			pk.PacketID = a // a resent PUBLISH or the PUBREL of the flow
			if pk.FixedHeader.Type == packets.Pubrel && pk.ReasonCode >= 0x80 {
				ids.forget(a) // mochi ends the flow without a PUBCOMP
			}
			return
		}
		ids.forget(a) // its flow is gone
	}
	if _, aliased := ids.owner[id]; !aliased && !brokersAt(cl, id) {
		return
	}
	if a, ok := ids.take(cl, id); ok {
		pk.PacketID = a
	}
}

// take gives the client's id an alias: an id other than 0, free in cl's
// Inflight and not an alias already, searched downwards (mochi numbers its
// deliveries upwards from 1). It reports false when there is none (65,535
// flows open), and the packet then keeps its id. ids.mu is held.
func (ids *packetIDs) take(cl *mqtt.Client, id uint16) (uint16, bool) {
	if ids.alias == nil {
		ids.alias = make(map[uint16]uint16)
		ids.owner = make(map[uint16]uint16)
	}
	a := ids.next
	for range 65535 {
		if a == 0 {
			a = 65535
		}
		_, used := ids.owner[a]
		if _, busy := cl.State.Inflight.Get(a); !used && !busy && a != id {
			ids.alias[id], ids.owner[a] = a, id
			ids.n.Store(int32(len(ids.alias)))
			ids.next = a - 1
			return a, true
		}
		a--
	}
	return 0, false
}

// forget drops alias a. ids.mu is held.
func (ids *packetIDs) forget(a uint16) {
	id, ok := ids.owner[a]
	if !ok {
		return
	}
	delete(ids.owner, a)
	delete(ids.alias, id)
	ids.n.Store(int32(len(ids.alias)))
}

// renamed reports whether pk is the PUBREC of a QoS 2 flow of the client
// that runs under an alias. saveInflight does not store it: the aliases
// are kept in memory only, and after a restart the record would be a
// PUBREC under an id the client never used, resent at each reconnection
// and taking the client's next PUBLISH with that id for a resend of it
// (not delivered). Without the record, the restarted broker answers the
// client's PUBREL with a PUBCOMP (0x92 for MQTT 5), and delivers again a
// PUBLISH the client resends because it never got the PUBREC.
func (h *hook) renamed(cl *mqtt.Client, pk packets.Packet) bool {
	if pk.FixedHeader.Type != packets.Pubrec {
		return false
	}
	st := h.state(cl)
	if st == nil || st.ids == nil || st.ids.n.Load() == 0 {
		return false
	}
	st.ids.mu.Lock()
	_, ok := st.ids.owner[pk.PacketID]
	st.ids.mu.Unlock()
	return ok
}

// renameAnswer is OnPacketEncode for an answer to a client's flow (a
// PUBACK, PUBREC, PUBCOMP, SUBACK or UNSUBACK): one written under an alias
// gets the client's id back. A SUBACK, an UNSUBACK or a refusing PUBREC
// ends the flow here, and its alias is dropped. A PUBACK or PUBCOMP ends
// it only once written: mochi keeps it in the session until then, and
// resends it at the next connection when the write failed, which must
// find the alias still; aliasEnded drops it when mochi completes the flow.
func (h *hook) renameAnswer(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	st := h.state(cl)
	if st == nil || st.ids == nil || st.ids.n.Load() == 0 {
		return pk
	}
	ids := st.ids
	ids.mu.Lock()
	defer ids.mu.Unlock()
	id, ok := ids.owner[pk.PacketID]
	if !ok {
		return pk
	}
	switch pk.FixedHeader.Type {
	case packets.Suback, packets.Unsuback:
		ids.forget(pk.PacketID)
	case packets.Pubrec:
		if pk.ReasonCode >= 0x80 {
			ids.forget(pk.PacketID)
		}
	}
	pk.PacketID = id
	return pk
}

// aliasEnded is OnQosComplete for a client's flow that ran under an alias:
// the PUBACK the broker wrote for a QoS 1 PUBLISH (Created set: the
// broker's own packet, not a client's PUBACK of a delivery), or the
// client's PUBREL of a QoS 2 flow, once mochi wrote its PUBCOMP and
// dropped it from the session. The alias is free again.
func (h *hook) aliasEnded(cl *mqtt.Client, pk packets.Packet) {
	if !(pk.FixedHeader.Type == packets.Puback && pk.Created != 0) && pk.FixedHeader.Type != packets.Pubrel {
		return
	}
	st := h.state(cl)
	if st == nil || st.ids == nil || st.ids.n.Load() == 0 {
		return
	}
	st.ids.mu.Lock()
	st.ids.forget(pk.PacketID)
	st.ids.mu.Unlock()
}
