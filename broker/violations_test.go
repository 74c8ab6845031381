package broker_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// lockedBuffer is a log destination for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the logged lines containing s.
func (l *lockedBuffer) lines(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// Protocol violations, from many connections, are logged as one short
// line each (no packet dump), at most 10 per 10 s; the first line of the
// next window counts the others.
func TestProtocolViolationsAreSummarizedAndRateLimited(t *testing.T) {
	out := &lockedBuffer{}
	cfg := testConfig(t.TempDir())
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}},
		Logger: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.SetViolationClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr(cfg.Listeners[0].Name)
	payload := bytes.Repeat([]byte("PAYLOAD-"), 256) // 2 KiB, must not reach the log

	// violate sends, after a CONNECT, a PUBLISH to a wildcard topic (mochi
	// decodes it, then refuses it) or a PUBLISH with QoS 3 (mochi cannot
	// decode it), and waits for the broker to close the connection.
	violate := func(i int, decodable bool) {
		c, err := rawmqtt.Dial(addr, fmt.Sprintf("violator-%d", i))
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Drop()
		if decodable {
			c.Publish("a/#", 0, 0, payload)
		} else {
			_ = c.Send(0x36, append([]byte{0, 1, 'a', 0, 1}, payload...))
		}
		if err := c.Flush(); err != nil {
			t.Error(err)
			return
		}
		_ = c.SetDeadline(time.Now().Add(poll.Timeout))
		for {
			if _, _, err := c.ReadPacket(); err != nil {
				return // closed by the broker
			}
		}
	}
	const n = 30
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); violate(i, i%3 != 0) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	poll.Until(t, "30 violations reported", func() bool { return s.ViolationsSeen() == n })

	logged := out.lines(`msg="protocol violation"`)
	if len(logged) != 10 {
		t.Fatalf("%d violation lines in the first window, want 10:\n%s", len(logged), strings.Join(logged, "\n"))
	}
	for _, line := range logged {
		if len(line) > 400 || strings.Contains(line, "PAYLOAD") || strings.Contains(line, "pk=") {
			t.Fatalf("violation line not bounded (%d bytes): %s", len(line), line)
		}
		if !strings.Contains(line, "remote=127.0.0.1:") || !strings.Contains(line, "violation=") {
			t.Fatalf("violation line without remote or violation: %s", line)
		}
	}
	if !strings.Contains(strings.Join(logged, "\n"), "packet=Publish length=") {
		t.Fatalf("no line names the packet and its length:\n%s", strings.Join(logged, "\n"))
	}
	if l := out.lines("error processing packet"); len(l) > 0 {
		t.Fatalf("mochi's packet dump was logged: %.300s", l[0])
	}

	// The next window: the first line counts the 20 left out.
	mu.Lock()
	now = now.Add(10 * time.Second)
	mu.Unlock()
	violate(n, true)
	poll.Until(t, "31 violations reported", func() bool { return s.ViolationsSeen() == n+1 })
	logged = out.lines(`msg="protocol violation"`)
	if len(logged) != 11 || !strings.Contains(logged[10], "suppressed=20") {
		t.Fatalf("after the window, lines = %d, last %q; want 11, the last with suppressed=20", len(logged), logged[len(logged)-1])
	}
}
