package broker

import (
	"bytes"
	"errors"
	"math/bits"
	"net"
	"os"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file holds the broker's running totals for metrics: plain atomic
// fields the hook adds to where it already handles each event (no map, no
// label, no clock per message), read by Server.Counters and Server.Levels
// when the metrics package is scraped. RATIONALE.md, "How does the broker
// count for metrics?".

// stats are the hook's counters. The zero value is ready.
type stats struct {
	connectsAccepted  atomic.Uint64
	connectsRefused   [256]atomic.Uint64 // by the CONNACK code sent
	disconnects       [numDisconnectCounts]atomic.Uint64
	keepaliveTimeouts atomic.Uint64
	received          [3]messageCount // by QoS
	sent              [3]messageCount // by QoS
	dropped           [numDrops]atomic.Uint64
	windowFull        atomic.Uint64 // deliveries outConn held back (sendquota.go)

	storeWrite  latencyHistogram
	storeFsync  latencyHistogram
	recentWrite recentMax // StoreWriteLatency
}

// messageCount is one QoS's PUBLISH packets and their bytes, apart from
// the other QoS so that publishers of different QoS share no cache line.
type messageCount struct {
	n, bytes atomic.Uint64
	_        [48]byte
}

// disconnect kinds counted (Counters.Disconnects).
const (
	discClient = iota
	discLost
	discServer
	discTakenOver
	numDisconnectCounts
)

// drop reasons counted (Counters.Dropped).
const (
	dropQueueFull = iota
	dropExpired
	dropTooLarge
	dropNotAuthorized
	dropPrevented
	numDrops
)

// countReceived counts a PUBLISH read from a client: its QoS and its size
// on the wire (fixed header included). OnPacketRead calls it.
func (s *stats) countReceived(pk *packets.Packet) {
	if !countMessages {
		return
	}
	q := pk.FixedHeader.Qos & 3
	if q > 2 {
		return // malformed; mochi refuses it
	}
	m := &s.received[q]
	m.n.Add(1)
	m.bytes.Add(uint64(packetSize(pk.FixedHeader.Remaining)))
}

// countWritten counts the PUBLISH packets among the whole packets of p,
// as mochi writes them to a client's connection (outConn.Write, for a
// write the connection takes: not one to a connection already failed or
// closed), with their size. The markers of prevented deliveries are AUTH
// packets and are not counted. A delivery outConn holds back behind the
// client's Receive Maximum counts when mochi writes it, not when it
// leaves. Counting here rather than in mochi's OnPacketSent spares the
// hook's call there, which copies the whole packet for every write
// (measured at 100-200 ns a delivery on a loaded 2-CPU machine, against a
// few ns here: a look at each packet's first bytes).
func (s *stats) countWritten(p []byte) {
	if !countMessages {
		return
	}
	for len(p) > 0 {
		n := frameLen(p)
		if n == 0 {
			return
		}
		if p[0]>>4 == packets.Publish {
			if q := (p[0] >> 1) & 3; q < 3 {
				m := &s.sent[q]
				m.n.Add(1)
				m.bytes.Add(uint64(n))
			}
		}
		p = p[n:]
	}
}

// packetSize is the size on the wire of a packet whose remaining length is
// remaining: one byte of type and flags, the length's 1 to 4 bytes, the rest.
func packetSize(remaining int) int {
	n := 1 + 1
	for r := remaining >> 7; r > 0; r >>= 7 {
		n++
	}
	return n + remaining
}

// countDisconnect counts how a connection past its CONNACK ended
// (OnDisconnect, with mochi's error): the kinds of disconnectCause, a
// take-over apart from the server's other disconnects; a keepalive that ran
// out is also a keepalive timeout, and a packet above mqtt.max_packet_size
// a message dropped as too large.
func (s *stats) countDisconnect(cl *mqtt.Client, err error) {
	s.countDisconnectKind(cl, err)
	if errors.Is(err, packets.ErrPacketTooLarge) {
		s.dropped[dropTooLarge].Add(1)
	}
}

// countDisconnectKind is countDisconnect without the too-large count: for a
// connection mochi ended before its read loop (guardedListener.Serve),
// where a packet too large was one of ours, counted when encoded.
func (s *stats) countDisconnectKind(cl *mqtt.Client, err error) {
	kind, code, _ := disconnectCause(cl, err)
	switch {
	case kind == DisconnectByClient:
		s.disconnects[discClient].Add(1)
	case kind == DisconnectLost:
		s.disconnects[discLost].Add(1)
		if timedOut(err) {
			// The only read deadline past the CONNECT is the keepalive's
			// (outConn.SetDeadline); writes have their own, which end a
			// connection as a slow consumer, closed, not timed out.
			s.keepaliveTimeouts.Add(1)
		}
	case code == packets.ErrSessionTakenOver.Code:
		// mochi stops the old connection with 0x8E before it marks it
		// taken over (IsTakenOver), so the code tells, not the mark.
		s.disconnects[discTakenOver].Add(1)
	default:
		s.disconnects[discServer].Add(1)
	}
}

// countConnack counts a CONNACK as mochi is about to write it: code 0 is
// an accepted CONNECT, any other a refused one (the code the client gets,
// a 3.1.1 code for a 3.1.1 client).
func (s *stats) countConnack(code byte) {
	if code == 0 {
		s.connectsAccepted.Add(1)
		return
	}
	s.connectsRefused[code].Add(1)
}

// countExpired counts a QoS 1/2 message mochi dropped from a session
// (OnQosDropped) if its expiry has passed; mochi also drops a clean
// session's messages at its end, which are not counted.
func (s *stats) countExpired(pk *packets.Packet) {
	if pk.FixedHeader.Type == packets.Publish && pk.Expiry > 0 && pk.Expiry <= time.Now().Unix() {
		s.dropped[dropExpired].Add(1)
	}
}

// tooLarge reports whether pk, a PUBLISH mochi is about to encode for a
// client that announced a Maximum Packet Size (pk.Mods.MaxSize), exceeds
// it, so that mochi will not send it (WritePacket's ErrPacketTooLarge,
// which mochi does not report to hooks). It encodes pk a first time, which
// only clients announcing a Maximum Packet Size pay.
func tooLarge(pk packets.Packet) bool {
	max := pk.Mods.MaxSize
	if max == 0 {
		return false
	}
	if uint64(len(pk.Payload))+uint64(len(pk.TopicName)) < uint64(max)/2 && max >= 4096 {
		// Properties and headers take more than half only with user
		// properties or correlation data in kilobytes.
		if len(pk.Properties.User) == 0 && len(pk.Properties.CorrelationData) < 1024 {
			return false
		}
	}
	var buf bytes.Buffer
	if err := pk.PublishEncode(&buf); err != nil {
		return false // mochi's own encode fails the same way
	}
	return buf.Len() > int(max)
}

// latencyBounds are the upper bounds of the store latency histograms: 16
// powers of two from 32 µs to about 1 s (32 µs, 64 µs, ... 1.05 s), plus
// everything above in the last bucket.
const (
	latencyFirstShift = 15 // 2^15 ns = 32.768 µs
	latencyBuckets    = 16
)

// LatencyBounds returns the upper bounds of the buckets of the store
// latency histograms (Counters.StoreWrites, Counters.StoreFsyncs):
// 32.768 µs doubling up to 1.07 s; a last bucket above them is implied.
func LatencyBounds() []time.Duration {
	b := make([]time.Duration, latencyBuckets)
	for i := range b {
		b[i] = time.Duration(1) << (latencyFirstShift + i)
	}
	return b
}

// latencyHistogram counts durations in fixed buckets (LatencyBounds), with
// their count and sum; observe is a few atomic adds, safe from any
// goroutine.
type latencyHistogram struct {
	buckets [latencyBuckets + 1]atomic.Uint64 // not cumulative; last: above every bound
	count   atomic.Uint64
	sum     atomic.Uint64 // nanoseconds
}

// observe records d.
func (h *latencyHistogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := 0
	if d > 1<<latencyFirstShift {
		// the smallest i with d <= 2^(first+i)
		i = min(bits.Len64(uint64(d-1))-latencyFirstShift, latencyBuckets)
	}
	h.buckets[i].Add(1)
	h.sum.Add(uint64(d))
	h.count.Add(1)
}

// snapshot returns the histogram with cumulative counts, as Prometheus
// wants them.
func (h *latencyHistogram) snapshot() LatencyHistogram {
	out := LatencyHistogram{Bounds: LatencyBounds(), Counts: make([]uint64, latencyBuckets)}
	var cum uint64
	for i := 0; i < latencyBuckets; i++ {
		cum += h.buckets[i].Load()
		out.Counts[i] = cum
	}
	out.Count = h.count.Load()
	out.Sum = time.Duration(h.sum.Load())
	return out
}

// LatencyHistogram is a snapshot of one of the store's latency histograms.
type LatencyHistogram struct {
	// Bounds are the buckets' upper bounds (LatencyBounds).
	Bounds []time.Duration
	// Counts[i] is how many durations were at most Bounds[i] (cumulative).
	Counts []uint64
	// Count is how many durations were observed in all (those above the
	// last bound too); Sum is their total.
	Count uint64
	Sum   time.Duration
}

// recentMax keeps the longest duration observed in the current second and
// in the one before, for StoreWriteLatency. A write that ends exactly as a
// second turns may be counted in either; it is a signal, not a record.
type recentMax struct {
	sec  atomic.Int64 // the Unix second cur belongs to
	cur  atomic.Int64 // nanoseconds
	prev atomic.Int64 // the longest in second sec-1
}

// observe records d, which ended at the Unix second now.
func (r *recentMax) observe(now int64, d time.Duration) {
	if s := r.sec.Load(); s != now && r.sec.CompareAndSwap(s, now) {
		old := r.cur.Swap(0)
		if now == s+1 {
			r.prev.Store(old)
		} else {
			r.prev.Store(0)
		}
	}
	for {
		c := r.cur.Load()
		if int64(d) <= c || r.cur.CompareAndSwap(c, int64(d)) {
			return
		}
	}
}

// get returns the longest duration observed in the second now and the
// one before (0 when nothing was).
func (r *recentMax) get(now int64) time.Duration {
	switch r.sec.Load() {
	case now:
		return time.Duration(max(r.cur.Load(), r.prev.Load()))
	case now - 1:
		return time.Duration(r.cur.Load())
	}
	return 0
}

// observeStoreWrite is the store's Timings.Write.
func (s *stats) observeStoreWrite(d time.Duration) {
	s.storeWrite.observe(d)
	s.recentWrite.observe(time.Now().Unix(), d)
}

// timedOut says whether err is a deadline's: os.ErrDeadlineExceeded on a
// tcp or tls connection, and on a websocket one gorilla/websocket's own
// error, which keeps only the net.Error's Timeout().
func timedOut(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
