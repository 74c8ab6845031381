package broker_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// copyDir copies the fixture folder src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestServeMigratedV1Folder starts the broker on a copy of the format-1
// fixture: it is migrated in place, and a client of the old layout finds its
// session, its queued message and the retained messages.
func TestServeMigratedV1Folder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	copyDir(t, filepath.Join("..", "testdata", "store", "v1"), dir)
	_, addr := startServer(t, testConfig(dir), broker.Extensions{Authenticator: brokertest.AllowAll{}})

	if b, err := os.ReadFile(filepath.Join(dir, "FORMAT")); err != nil || string(b) != "propolis-data "+strconv.Itoa(store.FormatVersion)+"\n" {
		t.Fatalf("FORMAT after migration = %q, %v; want format %d", b, err, store.FormatVersion)
	}

	// legacy-pump was an MQTT 3.1.1 persistent session with a queued
	// message on "broadcast" (its other queued message expired in 2023).
	got := make(chan paho3.Message, 4)
	o := v3Options(addr, "legacy-pump").SetCleanSession(false)
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { got <- m })
	c := paho3.NewClient(o)
	tok := c.Connect()
	wait(t, "connect legacy-pump", tok)
	defer c.Disconnect(0)
	if !tok.(*paho3.ConnectToken).SessionPresent() {
		t.Fatal("legacy-pump's session did not survive the migration")
	}
	select {
	case m := <-got:
		if m.Topic() != "broadcast" {
			t.Fatalf("queued message on %q, want broadcast", m.Topic())
		}
	case <-time.After(poll.Timeout):
		t.Fatal("queued message not delivered")
	}

	r := newRecv()
	sub := v3Connect(t, v3Options(addr, "reader"))
	wait(t, "subscribe", sub.Subscribe("devices/#", 1, r.handler))
	if m := r.next(t, poll.Timeout); m.Topic() != "devices/sensor-17/status" || string(m.Payload()) != "online" {
		t.Fatalf("retained = %s %q", m.Topic(), m.Payload())
	}
}
