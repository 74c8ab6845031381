package broker

import (
	"sort"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file gives every accepted PUBLISH its expiry and ordering key, and
// keeps a resumed session's queued messages in publish order.

// nextSeq returns the next ordering key: a broker-wide counter, strictly
// increasing across restarts (restore starts it above every stored key). It
// goes into packets.Packet.Created, which mochi uses only to order a
// client's in-flight messages, by its low 16 bits (Propolis disables mochi's
// Created-based expiry and sets Expiry itself). A dense counter keeps those
// 16 bits in order except across a wrap, every 65,536 messages. Safe from
// any goroutine; one atomic add.
func (h *hook) nextSeq() int64 { return h.seq.Add(1) }

// stampPublish sets the expiry and ordering key of a client's PUBLISH that
// was authorized. OnPublish calls it on the publisher's goroutine.
//
// Expiry is the message's own interval, capped by max_message_expiry, as an
// absolute Unix time. ProtocolVersion 5 on the stored copy makes mochi's
// expiry sweeps honour Expiry for messages from 3.1.1 publishers too; it is
// not used to encode.
func (h *hook) stampPublish(pk *packets.Packet) {
	exp := int64(pk.Properties.MessageExpiryInterval)
	if limit := h.maxMsgExpiry(); limit > 0 && (exp == 0 || exp > limit) {
		exp = limit
	}
	pk.Expiry = 0
	if exp > 0 {
		pk.Expiry = time.Now().Unix() + exp
		pk.ProtocolVersion = 5
	}
	pk.Created = h.nextSeq()
}

// stampInline stamps a publish of the broker's own inline client. A pending
// message being re-published at start-up (h.replay, see
// Server.republishPending) keeps the ordering key and expiry it was stored
// with; any other (a crash will, Server.Publish) gets a new ordering key and
// keeps the expiry mochi set from its interval. Either way ProtocolVersion 5
// makes mochi's sweeps honour the expiry (see stampPublish).
func (h *hook) stampInline(pk *packets.Packet) {
	if r := h.replay; r != nil {
		pk.Created, pk.Expiry = r.Created, r.Expiry
	} else {
		pk.Created = h.nextSeq()
	}
	if pk.Expiry > 0 {
		pk.ProtocolVersion = 5
	}
}

// renumberInflight rewrites Created of cl's in-flight messages to 0..n-1,
// keeping their order. OnPacketEncode calls it on the client's goroutine
// just before mochi resends a resumed session's queue: mochi sorts in-flight
// messages by the low 16 bits of Created, so giving them 0..n-1 in their
// true order makes the resend come out in publish order.
func renumberInflight(cl *mqtt.Client) {
	all := cl.State.Inflight.GetAll(false)
	if len(all) < 2 {
		return
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Created < all[j].Created })
	for i := range all {
		all[i].Created = int64(i)
		cl.State.Inflight.Set(all[i])
	}
}
