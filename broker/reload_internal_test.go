package broker

import (
	"net"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// TestReloadOutboundLimits: a connection accepted after a reload gets the
// new mqtt.write_timeout and mqtt.max_outbound_buffer; one accepted before
// keeps its own.
func TestReloadOutboundLimits(t *testing.T) {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	s, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a1, b1 := net.Pipe()
	defer a1.Close()
	defer b1.Close()
	before := s.wrapConn(a1).(*outConn)

	next := *cfg
	next.MQTT.WriteTimeout = config.Duration(2 * time.Second)
	next.MQTT.MaxOutboundBuffer = 128 << 10
	if _, err := s.Reload(&next); err != nil {
		t.Fatal(err)
	}
	a2, b2 := net.Pipe()
	defer a2.Close()
	defer b2.Close()
	after := s.wrapConn(a2).(*outConn)

	if before.timeout != 30*time.Second || before.limit != 4<<20 {
		t.Errorf("connection accepted before the reload: timeout %v, limit %d; want 30s, 4MiB", before.timeout, before.limit)
	}
	if after.timeout != 2*time.Second || after.limit != 128<<10 {
		t.Errorf("connection accepted after the reload: timeout %v, limit %d; want 2s, 128KiB", after.timeout, after.limit)
	}
}
