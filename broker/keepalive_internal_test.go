package broker

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The keepalive deadline is one and a half times the keepalive
// [MQTT-3.1.2-22], for every keepalive a client can ask for: mochi's
// 16-bit sum gives 32766 s for 65535 s.
func TestKeepaliveDeadline(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		keepalive uint16
		want      time.Duration
	}{
		{0, 0},
		{1, 1500 * time.Millisecond},
		{60, 90 * time.Second},
		{43691, 65536*time.Second + 500*time.Millisecond},
		{65535, 98302*time.Second + 500*time.Millisecond},
	} {
		got := keepaliveDeadline(now, tc.keepalive)
		if tc.want == 0 && !got.IsZero() || tc.want != 0 && got.Sub(now) != tc.want {
			t.Errorf("keepaliveDeadline(%d) = now + %v, want %v", tc.keepalive, got.Sub(now), tc.want)
		}
	}
}

// Once a keepalive is granted, the deadline mochi sets on a connection is
// replaced by the keepalive's own: here mochi's hour becomes 1.5 s, and a
// read on a real socket times out.
func TestOutConnUsesGrantedKeepalive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	oc := newOutConn(server, time.Second, 1<<20, func(*outConn, error) {})
	defer oc.Close()
	oc.setKeepalive(1)
	if err := oc.SetDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := oc.Read(make([]byte, 1)); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read ended with %v, want the deadline exceeded", err)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("read still waiting: the hour-long deadline was kept")
	}
}
