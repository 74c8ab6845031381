package store

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDisk is an injected SpaceFunc: a free-space figure the test sets,
// and a count of readings.
type fakeDisk struct {
	free  atomic.Uint64
	calls atomic.Int64
}

func (d *fakeDisk) fn(string) (uint64, error) {
	d.calls.Add(1)
	return d.free.Load(), nil
}

// fakeClock is the guard's clock, moved by the test.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) add(d time.Duration) { c.t.Add(int64(d)) }

const mb = 1 << 20

// newTestGuard returns a guard with a 10 MiB reserve on a fake disk with
// free bytes free, logging into buf.
func newTestGuard(free uint64, buf *syncBuffer) (*spaceGuard, *fakeDisk, *fakeClock) {
	d := &fakeDisk{}
	d.free.Store(free)
	c := &fakeClock{}
	c.t.Store(time.Unix(1000, 0).UnixNano())
	g := &spaceGuard{dir: "data", log: slog.New(slog.NewTextHandler(buf, nil)), minFree: 10 * mb, free: d.fn, now: c.now}
	g.refresh(true)
	return g, d, c
}

func TestSpaceGuard(t *testing.T) {
	buf := &syncBuffer{}
	g, d, c := newTestGuard(12*mb, buf)

	// Admitted bytes count against the last reading until the next one:
	// 1 KiB writes, 2 MiB above the reserve, are admitted with one reading
	// per MiB, not one per write.
	calls := d.calls.Load()
	for i := 0; i < 1024; i++ {
		if err := g.admit(1024, false); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if n := d.calls.Load() - calls; n != 1 {
		t.Fatalf("%d readings for 1 MiB of writes, want 1", n)
	}

	// The disk fills: the next reading puts the guard below the reserve.
	d.free.Store(10*mb - 1)
	c.add(spaceRefreshInterval)
	if err := g.admit(100, false); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("below the reserve: %v, want ErrDiskFull", err)
	}
	if sp := g.state(); !sp.Full || sp.Refused != 1 || sp.MinFree != 10*mb {
		t.Fatalf("state %+v, want full, 1 refused", sp)
	}
	// A critical write may use half of the reserve, but not more.
	if err := g.admit(100, true); err != nil {
		t.Fatalf("critical write in the reserve: %v", err)
	}
	if err := g.admit(5*mb, true); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("critical write past half the reserve: %v, want ErrDiskFull", err)
	}

	// Refused writes read the disk at most once per interval.
	calls = d.calls.Load()
	for i := 0; i < 100; i++ {
		_ = g.admit(100, false)
	}
	if n := d.calls.Load() - calls; n != 0 {
		t.Fatalf("%d readings while refusing within one interval, want 0", n)
	}

	// Space comes back, but not past the hysteresis: still full.
	d.free.Store(10*mb + 100)
	c.add(spaceRefreshInterval)
	if err := g.admit(10, false); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("just above the reserve while full: %v, want ErrDiskFull", err)
	}
	// Past reserve + 1/8: the guard leaves the full state by itself.
	d.free.Store(12 * mb)
	c.add(spaceRefreshInterval)
	if err := g.admit(10, false); err != nil {
		t.Fatalf("after space returned: %v", err)
	}
	if sp := g.state(); sp.Full || sp.Refused != 103 {
		t.Fatalf("state %+v, want not full, 103 refused", sp)
	}
	logs := buf.String()
	if n := strings.Count(logs, "STORE DISK FULL"); n != 1 {
		t.Fatalf("%d full warnings, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "store disk space recovered") {
		t.Fatalf("no recovery line:\n%s", logs)
	}
}

func TestSpaceGuardOff(t *testing.T) {
	d := &fakeDisk{}
	s, err := Open(Options{Dir: t.TempDir(), Durability: DurabilitySync, Logger: quiet, MinFreeSpace: -1, FreeSpace: d.fn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutPending(1, &Message{Topic: "t"}, true); err != nil {
		t.Fatal(err)
	}
	if n := d.calls.Load(); n != 0 {
		t.Fatalf("guard off read the disk %d times", n)
	}
}

// TestStoreRefusesNearFullDisk runs the guard inside a Store: which writes
// it refuses, that nothing refused is written, and that deletes always go
// through.
func TestStoreRefusesNearFullDisk(t *testing.T) {
	d := &fakeDisk{}
	d.free.Store(100 * mb)
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Durability: DurabilitySync, Logger: quiet, MinFreeSpace: 10 * mb, FreeSpace: d.fn})
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeClock{}
	c.t.Store(time.Now().UnixNano())
	s.guard.now = c.now
	mustDo(t, s.PutPending(1, &Message{Topic: "t", Payload: []byte("kept")}, true))

	d.free.Store(9 * mb)
	c.add(time.Hour)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"pending", s.PutPending(2, &Message{Topic: "t"}, true)},
		{"retained", s.PutRetained(&Message{Topic: "t"}, true)},
		{"subscription", s.PutSubscription(&Subscription{ClientID: "c", Filter: "t"}, true)},
		{"extension", s.ExtensionPut("ext", "k", []byte("v"), true)},
	} {
		if !errors.Is(tc.err, ErrDiskFull) {
			t.Errorf("%s: %v, want ErrDiskFull", tc.name, tc.err)
		}
	}
	// Critical writes and deletes still go through.
	mustDo(t, s.PutSession(&Session{ClientID: "c"}, true))
	mustDo(t, s.PutInflight(&Message{ClientID: "c", PacketID: 1, Topic: "t"}, true))
	mustDo(t, s.DeletePending(1, true))
	if sp := s.Space(); !sp.Full || sp.Refused != 4 {
		t.Fatalf("Space() = %+v, want full with 4 refused", sp)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened on the same (fake) nearly full disk: it starts, full.
	s, err = Open(Options{Dir: dir, Durability: DurabilitySync, Logger: quiet, MinFreeSpace: 10 * mb, FreeSpace: d.fn})
	if err != nil {
		t.Fatalf("reopen below the reserve: %v", err)
	}
	defer s.Close()
	if sp := s.Space(); !sp.Full {
		t.Fatalf("reopened below the reserve: %+v, want full", sp)
	}
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pending) != 0 || len(snap.Retained) != 0 || len(snap.Subscriptions) != 0 ||
		len(snap.Sessions) != 1 || len(snap.Inflight) != 1 {
		t.Fatalf("after refusals: %d pending, %d retained, %d subscriptions, %d sessions, %d in-flight; want 0 0 0 1 1",
			len(snap.Pending), len(snap.Retained), len(snap.Subscriptions), len(snap.Sessions), len(snap.Inflight))
	}
}

func TestOpenFailedNamesFreeSpace(t *testing.T) {
	free := func(string) (uint64, error) { return 3 << 20, nil }
	err := openFailed("/data", errors.New("pebble open: write /data/000004.log: no space left on device"), free, 64<<20)
	want := "open store /data: not enough free disk space (store.min_free_space reached): 3.0 MiB free, " +
		"store.min_free_space 64.0 MiB; free space in the folder and start again: pebble open: write /data/000004.log: no space left on device"
	if err == nil || err.Error() != want || !errors.Is(err, ErrDiskFull) {
		t.Fatalf("openFailed = %v\nwant %s", err, want)
	}
	err = openFailed("/data", ErrCorrupt, free, 64<<20)
	if err.Error() != "open store /data: data corrupt" || errors.Is(err, ErrDiskFull) {
		t.Fatalf("openFailed(corrupt) = %v", err)
	}
}
