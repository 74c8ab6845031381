package broker

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file enforces the client's Receive Maximum on what the broker sends:
// an MQTT 5 client that announced one in its CONNECT has at most that many
// QoS 1 and 2 PUBLISH packets from the broker unacknowledged
// ([MQTT-3.3.4-9]; a QoS 1 one until its PUBACK, a QoS 2 one until its
// PUBCOMP or a PUBREC with a code of 0x80 or more).
//
// mochi's own send quota is turned off for every connection
// (ResetSendQuota(0)), because it deadlocks (RATIONALE.md, "Why does the
// broker count the client's Receive Maximum itself?"): with a quota left
// and messages in flight, mochi calls Inflight.NextImmediate after each
// packet the client sends, which read-locks the in-flight map twice; a
// publisher locking it for writing in between blocks the client's
// goroutine and every publisher to that client for good. With the quota at
// 0 and its maximum at 0, mochi never calls NextImmediate, never parks a
// delivery as "immediate", and sends every delivery at once.
//
// The outConn under the connection counts instead (outConn.limitSends): it
// sees every packet mochi writes and every packet the client sends. A QoS
// 1 or 2 PUBLISH written while the client has its Receive Maximum of them
// unacknowledged is held, and held ones go out in the order they came as
// the client's acknowledgements arrive. Only those PUBLISH packets wait:
// QoS 0 PUBLISH packets and every other packet (acknowledgements,
// PINGRESP, SUBACK, PUBREL, DISCONNECT) go out at once. MQTT orders
// deliveries per topic and QoS (4.6), so a QoS 0 message overtaking a held
// QoS 1 message is allowed, and QoS 1 and 2 messages keep their order among
// themselves. Held bytes do not count against mqtt.max_outbound_buffer:
// that limit finds a client that does not read, while a held message waits
// for the client's acknowledgement of an earlier one, at round-trip pace;
// held messages are bounded in number by mqtt.max_queued_messages (mochi
// refuses a delivery beyond it, see MaximumInflight; a held message mochi
// drops leaves the held ones too, forgetHeld). A held message is in
// mochi's in-flight map and in the store already: if the connection ends
// first, a persistent session sends it at the next connection (without
// DUP, see endHeldLocked), where the resends are counted and held in the
// same way. A released message goes out with the expiry it has left, or
// not at all (releaseLocked), and never with a packet id the client holds
// unacknowledged (gateLocked).
//
// mochi clamps the Receive Maximum it keeps in the client's properties to
// mqtt.max_queued_messages, and resets its send quota from that value when
// a session is resumed (inheritClientSession), after the hooks have run
// and after the client is visible to publishers. So OnConnect moves that
// value to the outConn (inflightWindow reads it there) and leaves 0 in its
// place: no publisher can ever see a quota above 0. OnConnect does it
// before the client is in the hook's table, where other goroutines
// (Server.Close, the services) may read its properties.

// takeSendQuota turns mochi's send quota off for cl and has the outConn
// enforce the Receive Maximum of pk, cl's CONNECT, instead.
// OnConnect calls it first, after mochi parsed the CONNECT and before it
// inherits a session and makes cl visible to publishers. A connection
// that is not an outConn (none is, outside tests of mochi alone) keeps
// mochi's quota.
// expired is told the packet ids of held deliveries dropped as expired
// (see releaseLocked), unsent the ones still held when the connection ends
// (endHeldLocked).
func takeSendQuota(cl *mqtt.Client, pk packets.Packet, expired, unsent func(ids []uint16)) {
	oc, ok := cl.Net.Conn.(*outConn)
	if !ok {
		return
	}
	oc.window.Store(uint32(cl.Properties.Props.ReceiveMaximum))
	cl.Properties.Props.ReceiveMaximum = 0
	cl.State.Inflight.ResetSendQuota(0)
	// No outbound topic aliases: mochi gives a topic its alias in the first
	// PUBLISH and sends later ones with the alias alone, so a held delivery
	// that is dropped (expired) or overtaken (QoS 0 goes past held ones)
	// would leave the client with an alias it never learned, a protocol
	// error for it. A window can start at any time (SetInflightWindow), so
	// no connection gets them; the cost is the topic's bytes.
	cl.Properties.Props.TopicAliasMaximum = 0
	oc.mu.Lock()
	oc.quota.expired, oc.quota.unsent = expired, unsent
	oc.mu.Unlock()
	if r := pk.Properties.ReceiveMaximum; pk.ProtocolVersion == 5 && r > 0 {
		oc.mu.Lock()
		oc.quota.announced = r
		oc.mu.Unlock()
		// 65535, the largest value, cannot be exceeded (packet ids are
		// 16-bit): no need to count.
		if r < math.MaxUint16 {
			oc.limitSends(int(r))
		}
	}
}

// heldExpired returns the function cl's outConn calls with the packet ids
// of held deliveries it dropped because their expiry ran out while held
// (releaseLocked, on cl's reader goroutine): each leaves mochi's in-flight
// map and the store, as mochi's expiry sweep would remove it a second or
// so later. An id mochi already removed, or gave to a message without an
// expiry, is left alone.
func (h *hook) heldExpired(cl *mqtt.Client) func(ids []uint16) {
	return func(ids []uint16) {
		for _, id := range ids {
			pk, ok := cl.State.Inflight.Get(id)
			if !ok || pk.FixedHeader.Type != packets.Publish || pk.Expiry <= 0 {
				continue
			}
			if cl.State.Inflight.Delete(id) {
				atomic.AddInt64(&h.mochi.Info.Inflight, -1)
				h.stats.dropped[dropExpired].Add(1)
				h.inflightDropped(cl, pk)
			}
		}
	}
}

// setWindow sets the in-flight window of the live connection to n (at
// least 1), capped by the Receive Maximum the client announced, and returns
// the window in effect (Server.SetInflightWindow). A connection that
// counted nothing starts counting now (the reader follows the client's
// acknowledgements from its next Read, see outConn.Read): deliveries
// already unacknowledged are not counted. Held deliveries the new window
// allows go out at once. Safe from any goroutine.
func (c *outConn) setWindow(n uint16) uint16 {
	c.mu.Lock()
	if a := c.quota.announced; a > 0 {
		n = min(n, a)
	}
	c.window.Store(uint32(n))
	if c.quota.unacked == nil {
		c.quota.unacked = make(map[uint16]struct{}, n)
		c.counting.Store(true)
	}
	c.quota.max = int(n)
	c.releaseLocked(nil)
	return n
}

// inflightWindow returns the in-flight window mochi took from cl's
// Receive Maximum (capped by mqtt.max_queued_messages; 0 when the client
// sent none), wherever takeSendQuota left it.
func inflightWindow(cl *mqtt.Client) uint16 {
	if n := cl.Properties.Props.ReceiveMaximum; n > 0 {
		return n
	}
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		return uint16(oc.window.Load())
	}
	return 0
}

// sendQuota is an outConn's count of the QoS 1 and 2 PUBLISH packets the
// client has not acknowledged, and the ones held back; outConn.mu guards
// it.
type sendQuota struct {
	max       int                 // the client's Receive Maximum, or the window set since; 0: not counted
	announced uint16              // the Receive Maximum of the client's CONNECT; 0: none (MQTT 3.1.1)
	unacked   map[uint16]struct{} // packet ids sent and not yet acknowledged
	waiting   []heldPub           // held PUBLISH packets, oldest first
	waitBytes int                 // bytes in waiting
	// expired is called, without outConn.mu, with the packet ids of held
	// PUBLISH packets whose Message Expiry Interval ran out before they
	// could be sent (see releaseLocked); nil: nobody is told.
	expired func(ids []uint16)
	// unsent is called once, without outConn.mu, with the packet ids of
	// the PUBLISH packets still held when the connection ends (closed or
	// failed): they never reached the client (see endHeldLocked); nil:
	// nobody is told.
	unsent func(ids []uint16)
	// fresh holds the packet ids of the session's messages the previous
	// connection held and never sent (hook.takeUnsent): their resend goes
	// out without DUP (hook.firstSend).
	fresh map[uint16]struct{}
}

// heldPub is a PUBLISH held back by the client's Receive Maximum.
type heldPub struct {
	f  []byte    // the whole packet, a copy that releaseLocked may change
	at time.Time // when it was held (outConn.clock)
}

// limitSends has c count the client's unacknowledged QoS 1 and 2
// deliveries and hold those beyond max. It is called on the reader's
// goroutine before the client's first packet after CONNECT is read.
func (c *outConn) limitSends(max int) {
	c.mu.Lock()
	c.quota.max = max
	c.quota.unacked = make(map[uint16]struct{}, max)
	c.mu.Unlock()
	c.counting.Store(true)
	c.in.acks = make([]uint16, 0, 16)
}

// frameLen returns the length of the MQTT packet at the start of p, or 0
// when p does not start with a whole one.
func frameLen(p []byte) int {
	n, shift := 0, 0
	for i := 1; i < len(p) && i <= 4; i++ {
		n |= int(p[i]&0x7f) << shift
		if p[i]&0x80 == 0 {
			if i+1+n > len(p) {
				return 0
			}
			return i + 1 + n
		}
		shift += 7
	}
	return 0
}

// bodyStart returns the offset of the body of the whole packet f.
func bodyStart(f []byte) int {
	i := 1
	for i < len(f) && f[i]&0x80 != 0 {
		i++
	}
	return i + 1
}

// countedID returns the packet id of f, a whole packet, when it is one
// that takes from the client's quota: a QoS 1 or 2 PUBLISH (held when the
// quota is used up), or a PUBREL with a success code (a QoS 2 flow resent
// after a reconnect, past its PUBREC: it counts until its PUBCOMP, and is
// never held). holdable reports which.
func countedID(f []byte) (id uint16, holdable, ok bool) {
	b := f[bodyStart(f):]
	switch f[0] >> 4 {
	case 3: // PUBLISH
		if (f[0]>>1)&3 == 0 || len(b) < 2 {
			return 0, false, false
		}
		tl := int(b[0])<<8 | int(b[1])
		if len(b) < 2+tl+2 {
			return 0, false, false
		}
		return uint16(b[2+tl])<<8 | uint16(b[3+tl]), true, true
	case 6: // PUBREL
		if len(b) < 2 || len(b) > 2 && b[2] >= 0x80 {
			return 0, false, false
		}
		return uint16(b[0])<<8 | uint16(b[1]), false, true
	}
	return 0, false, false
}

// gateLocked is Write's step for a connection that counts the quota: it
// returns what of p goes out now (p itself when nothing is held) and holds
// the QoS 1 and 2 PUBLISH packets beyond the quota. It is called with c.mu
// held and keeps it; it returns no error today (held bytes are not
// bounded by mqtt.max_outbound_buffer, see above).
func (c *outConn) gateLocked(p []byte) ([]byte, error) {
	q := &c.quota
	var out []byte
	held := false
	now := c.clock()
	for off := 0; off < len(p); {
		n := frameLen(p[off:])
		if n == 0 { // not whole packets: pass the rest on as it is
			if held {
				out = append(out, p[off:]...)
			}
			break
		}
		f := p[off : off+n]
		off += n
		if id, holdable, ok := countedID(f); ok {
			// A PUBLISH whose id the client still holds unacknowledged is
			// a new message with a reused id (mochi forgot the old one,
			// see busyID): it waits for the old one's acknowledgement.
			_, in := q.unacked[id]
			switch {
			case holdable && (in || len(q.waiting) > 0 || len(q.unacked) >= q.max):
				if c.stats != nil {
					c.stats.windowFull.Add(1)
				}
				if !held {
					out = append([]byte(nil), p[:off-n]...)
					held = true
				}
				q.waiting = append(q.waiting, heldPub{f: append([]byte(nil), f...), at: now})
				q.waitBytes += n
				c.wakeReader()
				continue
			case !in: // a PUBLISH, or a PUBREL of a flow resent after a reconnect
				q.unacked[id] = struct{}{}
			}
		}
		if held {
			out = append(out, f...)
		}
	}
	if !held {
		return p, nil
	}
	return out, nil
}

// releaseLocked ends the deliveries the client acknowledged (ids) and
// sends the held PUBLISH packets the quota now allows, oldest first. It is
// called with c.mu held and releases it.
//
// A held PUBLISH goes out as if the broker had sent it now: its Message
// Expiry Interval loses the time it was held ([MQTT-3.3.2-6]), and one
// whose interval ran out meanwhile is dropped, not sent ([MQTT-3.3.2-5]);
// q.expired is told, so that mochi's in-flight entry and the stored copy
// go too. The oldest held PUBLISH waits while the client still holds its
// packet id unacknowledged from an earlier message (busyID), and the ones
// behind it wait with it, so that no two PUBLISH packets with one id are
// in flight at once ([MQTT-2.2.1-3]).
func (c *outConn) releaseLocked(ids []uint16) {
	q := &c.quota
	for _, id := range ids {
		delete(q.unacked, id)
	}
	var out []byte
	var gone []uint16
	now := c.clock()
	for len(q.waiting) > 0 && len(q.unacked) < q.max {
		h := q.waiting[0]
		id, _, _ := countedID(h.f)
		if _, busy := q.unacked[id]; busy {
			break
		}
		q.waiting[0] = heldPub{}
		q.waiting = q.waiting[1:]
		q.waitBytes -= len(h.f)
		if !ageExpiry(h.f, now.Sub(h.at)) {
			gone = append(gone, id)
			continue
		}
		q.unacked[id] = struct{}{}
		out = append(out, h.f...)
	}
	if len(q.waiting) == 0 {
		q.waiting = nil
	}
	expired := q.expired
	if len(out) == 0 || c.err != nil || c.closed {
		c.mu.Unlock()
	} else {
		_, _ = c.sendLocked(out) // a failure is recorded in c.err
	}
	if len(gone) > 0 && expired != nil {
		expired(gone)
	}
}

// forgetHeld drops the held PUBLISH with packet id id, if one waits: mochi
// removed the message from its in-flight map (its expiry sweep, see
// hook.OnQosDropped), so it must not be sent, and mochi may give the id to
// a new message. Safe from any goroutine.
func (c *outConn) forgetHeld(id uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := &c.quota
	for i, h := range q.waiting {
		if hid, _, _ := countedID(h.f); hid == id {
			q.waitBytes -= len(h.f)
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			if len(q.waiting) == 0 {
				q.waiting = nil
			}
			return
		}
	}
}

// endHeldLocked drops the held PUBLISH packets as the connection ends and
// returns a call telling q.unsent their packet ids (nil when there is
// nothing to tell), for the caller to make once c.mu is released. mochi
// keeps the messages in its in-flight map and resends them at the next
// connection with DUP set; the hook clears DUP then for these ids, since
// they were never sent ([MQTT-3.3.1-1]: DUP marks a re-delivery). It is
// called with c.mu held.
func (c *outConn) endHeldLocked() func() {
	q := &c.quota
	ids := make([]uint16, 0, len(q.waiting))
	for _, h := range q.waiting {
		if id, _, ok := countedID(h.f); ok {
			ids = append(ids, id)
		}
	}
	q.waiting, q.waitBytes = nil, 0
	tell := q.unsent
	q.unsent = nil
	if tell == nil {
		return nil
	}
	return func() { tell(ids) }
}

// clock returns the time for held deliveries: c.now when a test set it,
// else time.Now.
func (c *outConn) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// expiryOffset returns the offset in f, a whole MQTT 5 PUBLISH, of the
// 4-byte value of its Message Expiry Interval property, or -1 when it has
// none (or f cannot be followed).
func expiryOffset(f []byte) int {
	i := bodyStart(f)
	if i+2 > len(f) {
		return -1
	}
	i += 2 + (int(f[i])<<8 | int(f[i+1])) // topic name
	if (f[0]>>1)&3 > 0 {
		i += 2 // packet id
	}
	n, k := uvarint(f[i:])
	if k == 0 {
		return -1
	}
	i += k
	end := i + n
	if end > len(f) {
		return -1
	}
	for i < end {
		id := f[i]
		i++
		switch id {
		case 0x01: // payload format indicator
			i++
		case 0x02: // message expiry interval
			if i+4 > end {
				return -1
			}
			return i
		case 0x23: // topic alias
			i += 2
		case 0x03, 0x08, 0x09: // content type, response topic, correlation data
			if i+2 > end {
				return -1
			}
			i += 2 + (int(f[i])<<8 | int(f[i+1]))
		case 0x26: // user property: two strings
			for range 2 {
				if i+2 > end {
					return -1
				}
				i += 2 + (int(f[i])<<8 | int(f[i+1]))
			}
		case 0x0b: // subscription identifier
			_, k := uvarint(f[i:end])
			if k == 0 {
				return -1
			}
			i += k
		default:
			return -1
		}
	}
	return -1
}

// uvarint decodes an MQTT variable byte integer at the start of b; k is 0
// when b does not start with one.
func uvarint(b []byte) (n, k int) {
	for i := 0; i < len(b) && i < 4; i++ {
		n |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return n, i + 1
		}
	}
	return 0, 0
}

// ageExpiry takes held, the time a PUBLISH f was held, off its Message
// Expiry Interval, in place, rounding what remains up to whole seconds, and
// reports whether the message is still alive: false when the interval
// has run out. A PUBLISH without the property is alive.
func ageExpiry(f []byte, held time.Duration) bool {
	at := expiryOffset(f)
	if at < 0 {
		return true
	}
	interval := time.Duration(binary.BigEndian.Uint32(f[at:])) * time.Second
	left := interval - max(held, 0)
	if left <= 0 {
		return false
	}
	binary.BigEndian.PutUint32(f[at:], uint32((left+time.Second-1)/time.Second))
	return true
}

// clientAck records, for framing.feed, a packet of the client that ends
// one of the broker's deliveries: a PUBACK, a PUBCOMP, or a PUBREC with a
// code other than 0x00 and 0x10 (mochi ends the flow on an error code and
// on an invalid one alike, processPubrec) (typ is the packet type, head the first body bytes
// seen, up to 3, n the packet's remaining length).
func (f *framing) clientAck(typ byte, head []byte, n int) {
	if len(head) < 2 {
		return
	}
	if typ == 5 && (n < 3 || len(head) < 3 || head[2] == 0x00 || head[2] == 0x10) {
		return // a PUBREC with a success code: the flow goes on
	}
	f.acks = append(f.acks, uint16(head[0])<<8|uint16(head[1]))
}

// heldUnsent returns the function cl's outConn calls, once, with the
// packet ids of the deliveries it still held when the connection ended
// (endHeldLocked). They wait in h.unsent for the session's next
// connection, which sends them without DUP (takeUnsent, firstSend); a
// connection ending with none held leaves nothing.
func (h *hook) heldUnsent(cl *mqtt.Client) func(ids []uint16) {
	return func(ids []uint16) {
		if len(ids) == 0 {
			h.unsent.Delete(cl.ID)
			return
		}
		set := make(map[uint16]struct{}, len(ids))
		for _, id := range ids {
			set[id] = struct{}{}
		}
		h.unsent.Store(cl.ID, set)
	}
}

// takeUnsent hands cl's connection the packet ids its session's previous
// connection held and never sent (heldUnsent), when the session was
// resumed, and forgets them either way, so that they apply to the one
// resend that follows. OnPacketEncode calls it for an accepting CONNACK:
// mochi has stopped a connection it takes over by then (and so heard what
// it held), and resends the session's messages right after.
func (h *hook) takeUnsent(cl *mqtt.Client, resumed bool) {
	v, ok := h.unsent.LoadAndDelete(cl.ID)
	oc, isOut := cl.Net.Conn.(*outConn)
	if !ok || !resumed || !isOut {
		return
	}
	oc.mu.Lock()
	oc.quota.fresh = v.(map[uint16]struct{})
	oc.mu.Unlock()
}

// firstSend clears DUP on a PUBLISH mochi resends at a reconnection when
// the previous connection held it and never sent it (takeUnsent): DUP
// marks a re-delivery, and this is the first attempt ([MQTT-3.3.1-1]).
// Messages queued while the client was offline keep mochi's DUP (see
// README, Known issues), as do all resends after a restart (the ids are
// kept in memory only). OnPacketEncode calls it for each PUBLISH with DUP
// set, on the writer's goroutine.
func (h *hook) firstSend(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	oc, ok := cl.Net.Conn.(*outConn)
	if !ok {
		return pk
	}
	oc.mu.Lock()
	if _, never := oc.quota.fresh[pk.PacketID]; never {
		delete(oc.quota.fresh, pk.PacketID)
		pk.FixedHeader.Dup = false
	}
	oc.mu.Unlock()
	return pk
}
