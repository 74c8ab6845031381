package broker

import (
	"math"

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
// refuses a delivery beyond it, see MaximumInflight). A held message is in mochi's
// in-flight map and in the store already: if the connection ends first, a
// persistent session sends it at the next connection (with DUP set, as
// mochi marks every resent message), where the resends are counted and
// held in the same way.
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
func takeSendQuota(cl *mqtt.Client, pk packets.Packet) {
	oc, ok := cl.Net.Conn.(*outConn)
	if !ok {
		return
	}
	oc.window.Store(uint32(cl.Properties.Props.ReceiveMaximum))
	cl.Properties.Props.ReceiveMaximum = 0
	cl.State.Inflight.ResetSendQuota(0)
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
	waiting   [][]byte            // held PUBLISH packets (copies), oldest first
	waitBytes int                 // bytes in waiting
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
			if _, in := q.unacked[id]; !in {
				if holdable && (len(q.waiting) > 0 || len(q.unacked) >= q.max) {
					if !held {
						out = append([]byte(nil), p[:off-n]...)
						held = true
					}
					q.waiting = append(q.waiting, append([]byte(nil), f...))
					q.waitBytes += n
					continue
				}
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
func (c *outConn) releaseLocked(ids []uint16) {
	q := &c.quota
	for _, id := range ids {
		delete(q.unacked, id)
	}
	var out []byte
	for len(q.waiting) > 0 && len(q.unacked) < q.max {
		f := q.waiting[0]
		q.waiting[0] = nil
		q.waiting = q.waiting[1:]
		q.waitBytes -= len(f)
		if id, _, ok := countedID(f); ok {
			q.unacked[id] = struct{}{}
		}
		out = append(out, f...)
	}
	if len(q.waiting) == 0 {
		q.waiting = nil
	}
	if len(out) == 0 || c.err != nil || c.closed {
		c.mu.Unlock()
		return
	}
	_, _ = c.sendLocked(out) // a failure is recorded in c.err
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
