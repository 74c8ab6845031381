package broker

import (
	"fmt"
	"runtime"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestLevelsDoesNotCopyRetained: with 20,000 retained messages, Levels
// counts them without copying mochi's map of them (which cost seconds per
// scrape at 200,000): it allocates well under one copy's size, and the
// count leaves mochi's $SYS topics out, with and without the empty-payload
// clears and replacements of the topics it holds.
func TestLevelsDoesNotCopyRetained(t *testing.T) {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Durability.Mode = "none"
	s, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// mochi publishes its $SYS topics, retained, every second.
	poll.Until(t, "mochi's $SYS topics retained", func() bool {
		return len(s.mochi.Topics.Messages(mqtt.SysPrefix+"/#")) > 5
	})
	const n = 20000
	retain := func(topic string, payload []byte) {
		s.mochi.Topics.RetainMessage(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName:   topic, Payload: payload,
		})
	}
	for i := range n {
		retain(fmt.Sprintf("r/%d/%d", i/100, i), []byte("payload"))
	}
	retain("r/0/0", []byte("replaced"))
	retain("r/0/1", nil)
	retain("r/0/1", nil)
	retain("absent", nil)
	if got := s.Levels().RetainedMessages; got != n-1 {
		t.Errorf("RetainedMessages = %d, want %d", got, n-1)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s.Levels()
	runtime.ReadMemStats(&after)
	// A copy of the map holds n packets of several hundred bytes each.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<10 {
		t.Errorf("Levels allocated %d bytes with %d retained messages, want under 256 KiB (no copy)", alloc, n)
	}
}
