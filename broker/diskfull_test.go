package broker_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sys/unix"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// A full disk is tested on a real one: a small tmpfs the test mounts (it
// needs root or CAP_SYS_ADMIN, and is skipped otherwise), a real broker and
// real MQTT clients. The disk is filled with a filler file the test
// allocates, and freed by removing it.

const (
	tmpfsSize    = 64 << 20
	testReserve  = 16 << 20
	fillPayload  = 8 << 10
	maxPublishes = 20000 // a bound on the fill loop, far above what the disk holds
)

// mountTmpfs mounts a tmpfs of size bytes on a new temporary folder and
// unmounts it when the test ends; it skips the test when it cannot mount.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("full-disk test skipped: cannot mount a %d MiB tmpfs on %s (needs root or CAP_SYS_ADMIN): %v", size>>20, dir, err)
	}
	t.Cleanup(func() {
		// A refused store.Open leaves the files pebble had opened before
		// its fatal error open (the process exits then), so the mount may
		// be busy: detach it lazily instead.
		err := unix.Unmount(dir, 0)
		if errors.Is(err, unix.EBUSY) {
			t.Logf("unmount %s: %v; detaching it", dir, err)
			err = unix.Unmount(dir, unix.MNT_DETACH)
		}
		if err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// freeSpace is the free space of the file system holding dir.
func freeSpace(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := store.StatfsFree(dir)
	if err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

// fillTo allocates a file at path that leaves about left bytes free on its
// file system.
func fillTo(t *testing.T, path string, left int64) {
	t.Helper()
	n := freeSpace(t, filepath.Dir(path)) - left
	if n <= 0 {
		t.Fatalf("fill %s: only %d bytes free, want to leave %d", path, n+left, left)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, n); err != nil {
		t.Fatalf("fallocate %s %d: %v", path, n, err)
	}
}

// publishIndexed publishes the 8 KiB QoS 1 message number i on fill/x and
// returns the PUBACK's reason code (0 for success).
func publishIndexed(t *testing.T, c *client5, i int) byte {
	t.Helper()
	payload := make([]byte, fillPayload)
	binary.BigEndian.PutUint32(payload, uint32(i))
	pr, err := c.Publish(ctx5(t), &paho.Publish{Topic: "fill/x", QoS: 1, Payload: payload})
	if pr == nil {
		t.Fatalf("publish %d: no PUBACK: %v", i, err)
	}
	return pr.ReasonCode
}

func TestFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, tmpfsSize)
	cfg := testConfig(filepath.Join(mnt, "data"))
	cfg.Store.MinFreeSpace = testReserve
	cfg.MQTT.MaxQueuedMessages = 65535
	rules := &brokertest.Rules{}
	ext := broker.Extensions{Authenticator: rules, Events: rules}
	b := &svcBroker{t: t, cfg: cfg, rules: rules}
	b.Server, b.addr = startServer(t, cfg, ext)

	// An offline persistent subscriber collects a copy of every message.
	sub, _ := b.connect5("sub", true, 3600, nil)
	sub.subscribe(t, "fill/#", 1)
	sub.leave()
	b.awaitOffline("sub")
	live, _ := b.connect5("live", true, 0, nil)
	live.subscribe(t, "live", 0)
	keep, _ := b.connect5("keep", true, 3600, nil)
	keep.subscribe(t, "keep", 1)

	// Leave 8 MiB above the reserve, then publish until refused.
	filler := filepath.Join(mnt, "filler")
	fillTo(t, filler, testReserve+8<<20)
	pub, _ := b.connect5("pub", true, 0, nil)
	acked := 0
	for ; ; acked++ {
		if acked == maxPublishes {
			t.Fatalf("%d publishes acknowledged on a %d MiB disk, none refused", acked, tmpfsSize>>20)
		}
		code := publishIndexed(t, pub, acked)
		if code == 0 {
			continue
		}
		if code != broker.CodeQuotaExceeded {
			t.Fatalf("publish %d: reason code %#x, want 0x97", acked, code)
		}
		break
	}
	t.Logf("%d PUBACKs before 0x97 with %d MiB free above the reserve", acked, 8)
	h := b.StoreHealth()
	if !h.SpaceKnown || !h.DiskFull || h.RefusedPublishes != 1 || h.MinFreeBytes != testReserve || h.FullSince.IsZero() {
		t.Fatalf("StoreHealth = %+v, want full, 1 refused publish, reserve %d", h, testReserve)
	}

	// QoS 2 gets PUBREC 0x97; a persistent session's new subscription 0x97.
	if pr, _ := pub.Publish(ctx5(t), &paho.Publish{Topic: "fill/x", QoS: 2, Payload: []byte("q2")}); pr == nil || pr.ReasonCode != broker.CodeQuotaExceeded {
		t.Fatalf("QoS 2 while full: %+v, want PUBREC 0x97", pr)
	}
	sub2, _ := b.connect5("sub2", true, 3600, nil)
	sa, _ := sub2.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "other", QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != broker.CodeQuotaExceeded {
		t.Fatalf("SUBSCRIBE while full: %+v, want 0x97", sa)
	}
	if got := b.stored("sub2"); strings.Contains(got, "subscription") {
		t.Fatalf("sub2 stored %s after a refused SUBSCRIBE, want no subscription", got)
	}
	sub2.leave()
	// Subscribing again to a filter the session has keeps it (stored with
	// its old options), rather than losing it.
	sa, _ = keep.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "keep", QoS: 0}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		t.Fatalf("re-SUBSCRIBE while full: %+v, want granted", sa)
	}
	if got := b.stored("keep"); !strings.Contains(got, "subscription keep") {
		t.Fatalf("keep stored %s after a re-SUBSCRIBE while full, want its subscription", got)
	}
	keep.leave()

	// QoS 0 still flows.
	if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "live", QoS: 0, Payload: []byte("qos0")}); err != nil {
		t.Fatal(err)
	}
	if p := live.next(t); string(p.Payload) != "qos0" {
		t.Fatalf("QoS 0 while full: got %q", p.Payload)
	}

	// A 3.1.1 QoS 1 publisher cannot be told: it is disconnected.
	lost := make(chan error, 1)
	c3 := v3Connect(t, v3Options(b.addr, "pub3").SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err }))
	c3.Publish("fill/x", 1, false, make([]byte, fillPayload))
	select {
	case <-lost:
	case <-time.After(poll.Timeout):
		t.Fatal("3.1.1 QoS 1 publisher not disconnected while the disk is full")
	}

	// Space comes back: the broker acknowledges again by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the store to leave the full state", func() bool { return !b.StoreHealth().DiskFull })
	if code := publishIndexed(t, pub, acked); code != 0 {
		t.Fatalf("publish after space returned: reason code %#x", code)
	}
	acked++
	pub.leave()
	live.leave()

	// A restart on a nearly full folder, then on a full one, starts (full)
	// or refuses in one line.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, left := range []int64{2 << 20, 0} {
		restartOnFullDisk(t, cfg, ext, filler, left)
	}
	b.Server, b.addr = startServer(t, cfg, ext)

	// Every acknowledged message reaches the subscriber.
	sub, present := b.connect5("sub", false, 3600, nil)
	if !present {
		t.Fatal("subscriber's session lost")
	}
	seen := make(map[uint32]bool, acked)
	for len(seen) < acked {
		p := sub.next(t)
		i := binary.BigEndian.Uint32(p.Payload)
		if int(i) >= acked {
			t.Fatalf("message %d delivered, only %d acknowledged", i, acked)
		}
		seen[i] = true
	}
	if h := b.StoreHealth(); h.DiskFull || h.UnsavedCopies != 0 {
		t.Fatalf("after the restart with space: StoreHealth = %+v", h)
	}
}

// restartOnFullDisk fills the disk to leave left bytes free and starts a
// broker on it: it must start, full exactly when below the reserve, or
// refuse with one line wrapping store.ErrDiskFull. The filler is removed
// again.
func restartOnFullDisk(t *testing.T, cfg *config.Config, ext broker.Extensions, filler string, left int64) {
	t.Helper()
	fillTo(t, filler, left)
	defer func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}()
	s, err := broker.New(broker.Options{Config: cfg, Extensions: ext, Logger: testLogger(t)})
	switch {
	case err == nil:
		// Opening may free space (pebble removes obsolete logs), so the
		// store is full only if it still has less than the reserve.
		h := s.StoreHealth()
		// The guard enters the full state below the reserve and leaves it
		// only above 9/8 of it (hysteresis); in between either is right.
		if (h.DiskFull && h.FreeBytes >= testReserve+testReserve/8) || (!h.DiskFull && h.FreeBytes < testReserve) {
			t.Errorf("restarted with %d bytes left: StoreHealth = %+v, want full below the reserve, not full above 9/8 of it", left, h)
		}
		t.Logf("restart with %d bytes left: started, full %v, %d bytes free", left, h.DiskFull, h.FreeBytes)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	case errors.Is(err, store.ErrDiskFull) && !strings.Contains(err.Error(), "\n"):
		t.Logf("restart with %d bytes left: refused: %v", left, err)
	default:
		t.Fatalf("restart with %d bytes left: %v, want a start or one line wrapping store.ErrDiskFull", left, err)
	}
}

// TestFullDiskWithoutGuard turns the guard off (store.min_free_space 0) in
// a child broker on a 20 MiB tmpfs and fills the disk: pebble's fatal write
// error makes the broker exit with status 2 and one clear log line, and a
// restart, once space is freed, delivers every acknowledged message.
func TestFullDiskWithoutGuard(t *testing.T) {
	mnt := mountTmpfs(t, 20<<20)
	data := filepath.Join(mnt, "data")
	filler := filepath.Join(mnt, "filler")
	fillTo(t, filler, 16<<20) // 4 MiB to give back after the crash

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+data, childEnv+"_MIN_FREE=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if !ok {
		t.Fatalf("child broker: %q", line)
	}

	sub := paho3.NewClient(v3Options(addr, "sub").SetCleanSession(false))
	wait(t, "subscriber connect", sub.Connect())
	wait(t, "subscribe", sub.Subscribe("fill/#", 1, nil))
	sub.Disconnect(100)

	pub := paho3.NewClient(v3Options(addr, "pub").SetCleanSession(true))
	wait(t, "publisher connect", pub.Connect())
	acked := 0
	payload := make([]byte, fillPayload)
	for ; acked < maxPublishes; acked++ {
		binary.BigEndian.PutUint32(payload, uint32(acked))
		tok := pub.Publish("fill/x", 1, false, payload)
		if !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil || !pub.IsConnectionOpen() {
			break
		}
	}
	pub.Disconnect(0)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("child broker: %v, want exit status 2; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "store failed, exiting") || strings.Contains(stderr.String(), "goroutine ") {
		t.Fatalf("child broker's last words are not one clear line:\n%s", stderr.String())
	}
	t.Logf("%d PUBACKs before the broker exited on a full disk", acked)

	// Space returns (the tmpfs grows to 64 MiB); the broker restarts and
	// nothing acknowledged is lost.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_REMOUNT, "size="+strconv.Itoa(tmpfsSize)); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	cfg := testConfig(data)
	cfg.Store.MinFreeSpace = testReserve
	cfg.MQTT.MaxQueuedMessages = 65535
	_, addr = startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	r := newRecv()
	sub = paho3.NewClient(v3Options(addr, "sub").SetCleanSession(false).SetDefaultPublishHandler(r.handler))
	wait(t, "subscriber reconnect", sub.Connect())
	defer sub.Disconnect(0)
	seen := make(map[uint32]bool, acked)
	for len(seen) < acked {
		select {
		case m := <-r.ch:
			if i := binary.BigEndian.Uint32(m.Payload()); int(i) < acked {
				seen[i] = true
			}
		case <-time.After(poll.Timeout):
			t.Fatalf("%d of %d acknowledged messages received", len(seen), acked)
		}
	}
}
