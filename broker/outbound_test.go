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
