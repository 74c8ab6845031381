package store

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// timings counts what a store reports through Options.Timings.
type timings struct{ writes, fsyncs, writeNs, fsyncNs atomic.Int64 }

func (c *timings) options() Timings {
	return Timings{
		Write: func(d time.Duration) { c.writes.Add(1); c.writeNs.Add(int64(d)) },
		Fsync: func(d time.Duration) { c.fsyncs.Add(1); c.fsyncNs.Add(int64(d)) },
	}
}

// TestTimings: every write is timed once, whatever its kind (Set, Delete,
// batch commit, attribute); durable writes in sync mode fsync the
// write-ahead log and the fsync is timed; periodic mode's syncer is timed
// too; nothing is timed before a write.
func TestTimings(t *testing.T) {
	t.Run("sync", func(t *testing.T) {
		var c timings
		s, err := Open(Options{Dir: t.TempDir(), Durability: DurabilitySync, Logger: quiet, Timings: c.options()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if n := c.writes.Load(); n != 0 {
			t.Fatalf("%d writes timed before any", n)
		}
		fsyncs := c.fsyncs.Load()
		if err := s.PutSession(&Session{ClientID: "a"}, true); err != nil {
			t.Fatal(err)
		}
		if err := s.PutSubscription(&Subscription{ClientID: "a", Filter: "x"}, false); err != nil {
			t.Fatal(err)
		}
		if err := s.AttributePut("a", Attribute{Key: "k", Value: []byte("v")}, false); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSubscription("a", "x", false); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSession("a", true); err != nil {
			t.Fatal(err)
		}
		if n := c.writes.Load(); n != 5 {
			t.Errorf("%d writes timed, want 5", n)
		}
		if c.writeNs.Load() <= 0 {
			t.Errorf("write time %d ns", c.writeNs.Load())
		}
		if n := c.fsyncs.Load() - fsyncs; n < 1 {
			t.Errorf("two durable writes in sync mode: %d write-ahead log fsyncs timed", n)
		}
		if c.fsyncNs.Load() <= 0 {
			t.Errorf("fsync time %d ns", c.fsyncNs.Load())
		}
		if s.DiskUsage() == 0 {
			t.Error("DiskUsage 0 on an open store")
		}
		_ = s.Close()
		if s.DiskUsage() != 0 {
			t.Error("DiskUsage not 0 after Close")
		}
	})
	t.Run("periodic", func(t *testing.T) {
		var c timings
		s, err := Open(Options{Dir: t.TempDir(), Durability: DurabilityPeriodic, FlushInterval: 10 * time.Millisecond, Logger: quiet, Timings: c.options()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.PutSession(&Session{ClientID: "a"}, true); err != nil {
			t.Fatal(err)
		}
		fsyncs := c.fsyncs.Load()
		poll.Until(t, "the periodic syncer's fsync timed", func() bool { return c.fsyncs.Load() > fsyncs })
	})
}
