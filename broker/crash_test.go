package broker_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// The crash tests run the broker in a child process (this test binary,
// re-executed with childEnv set) so that it can be killed with SIGKILL.
const childEnv = "PROPOLIS_TEST_BROKER_DATA"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runChildBroker(dir)
		return
	}
	os.Exit(m.Run())
}

// runChildBroker serves on a free port with the native allow-all security,
// prints "READY <addr>" and runs until killed.
func runChildBroker(dir string) {
	cfg := testConfig(dir)
	if addr := os.Getenv(childEnv + "_ADDR"); addr != "" {
		cfg.Listeners[0].Address = addr
	}
	if v := os.Getenv(childEnv + "_MIN_FREE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		cfg.Store.MinFreeSpace = config.ByteSize(n)
		cfg.MQTT.MaxQueuedMessages = 65535 // the full-disk test's subscriber queues more than 1000
	}
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}}, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err == nil {
		err = s.Start()
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", s.Addr(cfg.Listeners[0].Name))
	switch os.Getenv(childEnv + "_WRITES") {
	case "storage":
		childStoragePuts(s)
	case "attributes":
		childAttributePuts(s, s.Addr(cfg.Listeners[0].Name))
	}
	select {}
}

// childBroker is a broker running in a child process.
type childBroker struct {
	cmd  *exec.Cmd
	addr string
}

// runChild starts this test binary as a child broker on dir with the
// extra environment env (see runChildBroker), killed when the test ends,
// and returns it with the lines of its standard output (closed when it
// ends).
func runChild(t *testing.T, dir string, env ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+dir), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
	}()
	return cmd, lines
}

// startChild starts a child broker on dir (and addr, if not empty).
func startChild(t *testing.T, dir, addr string) *childBroker {
	t.Helper()
	cmd, line := runChild(t, dir, childEnv+"_ADDR="+addr)
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "READY ") {
			t.Fatalf("child broker: %s", l)
		}
		return &childBroker{cmd: cmd, addr: strings.TrimPrefix(l, "READY ")}
	case <-time.After(poll.Timeout):
		t.Fatal("child broker did not start")
		return nil
	}
}

// kill sends SIGKILL and reaps the process. It may run on any goroutine.
func (c *childBroker) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// TestKill9KeepsAcknowledgedMessages: a persistent subscriber goes offline, a
// publisher sends up to 1,000 QoS 1 messages, the broker is killed with
// SIGKILL while publishing, restarted on the same data folder, and the
// subscriber must receive every message the broker acknowledged, in order.
func TestKill9KeepsAcknowledgedMessages(t *testing.T) {
	dir := t.TempDir()
	b := startChild(t, dir, "")

	sub := paho3.NewClient(v3Options(b.addr, "subscriber").SetCleanSession(false))
	wait(t, "subscriber connect", sub.Connect())
	wait(t, "subscribe", sub.Subscribe("crash/test", 1, nil))
	sub.Disconnect(100)

	pub := paho3.NewClient(v3Options(b.addr, "publisher").SetCleanSession(true).SetMaxResumePubInFlight(1))
	wait(t, "publisher connect", pub.Connect())

	const total = 1000
	killAt := 300 + int(time.Now().UnixNano()%400) // somewhere in the middle
	var acked []int
	var killed sync.Once
	for i := 0; i < total; i++ {
		if i == killAt {
			// Kill while a window of publishes is in flight.
			go killed.Do(b.kill)
		}
		tok := pub.Publish("crash/test", 1, false, []byte(fmt.Sprint(i)))
		if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
			break
		}
		acked = append(acked, i)
	}
	killed.Do(b.kill)
	pub.Disconnect(0)
	if len(acked) < 300 {
		t.Fatalf("only %d messages acknowledged before the kill", len(acked))
	}
	t.Logf("acknowledged %d of %d before SIGKILL", len(acked), total)

	b2 := startChild(t, dir, "")
	got := make(chan int, total*2)
	o := v3Options(b2.addr, "subscriber").SetCleanSession(false).SetOrderMatters(true)
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
		var n int
		fmt.Sscan(string(m.Payload()), &n)
		got <- n
	})
	sub2 := paho3.NewClient(o)
	wait(t, "subscriber reconnect", sub2.Connect())
	defer sub2.Disconnect(0)

	// Every acknowledged message, in order. QoS 1 allows duplicates, and
	// messages stored but not yet acknowledged when the broker died may come
	// too; neither may break the order.
	isAcked := make(map[int]bool, len(acked))
	for _, n := range acked {
		isAcked[n] = true
	}
	seen := make(map[int]bool, total)
	last, missing := -1, len(acked)
	deadline := time.After(poll.Timeout)
	for missing > 0 {
		select {
		case n := <-got:
			switch {
			case seen[n]: // a redelivery
			case n < last:
				t.Fatalf("message %d arrived after %d", n, last)
			default:
				for k := last + 1; k < n; k++ {
					if isAcked[k] {
						t.Fatalf("acknowledged message %d skipped (got %d after %d)", k, n, last)
					}
				}
				last = n
				seen[n] = true
				if isAcked[n] {
					missing--
				}
			}
		case <-deadline:
			t.Fatalf("%d of %d acknowledged messages not received (last %d)", missing, len(acked), last)
		}
	}
}

// TestKill9SendsWillsOfConnectedClients: a client with a persistent session
// and a will is connected when the broker is killed; after the restart its
// will is published once (not again after a second restart).
func TestKill9SendsWillsOfConnectedClients(t *testing.T) {
	dir := t.TempDir()
	b := startChild(t, dir, "")
	watcher := paho3.NewClient(v3Options(b.addr, "watcher").SetCleanSession(false))
	wait(t, "watcher connect", watcher.Connect())
	wait(t, "subscribe", watcher.Subscribe("wills/#", 1, nil))
	watcher.Disconnect(100)

	device := paho3.NewClient(v3Options(b.addr, "device-1").SetCleanSession(false).SetWill("wills/device-1", "offline", 1, false))
	wait(t, "device connect", device.Connect())
	// A write that syncs the WAL, so the device's session record is on disk
	// (a retained QoS 1 message is stored durably before its PUBACK).
	pub := paho3.NewClient(v3Options(b.addr, "sync-pub"))
	wait(t, "pub connect", pub.Connect())
	wait(t, "publish", pub.Publish("other", 1, true, []byte("x")))
	b.kill()

	// The watcher speaks raw MQTT this time, so that its PUBACK of the will
	// and a synced write after it reach the broker in that order on one
	// connection (the broker handles a connection's packets one after the
	// other): the acknowledgement, written without fsync, is then on disk
	// before the next crash. Otherwise QoS 1 may deliver the will again
	// after it, which would be legitimate.
	b2 := startChild(t, dir, "")
	w2, present, err := rawmqtt.DialSession(b2.addr, "watcher")
	if err != nil || !present {
		t.Fatalf("watcher reconnect: session present %v, %v", present, err)
	}
	defer w2.Close()
	_ = w2.SetDeadline(time.Now().Add(poll.Timeout))
	typ, body, err := w2.ReadPacket()
	if err != nil {
		t.Fatalf("the will of the client connected at the crash was not published: %v", err)
	}
	topic, id, payload := rawmqtt.ParsePublish(typ, body)
	if typ>>4 != 3 || string(topic) != "wills/device-1" || string(payload) != "offline" {
		t.Fatalf("got packet %#x: %s %q, want the will wills/device-1 offline", typ, topic, payload)
	}
	w2.Puback(id)
	if err := w2.Send(0x33, []byte{0, 5, 'o', 't', 'h', 'e', 'r', 0, 1, 'x'}); err != nil { // retained QoS 1, id 1
		t.Fatal(err)
	}
	if err := w2.Flush(); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := w2.ReadPacket(); err != nil || typ>>4 != 4 {
		t.Fatalf("PUBACK of the synced write: packet %#x % x, %v", typ, body, err)
	}
	b2.kill()

	b3 := startChild(t, dir, "")
	got := make(chan string, 4)
	o := v3Options(b3.addr, "watcher").SetCleanSession(false)
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { got <- m.Topic() })
	w3 := paho3.NewClient(o)
	wait(t, "watcher reconnect", w3.Connect())
	defer w3.Disconnect(0)
	select {
	case m := <-got:
		t.Fatalf("will published again after a second restart: %q", m)
	case <-time.After(500 * time.Millisecond):
	}
}
