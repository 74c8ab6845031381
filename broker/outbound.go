package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/propolis-mqtt/propolis/broker/overload"
)

// ErrSlowConsumer ends the connection of a client that did not take the
// bytes sent to it: a socket write (up to 64 KiB) took longer than
// mqtt.write_timeout, or the bytes waiting for it would exceed
// mqtt.max_outbound_buffer. mochi sees it as a lost connection; a
// persistent session keeps its queue.
var ErrSlowConsumer = errors.New("slow consumer")

// writeChunk is the most one socket write hands the kernel: the write
// timeout applies per chunk, so a client that reads slowly but steadily is
// not mistaken for a stuck one.
const writeChunk = 64 << 10

// closeFlushTimeout is how long Close lets the flusher send what was
// accepted before it (typically mochi's DISCONNECT), capped by the write
// timeout.
const closeFlushTimeout = time.Second

// outConn is the net.Conn mochi gets for every accepted connection
// (guardedListener.Serve wraps each one). mochi writes to a client while
// holding the client's mutex, which publishers to that client take too
// (publishToClient → NextPacketID): a write that blocks on a client that
// does not read would stall them. So Write never waits for the peer. It
// first tries the socket without blocking (plain TCP on unix, tryWrite);
// whatever the socket does not take goes into a buffer that a flusher
// goroutine drains, applying the write timeout to each socket write, and
// that exits once the buffer is empty (an idle connection costs no
// goroutine and no buffer). When the buffer would exceed its bound or a
// socket write times out, the connection is closed with ErrSlowConsumer:
// Write returns the error, mochi's reader fails and mochi ends the client
// as a lost connection.
//
// Reads and read deadlines go to the wrapped connection; SetDeadline (which
// mochi calls with the keepalive) sets the read deadline only; the write
// deadlines are outConn's own. All methods are safe for concurrent use.
type outConn struct {
	net.Conn // the accepted connection
	// accepted is the client whose success CONNACK was encoded on this
	// connection until OnDisconnect has counted its end; still set when
	// mochi's attachClient returned without OnDisconnect (the CONNACK
	// write or the resend failed), guardedListener.Serve counts the
	// disconnect.
	accepted atomic.Pointer[mqtt.Client]
	raw      syscall.RawConn // plain TCP: the socket, for tryWrite; nil otherwise
	timeout  time.Duration   // mqtt.write_timeout, per socket write of up to writeChunk
	limit    int             // mqtt.max_outbound_buffer, in bytes
	slow     func(c *outConn, err error)
	// stats, when set (Server.wrapConn), counts the PUBLISH packets
	// written (Write) and the deliveries held back behind the client's
	// full in-flight window (gateLocked).
	stats *stats

	mu       sync.Mutex
	buf      []byte    // accepted, not yet handed to the flusher
	taken    int       // bytes the flusher holds and has not written yet
	flushing bool      // a flusher owns the socket's write side
	bounded  bool      // limit applies (from the end of session establishment)
	closed   bool      // Close was called
	ending   bool      // Close is reporting held deliveries: take no more writes
	err      error     // why writes fail from now on; nil while healthy
	closeBy  time.Time // Close was called: the flusher's last deadline
	held     []byte    // acknowledgements held while corked (see Write)
	corked   bool      // the reader has more than one packet to process (see Read)
	in       framing   // packet boundaries in what Read returned (reader's goroutine only)
	quota    sendQuota // the client's Receive Maximum on deliveries (sendquota.go)
	// now is the clock of held deliveries (see clock); nil: time.Now. Set
	// before the connection is used.
	now func() time.Time
	// window is the in-flight window mochi took from the client's Receive
	// Maximum (see takeSendQuota).
	window atomic.Uint32
	// counting is set once the client's acknowledgements are followed
	// (limitSends, setWindow); the reader then tracks them (Read).
	counting atomic.Bool
	clientID atomic.Pointer[string]
	// keepalive is the keepalive granted to the client, in seconds (see
	// keepalive.go); 0 until then.
	keepalive atomic.Uint32
	// connectConn is the connection's attributes made when its CONNECT was
	// intercepted (intercept.go), for authenticateConnect; the client's
	// goroutine only.
	connectConn Conn
	// marked counts the prevented deliveries written as markers and not
	// yet dropped by Write (see preventDelivery).
	marked atomic.Int32

	// Read deadlines (lazy on plain TCP, see SetDeadline), as monotonic
	// nanoseconds since deadlineBase; 0 means none.
	wantRead  atomic.Int64 // the deadline mochi asked for last
	armedRead atomic.Int64 // the deadline set on the socket (plain TCP)

	// throttle is the client's token buckets once its CONNECT is accepted
	// (attachThrottle, overload.go); Read waits for them. done closes at
	// Close or failure, ending a wait (stopOnce).
	throttle atomic.Pointer[overload.Client]
	done     chan struct{}
	stopOnce sync.Once
	// stopped, when set, is called once done closes (onStop).
	stopped atomic.Pointer[func()]
	// owed is when the client's buckets allow what Read handed on last
	// (overload.Client.Charge): the next Read waits for it before reading
	// the socket, unless mayDefer. deferOK says the last read may be
	// followed by one more before paying (see mayDefer). The reader's
	// goroutine only.
	owed    time.Time
	deferOK bool
	// heldWake signals (never blocking, one pending at most) that a delivery
	// was held behind the client's full window (gateLocked): a reader
	// paying what it owes looks again whether it may defer (Read).
	heldWake chan struct{}
}

// deadlineBase is the origin of outConn's monotonic read deadlines.
var deadlineBase = time.Now()

// monoNanos returns t as nanoseconds since deadlineBase (monotonic when t
// carries a monotonic reading, as mochi's deadlines do), at least 1; 0 for
// the zero time (no deadline).
func monoNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(int64(t.Sub(deadlineBase)), 1)
}

// newOutConn wraps c. slow is called once, on whichever goroutine finds
// the client slow, after the connection is closed.
func newOutConn(c net.Conn, timeout time.Duration, limit int, slow func(*outConn, error)) *outConn {
	oc := &outConn{Conn: c, timeout: timeout, limit: limit, slow: slow, done: make(chan struct{}), heldWake: make(chan struct{}, 1)}
	if tc, ok := c.(*net.TCPConn); ok && canTryWrite {
		oc.raw, _ = tc.SyscallConn()
	}
	return oc
}

// stop ends a throttled reader's wait (see Read) and calls the function
// given to onStop: the connection is closed or failed.
func (c *outConn) stop() {
	c.stopOnce.Do(func() {
		close(c.done)
		if f := c.stopped.Load(); f != nil {
			(*f)()
		}
	})
}

// wakeReader tells a reader paying what it owes that a delivery was held
// behind the client's full window (see Read).
func (c *outConn) wakeReader() {
	select {
	case c.heldWake <- struct{}{}:
	default:
	}
}

// waiting returns the bytes accepted and not yet written to the socket
// (the backlog signal, Server.backlog).
func (c *outConn) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf) + c.taken
}

// NetConn returns the wrapped connection (tlsConn looks through it for the
// TLS state).
func (c *outConn) NetConn() any { return c.Conn }

// establish is called by the hook once the session is established (CONNACK
// written, a resumed session's queue resent): from then on the buffer is
// bounded, and slow-consumer logs name the client. The resent queue is not
// bounded, since mochi holds it in memory already and writes it all at once.
func (c *outConn) establish(clientID string) {
	c.clientID.Store(&clientID)
	c.mu.Lock()
	c.bounded = true
	c.mu.Unlock()
}

// client returns the client id given to establish, or "".
func (c *outConn) client() string {
	if p := c.clientID.Load(); p != nil {
		return *p
	}
	return ""
}

// maxHeld bounds the acknowledgements Write holds back while corked.
const maxHeld = 4 << 10

// Write accepts p whole or fails; it never waits for the peer. It fails
// with ErrSlowConsumer (wrapped) when the connection was found slow, or
// with net.ErrClosed after Close.
//
// Acknowledgements are coalesced: while the reader works through input
// holding more than the packet it handles (Read returned more than one
// packet, or one and the start of the next, and was not called again), a
// write of one acknowledgement packet (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK,
// UNSUBACK, PINGRESP) is held, and goes out with the next write of
// anything else, at the reader's next Read or at Close, whichever comes
// first. A publisher that sends many QoS 1 messages at once then gets
// their PUBACKs in one socket write rather than one each; the order of
// all packets is kept, and deliveries (PUBLISH) are never held for that.
//
// For a client whose Receive Maximum is counted (limitSends), QoS 1 and 2
// PUBLISH packets beyond it are held until the client acknowledges earlier
// ones (see sendquota.go); p may then hold several packets, as mochi's
// write buffer makes them, and only those PUBLISH packets wait.
func (c *outConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil || c.closed || c.ending {
		err := c.err
		if err == nil {
			err = net.ErrClosed // closed, the flusher still sending what came before
		}
		c.mu.Unlock()
		return 0, err
	}
	n := len(p)
	if c.stats != nil {
		c.stats.countWritten(p)
	}
	if c.marked.Load() > 0 {
		if p = c.dropMarked(p); len(p) == 0 {
			c.mu.Unlock()
			return n, nil
		}
	}
	if c.quota.max > 0 {
		var err error
		if p, err = c.gateLocked(p); err != nil {
			return 0, err
		}
		if len(p) == 0 { // all held
			c.mu.Unlock()
			return n, nil
		}
	}
	if _, err := c.sendLocked(p); err != nil {
		return 0, err
	}
	return n, nil
}

// sendLocked is Write once the quota is dealt with: a single
// acknowledgement is held while corked; anything else goes out after the
// held ones. It is called with c.mu held and releases it.
func (c *outConn) sendLocked(p []byte) (int, error) {
	if c.corked && len(c.held)+len(p) <= maxHeld && singleAck(p) {
		c.held = append(c.held, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	if len(c.held) > 0 {
		b := append(c.held, p...)
		c.held = nil
		if _, err := c.writeLocked(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.writeLocked(p)
}

// singleAck reports whether p is exactly one acknowledgement packet.
func singleAck(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	switch p[0] >> 4 {
	case 4, 5, 6, 7, 9, 11, 13: // PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP
	default:
		return false
	}
	n, shift := 0, 0
	for i := 1; i < len(p) && i <= 4; i++ {
		n |= int(p[i]&0x7f) << shift
		if p[i]&0x80 == 0 {
			return i+1+n == len(p)
		}
		shift += 7
	}
	return false
}

// writeLocked is Write once held acknowledgements are dealt with: p goes
// to the socket at once when it takes it, else to the buffer the flusher
// drains. It is called with c.mu held and releases it.
func (c *outConn) writeLocked(p []byte) (int, error) {
	if c.flushing {
		held := len(c.buf) + c.taken
		if c.bounded && held > 0 && held+len(p) > c.limit {
			err := errSlowBuffer(held, len(p), c.limit)
			c.failLocked(err, true)
			return 0, err
		}
		c.buf = append(c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	n := 0
	if c.raw != nil {
		var err error
		if n, err = tryWrite(c.raw, p); err != nil {
			c.failLocked(err, false)
			return 0, err
		}
		if n == len(p) {
			c.mu.Unlock()
			return n, nil
		}
	}
	c.buf = append(c.buf, p[n:]...)
	c.flushing = true
	c.mu.Unlock()
	go c.flush()
	return len(p), nil
}

// errSlowBuffer is the error of a connection whose waiting bytes would
// exceed mqtt.max_outbound_buffer.
func errSlowBuffer(waiting, more, limit int) error {
	return fmt.Errorf("%w: %d bytes waiting, %d more would exceed mqtt.max_outbound_buffer (%d)", ErrSlowConsumer, waiting, more, limit)
}

// framing follows MQTT packet boundaries in a byte stream: a packet is a
// type byte, a remaining length of one to four bytes (7 bits each, the top
// bit saying another follows) and that many bytes of body. It tells Read
// whether the reader has more than one packet in hand: a client that waits
// for each acknowledgement before its next packet gets it at once, not
// after the broker's work on the packet (the fan-out to subscribers).
type framing struct {
	body   int  // body bytes of the current packet still to come
	header int  // 0: at a packet boundary; else header bytes seen so far
	length int  // remaining length decoded so far
	broken bool // a remaining length longer than four bytes: stop following
	// For a connection that counts the client's Receive Maximum (acks is
	// non-nil, see limitSends): the current packet's type and first body
	// bytes, and the packet ids of the deliveries the client acknowledged
	// in the last feed (see clientAck).
	typ  byte
	head [3]byte
	got  int
	acks []uint16
	// publishes counts the PUBLISH packets that ended since Read last took
	// it (for the client's publish rate, see Read).
	publishes int
	// other is set when a byte of a packet other than PUBACK, PUBREC or
	// PUBCOMP was fed since Read last cleared it (see outConn.mayDefer).
	other bool
}

// feed follows b, the next bytes of the stream, and returns how many
// packets ended in it and whether it ends at a packet boundary.
func (f *framing) feed(b []byte) (ends int, boundary bool) {
	for i := 0; i < len(b) && !f.broken; {
		if f.header > 0 || f.body > 0 {
			f.other = f.other || f.typ != 4 && f.typ != 5 && f.typ != 7
		}
		if f.body > 0 {
			k := min(f.body, len(b)-i)
			track := f.acks != nil && (f.typ == 4 || f.typ == 5 || f.typ == 7) // PUBACK, PUBREC, PUBCOMP
			if track && f.got < len(f.head) {
				f.got += copy(f.head[f.got:], b[i:i+k])
			}
			f.body -= k
			i += k
			if f.body == 0 {
				ends++
				if f.typ == 3 { // PUBLISH
					f.publishes++
				}
				if track {
					f.clientAck(f.typ, f.head[:f.got], f.length)
				}
			}
			continue
		}
		x := b[i]
		i++
		if f.header == 0 { // the type byte
			f.header, f.length = 1, 0
			f.typ, f.got = x>>4, 0
			f.other = f.other || f.typ != 4 && f.typ != 5 && f.typ != 7
			continue
		}
		f.length |= int(x&0x7f) << (7 * (f.header - 1))
		f.header++
		if x&0x80 != 0 {
			f.broken = f.header > 4
			continue
		}
		f.header, f.body = 0, f.length
		if f.body == 0 {
			ends++
		}
	}
	return ends, !f.broken && f.header == 0 && f.body == 0
}

// uncork sends the held acknowledgements: the reader is done with its
// input (Read) or the connection closes (Close). It is called with c.mu
// held and releases it.
func (c *outConn) uncork() {
	c.corked = false
	if len(c.held) == 0 || c.err != nil {
		c.held = nil
		c.mu.Unlock()
		return
	}
	b := c.held
	c.held = nil
	_, _ = c.writeLocked(b) // a failure is recorded in c.err
}

// flush is the flusher goroutine: it writes the buffer out, a chunk at a
// time under the write timeout, until it is empty.
func (c *outConn) flush() {
	for {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		if len(c.buf) == 0 {
			c.flushing = false
			c.buf = nil
			closing := c.closed
			if closing {
				c.err = net.ErrClosed
			}
			c.mu.Unlock()
			if closing {
				_ = c.Conn.Close()
			}
			return
		}
		b := c.buf
		c.buf = nil
		c.taken = len(b)
		c.mu.Unlock()

		for len(b) > 0 {
			chunk := b[:min(len(b), writeChunk)]
			c.mu.Lock()
			deadline := time.Now().Add(c.timeout)
			if c.closed && c.closeBy.Before(deadline) {
				deadline = c.closeBy
			}
			c.mu.Unlock()
			_ = c.Conn.SetWriteDeadline(deadline)
			n, err := c.Conn.Write(chunk)
			b = b[n:]
			c.mu.Lock()
			c.taken = len(b)
			if err != nil {
				var ne net.Error // gorilla hides os.ErrDeadlineExceeded behind its own timeout error
				slow := !c.closed && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
				if slow {
					err = fmt.Errorf("%w: a write of up to 64 KiB took longer than %v (mqtt.write_timeout)", ErrSlowConsumer, c.timeout)
				}
				c.failLocked(err, slow)
				return
			}
			c.mu.Unlock()
		}
		// Cleared while this flusher still owns the write side: tryWrite
		// fails on an expired deadline.
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
}

// failLocked records err, drops what is buffered and closes the
// connection, which unblocks mochi's reader. It is called with c.mu held
// and releases it. For a slow consumer it calls c.slow once.
func (c *outConn) failLocked(err error, slow bool) {
	first := c.err == nil
	if first {
		c.err = err
	}
	c.buf = nil
	c.held = nil
	unsent := c.endHeldLocked() // still in mochi's in-flight map and the store
	c.mu.Unlock()
	c.stop()
	if unsent != nil {
		unsent()
	}
	if !first {
		return
	}
	_ = abort(c.Conn)
	if slow && c.slow != nil {
		c.slow(c, err)
	}
}

// abort closes the socket under c without a goodbye: tls.Conn.Close sends
// a close_notify alert first, which waits up to five seconds on a socket
// that takes nothing, leaving the client connected meanwhile.
func abort(c net.Conn) error {
	for {
		switch v := c.(type) {
		case *tls.Conn:
			c = v.NetConn()
		case interface{ NetConn() any }: // wsConn
			inner, ok := v.NetConn().(net.Conn)
			if !ok {
				return c.Close()
			}
			c = inner
		default:
			return c.Close()
		}
	}
}

// Read reads from the wrapped connection, first sending the
// acknowledgements held since the last read (see Write): mochi's reader
// calls it when it has processed all the input it had. Once the connection
// was found slow, a failed read returns that error, so mochi's disconnect reason and
// the broker's events say why the connection was lost; after Close, it
// returns net.ErrClosed (Close may end reads with a deadline). A read
// deadline that passes before the one last asked for (see SetDeadline) is
// moved to that one and the read goes on.
//
// Once the client's CONNECT is accepted, what a read returned is charged
// to the client's token buckets (overload.Client.Charge: the operator's
// client_limits and, under stress, the throttle) and handed to mochi at
// once: the acknowledgements that came with a PUBLISH are not held behind
// it. The next Read pays, waiting before it reads the socket again (unless
// mayDefer): mochi reads nothing more meanwhile, the socket's receive
// buffer fills and TCP slows the sender down. The wait ends early at Close
// or failure (done), when Read returns net.ErrClosed (or the slow
// consumer's error) rather than bytes read after the connection was taken
// over, and it moves the read deadline later by its length (postpone).
func (c *outConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.uncork()
	tc := c.throttle.Load()
	for tc != nil && !c.owed.IsZero() {
		if c.mayDefer() {
			c.deferOK = false // decided again after this read
			break
		}
		d := tc.Pay(c.done, c.heldWake, c.owed)
		if d > 0 {
			c.postpone(d)
		}
		select {
		case <-c.done:
			return 0, c.endErr()
		default:
		}
		if !time.Now().Before(c.owed) {
			c.owed, c.deferOK = time.Time{}, true
		}
		// else a delivery was held meanwhile: look again
	}
	for {
		n, err := c.Conn.Read(p)
		if err == nil {
			if c.in.acks == nil && c.counting.Load() { // a window set since (setWindow)
				c.in.acks = make([]uint16, 0, 16)
			}
			deferred := tc != nil && !c.owed.IsZero() // read before paying
			c.in.other = false
			ends, boundary := c.in.feed(p[:n])
			freed := false
			if len(c.in.acks) > 0 {
				c.mu.Lock()
				before := len(c.quota.unacked)
				c.releaseLocked(c.in.acks)
				freed = len(c.quota.unacked) < before
				c.in.acks = c.in.acks[:0]
			}
			if ends > 1 || ends == 1 && !boundary {
				c.mu.Lock()
				c.corked = true
				c.mu.Unlock()
			}
			if tc != nil {
				pubs := c.in.publishes
				c.in.publishes = 0
				if until := tc.Charge(n, pubs); !until.IsZero() {
					c.owed = until
				}
				if deferred {
					c.deferOK = freed && !c.in.other
				} else if c.owed.IsZero() {
					c.deferOK = true
				}
			}
			return n, nil
		}
		c.mu.Lock()
		switch {
		case errors.Is(c.err, ErrSlowConsumer):
			err = c.err
		case c.closed:
			err = net.ErrClosed
		case n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && c.rearm():
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		return n, err
	}
}

// endErr is what Read returns when its wait ended at Close or failure:
// the slow consumer's error, else net.ErrClosed.
func (c *outConn) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(c.err, ErrSlowConsumer) {
		return c.err
	}
	return net.ErrClosed
}

// mayDefer reports whether Read may read once more before paying what it
// owes: the client has its in-flight window full of deliveries (it owes
// acknowledgements, which may be waiting in the socket while the broker
// cannot send it more), and the last read either was paid for or, read
// unpaid itself, brought only PUBACK, PUBREC or PUBCOMP packets that freed
// deliveries. What a deferred read brings is charged like any other, so
// the client's rate over time does not change: at most one read (mochi's
// 2 KiB buffer) of other packets is taken ahead of its payment, after
// which Read pays everything owed; a stream of acknowledgements that free
// nothing (made-up packet ids) is paid for read by read.
func (c *outConn) mayDefer() bool {
	if !c.deferOK {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	q := &c.quota
	return q.max > 0 && len(q.unacked) >= q.max
}

// postpone moves the read deadline later by d, the time Read waited for
// the client's buckets: the wait is the broker's, so it must not count
// against the client's keepalive (or the rest of a packet whose first
// bytes were read). On plain TCP only the deadline asked for moves; rearm
// moves the socket's to it when the earlier one passes.
func (c *outConn) postpone(d time.Duration) {
	want := c.wantRead.Load()
	if want == 0 {
		return
	}
	want += int64(d)
	c.wantRead.Store(want)
	if c.raw == nil {
		_ = c.Conn.SetReadDeadline(deadlineBase.Add(time.Duration(want)))
	}
}

// rearm moves an expired read deadline of plain TCP to the one mochi asked
// for last, if that is still ahead, and reports whether it did.
func (c *outConn) rearm() bool {
	want := c.wantRead.Load()
	if c.raw == nil || want == 0 || want <= monoNanos(time.Now()) {
		return false
	}
	c.armedRead.Store(want)
	return c.Conn.SetReadDeadline(deadlineBase.Add(time.Duration(want))) == nil
}

// SetDeadline sets the read deadline only: mochi calls it with the
// keepalive before every packet it reads (and guardedListener with the
// CONNECT timeout); write deadlines are the flusher's. Once a keepalive is
// granted (setKeepalive), a deadline mochi sets is replaced by
// keepaliveDeadline, which does not overflow as mochi's does (see
// keepalive.go).
//
// On plain TCP it is lazy: moving a deadline later costs a timer update in
// the runtime on every packet, so a later deadline is only recorded, and
// Read moves the socket's deadline to it when the earlier one passes (once
// per keepalive period at most). An earlier deadline, or none, is set at
// once. Every connection records the deadline asked for (wantRead), which
// a throttled Read moves later by its wait (postpone).
func (c *outConn) SetDeadline(t time.Time) error {
	if k := c.keepalive.Load(); k > 0 && !t.IsZero() {
		t = keepaliveDeadline(time.Now(), uint16(k))
	}
	want := monoNanos(t)
	c.wantRead.Store(want)
	if c.raw == nil {
		return c.Conn.SetReadDeadline(t)
	}
	if armed := c.armedRead.Load(); armed != 0 && want != 0 && armed <= want || armed == 0 && want == 0 {
		return nil
	}
	c.armedRead.Store(want)
	return c.Conn.SetReadDeadline(t)
}

// setKeepalive records the keepalive granted to the client, in seconds
// (grantKeepalive).
func (c *outConn) setKeepalive(seconds uint16) { c.keepalive.Store(uint32(seconds)) }

// SetWriteDeadline does nothing: the flusher sets the write deadline of
// each socket write from mqtt.write_timeout.
func (c *outConn) SetWriteDeadline(time.Time) error { return nil }

// Close closes the connection. When the flusher still holds bytes (a
// DISCONNECT mochi wrote just before), reads end at once and the flusher
// gets up to closeFlushTimeout for the chunks it has not started (the one
// in progress keeps its write timeout) before it closes the socket; Close
// does not wait for it. Otherwise it closes the wrapped connection, which
// for TLS sends close_notify (crypto/tls bounds that write to 5 s).
func (c *outConn) Close() error {
	c.stop()
	c.mu.Lock()
	if len(c.held) > 0 && !c.closed {
		c.uncork() // they go before the close, as if written last
		c.mu.Lock()
	}
	if unsent := c.endHeldLocked(); unsent != nil {
		// A write taken while the lock is released could be held and
		// never reported: refuse writes until closed is set.
		c.ending = true
		c.mu.Unlock()
		unsent()
		c.mu.Lock()
	}
	if c.closed || c.err != nil {
		c.closed = true
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.flushing {
		c.closeBy = time.Now().Add(min(closeFlushTimeout, c.timeout))
		c.mu.Unlock()
		_ = c.Conn.SetReadDeadline(time.Now()) // unblock the reader now
		return nil
	}
	c.err = net.ErrClosed
	c.mu.Unlock()
	return c.Conn.Close()
}

var _ net.Conn = (*outConn)(nil)
