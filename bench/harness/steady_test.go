package harness

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestMain lets this test binary be the steady load's child, as
// propolis-bench is (startSteady runs os.Executable with the flag).
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "--"+SteadyChildFlag {
		if err := RunSteadyChild(os.Args[2], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSteadyChild: the steady load runs in a child process whose
// arrivals reach the parent; a flush request brings every arrival so
// far; stop reports the messages lost (none on one broker at this rate)
// and ends the child.
func TestSteadyChild(t *testing.T) {
	addr := brokertest.Start(t, broker.Extensions{Authenticator: brokertest.AllowAll{}}, func(c *config.Config) { c.Durability.Mode = "none" })
	s, err := startSteady(addr, addr, 200)
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	count := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.arrivals)
	}
	poll.Until(t, "50 arrivals reach the parent", func() bool { return count() >= 50 })
	for range 3 {
		if err := s.sync(); err != nil {
			t.Fatal(err)
		}
	}
	w := s.window(s.base, time.Now())
	if w.rate <= 0 {
		t.Fatalf("window after flushes: %+v, want arrivals", w)
	}
	if lost := s.stop(); lost != 0 {
		t.Fatalf("stop: %d messages lost, want 0", lost)
	}
	if s.cmd.ProcessState == nil || !s.cmd.ProcessState.Success() {
		t.Fatalf("the child did not end cleanly: %v", s.cmd.ProcessState)
	}
}

// TestSteadyChildEndsWithItsParent: when its stdin ends (the parent
// died), the child stops its load, says so and exits.
func TestSteadyChildEndsWithItsParent(t *testing.T) {
	addr := brokertest.Start(t, broker.Extensions{Authenticator: brokertest.AllowAll{}}, func(c *config.Config) { c.Durability.Mode = "none" })
	s, err := startSteady(addr, addr, 200)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.in.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case lost := <-s.ended:
		if lost < 0 {
			t.Fatal("the child ended without its count")
		}
	case <-time.After(poll.Timeout):
		t.Fatal("the child did not end when its stdin did")
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("the child: %v", err)
	}
}
