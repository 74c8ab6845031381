package broker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// pipeConn returns an outConn over one end of a net.Pipe (no socket, so
// every write that is not taken at once goes through the flusher) and the
// other end, which the test reads or not. slow counts slow-consumer calls.
func pipeConn(t *testing.T, timeout time.Duration, limit int) (*outConn, net.Conn, *atomic.Int32) {
	t.Helper()
	a, b := net.Pipe()
	slow := new(atomic.Int32)
	c := newOutConn(a, timeout, limit, func(*outConn, error) { slow.Add(1) })
	t.Cleanup(func() { _ = c.Close(); _ = b.Close() })
	return c, b, slow
}

func TestOutConnOverflowDisconnects(t *testing.T) {
	c, _, slow := pipeConn(t, time.Hour, 64<<10)
	c.establish("s")
	p := make([]byte, 1024)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Write(p) // the peer never reads: must not block
	}
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Write error = %v, want ErrSlowConsumer", err)
	}
	if _, err := c.Write(p); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("Write after failing = %v, want ErrSlowConsumer", err)
	}
	if _, err := c.Read(p); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("Read after failing = %v, want ErrSlowConsumer", err)
	}
	if n := slow.Load(); n != 1 {
		t.Errorf("slow consumer reported %d times, want 1", n)
	}
}

func TestOutConnUnboundedUntilEstablished(t *testing.T) {
	c, peer, slow := pipeConn(t, time.Hour, 64<<10)
	p := bytes.Repeat([]byte{'x'}, 1024)
	for i := range 256 { // 256 KiB: a resumed session's queue
		if _, err := c.Write(p); err != nil {
			t.Fatalf("Write %d before establish: %v", i, err)
		}
	}
	got, err := io.ReadAll(io.LimitReader(peer, 256<<10))
	if err != nil || len(got) != 256<<10 || slow.Load() != 0 {
		t.Fatalf("peer read %d bytes, %v; slow %d; want 262144 bytes, no slow consumer", len(got), err, slow.Load())
	}
}

func TestOutConnWriteTimeoutDisconnects(t *testing.T) {
	c, _, slow := pipeConn(t, 50*time.Millisecond, 64<<10)
	c.establish("s")
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	poll.Until(t, "slow consumer reported", func() bool { return slow.Load() == 1 })
	if _, err := c.Write([]byte("again")); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("Write after the timeout = %v, want ErrSlowConsumer", err)
	}
}

// TestOutConnCloseSendsWhatWasAccepted: a DISCONNECT written just before
// Close still reaches the peer, and Close does not wait for it.
func TestOutConnCloseSendsWhatWasAccepted(t *testing.T) {
	c, peer, slow := pipeConn(t, time.Hour, 64<<10)
	if _, err := c.Write([]byte{0xe0, 0}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Write([]byte{0}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(poll.Timeout))
	got, err := io.ReadAll(peer)
	if err != nil || !bytes.Equal(got, []byte{0xe0, 0}) {
		t.Errorf("peer read % x, %v; want e0 00 then EOF", got, err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if slow.Load() != 0 {
		t.Errorf("Close reported a slow consumer")
	}
}

// TestOutConnDeadlinesAreReadOnly: mochi's SetDeadline (keepalive) must not
// put a deadline on writes, which outConn times itself.
func TestOutConnDeadlinesAreReadOnly(t *testing.T) {
	c, peer, slow := pipeConn(t, time.Hour, 64<<10)
	_ = c.SetDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past the deadline = %v, want a deadline error", err)
	}
	if _, err := c.Write([]byte("ok")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	got := make([]byte, 2)
	_ = peer.SetReadDeadline(time.Now().Add(poll.Timeout))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "ok" || slow.Load() != 0 {
		t.Errorf("peer read %q, %v (slow %d); want \"ok\"", got, err, slow.Load())
	}
}

// tcpConn returns an outConn over one end of a loopback TCP connection
// (plain TCP: lazy read deadlines) and the other end.
func tcpConn(t *testing.T) (*outConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := newOutConn(a, time.Hour, 64<<10, nil)
	if c.raw == nil {
		t.Fatal("a TCP connection got no raw socket")
	}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	return c, peer
}

// readByte reads one byte from c on another goroutine.
func readByte(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

// TestOutConnLaterDeadlineHonoured: a read deadline moved later (mochi's
// keepalive, refreshed before every packet) holds though the socket keeps
// the earlier one until it passes.
func TestOutConnLaterDeadlineHonoured(t *testing.T) {
	c, peer := tcpConn(t)
	first := time.Now().Add(20 * time.Millisecond)
	_ = c.SetDeadline(first)
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	done := readByte(c)
	poll.Until(t, "the first deadline passed", func() bool { return time.Now().After(first.Add(20 * time.Millisecond)) })
	if _, err := peer.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("read after the first deadline, before the later one: %v", err)
	}
}

// TestOutConnDeadlineStillExpires: the last deadline asked for ends the
// read, not before it passes; an earlier one is set at once; none clears it.
func TestOutConnDeadlineStillExpires(t *testing.T) {
	c, peer := tcpConn(t)

	_ = c.SetDeadline(time.Now().Add(10 * time.Millisecond))
	want := time.Now().Add(60 * time.Millisecond)
	_ = c.SetDeadline(want)
	if err := <-readByte(c); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline = %v, want a deadline error", err)
	}
	if time.Now().Before(want) {
		t.Fatal("the read ended before the last deadline asked for")
	}

	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	_ = c.SetDeadline(time.Now().Add(10 * time.Millisecond)) // earlier: at once
	select {
	case err := <-readByte(c):
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past an earlier deadline = %v, want a deadline error", err)
		}
	case <-time.After(poll.Timeout / 2):
		t.Fatal("an earlier deadline was not applied")
	}

	gone := time.Now().Add(10 * time.Millisecond)
	_ = c.SetDeadline(gone)
	_ = c.SetDeadline(time.Time{}) // none
	done := readByte(c)
	poll.Until(t, "the cleared deadline passed", func() bool { return time.Now().After(gone.Add(20 * time.Millisecond)) })
	if _, err := peer.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("read with the deadline cleared: %v", err)
	}
}

// corked returns an outConn over TCP whose reader has just read two
// PINGREQs in one Read (so acknowledgements are held), and the peer.
func corked(t *testing.T) (*outConn, net.Conn) {
	t.Helper()
	c, peer := tcpConn(t)
	if _, err := peer.Write([]byte{0xc0, 0, 0xc0, 0}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 4)); err != nil || n != 4 {
		t.Fatalf("Read = %d, %v; want the two PINGREQs sent in one write", n, err)
	}
	if !c.corked {
		t.Fatal("two packets read: not corked")
	}
	return c, peer
}

// expectBytes reads len(want) bytes from peer and compares them.
func expectBytes(t *testing.T, peer net.Conn, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	_ = peer.SetReadDeadline(time.Now().Add(poll.Timeout))
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("peer read % x, %v; want % x", got, err, want)
	}
}

var (
	puback1  = []byte{0x40, 2, 0, 1}
	puback2  = []byte{0x40, 2, 0, 2}
	pingresp = []byte{0xd0, 0}
	publish  = []byte{0x30, 4, 0, 1, 't', 'x'}
)

// TestOutConnAcksGoOutWithTheNextWrite: acknowledgements written while the
// reader has input are held and go out, in order, in front of the next
// packet of another kind.
func TestOutConnAcksGoOutWithTheNextWrite(t *testing.T) {
	c, peer := corked(t)
	for _, p := range [][]byte{puback1, puback2, pingresp} {
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write(% x) = %d, %v", p, n, err)
		}
	}
	c.mu.Lock()
	held := len(c.held)
	c.mu.Unlock()
	if held != len(puback1)+len(puback2)+len(pingresp) {
		t.Fatalf("%d bytes held, want the three acknowledgements", held)
	}
	if n, err := c.Write(publish); err != nil || n != len(publish) {
		t.Fatalf("Write(publish) = %d, %v", n, err)
	}
	expectBytes(t, peer, bytes.Join([][]byte{puback1, puback2, pingresp, publish}, nil))
}

// TestOutConnAcksGoOutAtRead: the reader's next Read (it processed its
// input) sends the held acknowledgements before it waits.
func TestOutConnAcksGoOutAtRead(t *testing.T) {
	c, peer := corked(t)
	if _, err := c.Write(puback1); err != nil {
		t.Fatal(err)
	}
	done := readByte(c)
	expectBytes(t, peer, puback1)
	if _, err := peer.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestOutConnAcksGoOutAtClose: Close sends held acknowledgements first.
func TestOutConnAcksGoOutAtClose(t *testing.T) {
	c, peer := corked(t)
	if _, err := c.Write(puback1); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	expectBytes(t, peer, puback1)
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the acknowledgement = %v, want EOF", err)
	}
}

// TestOutConnHoldsOnlySingleAcks: only a write of exactly one
// acknowledgement is held; anything else, or an ack while the reader waits
// for input, goes out at once.
func TestOutConnHoldsOnlySingleAcks(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"puback", puback1, true},
		{"suback v5 with properties", []byte{0x90, 4, 0, 1, 0, 0}, true},
		{"two acks in one write", append(append([]byte(nil), puback1...), puback2...), false},
		{"ack then publish in one write", append(append([]byte(nil), puback1...), publish...), false},
		{"publish", publish, false},
		{"connack", []byte{0x20, 2, 0, 0}, false},
		{"truncated", []byte{0x40, 2, 0}, false},
		{"unterminated length", []byte{0x40, 0x80, 0x80, 0x80, 0x80, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := singleAck(tc.p); got != tc.want {
				t.Fatalf("singleAck(% x) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}

	c, peer := tcpConn(t) // no Read yet: not corked
	if _, err := c.Write(puback1); err != nil {
		t.Fatal(err)
	}
	expectBytes(t, peer, puback1)
}

// TestOutConnOnePacketIsNotCorked: a client that sends one packet and
// waits for its acknowledgement (a QoS 1 publisher with one message in
// flight) gets it at once, not at the reader's next Read.
func TestOutConnOnePacketIsNotCorked(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"qos 0 publish", publish},
		{"qos 1 publish", []byte{0x32, 6, 0, 1, 't', 0, 1, 'x'}},
		{"qos 2 publish", []byte{0x34, 6, 0, 1, 't', 0, 1, 'x'}},
		{"pingreq", []byte{0xc0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := tcpConn(t)
			if _, err := peer.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, len(tc.in))); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(puback1); err != nil {
				t.Fatal(err)
			}
			expectBytes(t, peer, puback1)
		})
	}
}

func TestFramingFeed(t *testing.T) {
	long := make([]byte, 3+200) // remaining length 200: two bytes
	long[0], long[1], long[2] = 0x30, 200&0x7f|0x80, 200>>7
	for _, tc := range []struct {
		name     string
		chunks   [][]byte
		ends     int  // packets ending in the last chunk
		boundary bool // the last chunk ends at a boundary
	}{
		{"one packet", [][]byte{publish}, 1, true},
		{"two packets", [][]byte{{0xc0, 0, 0xc0, 0}}, 2, true},
		{"one and the next's type byte", [][]byte{{0xc0, 0, 0xc0}}, 1, false},
		{"the rest of a split header", [][]byte{{0xc0, 0, 0xc0}, {0}}, 1, true},
		{"a body split in two", [][]byte{publish[:3], publish[3:]}, 1, true},
		{"a two-byte length", [][]byte{long}, 1, true},
		{"a two-byte length split", [][]byte{long[:2], long[2:100], long[100:]}, 1, true},
		{"a length of five bytes", [][]byte{{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f framing
			var ends int
			var boundary bool
			for _, c := range tc.chunks {
				ends, boundary = f.feed(c)
			}
			if ends != tc.ends || boundary != tc.boundary {
				t.Fatalf("feed = %d packets ended, boundary %v; want %d, %v", ends, boundary, tc.ends, tc.boundary)
			}
		})
	}
}
