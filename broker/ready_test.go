package broker_test

import (
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestReady: Ready fails, saying why, before Start, without a security
// extension, once a listener's accept loop has ended and after Close; it
// is nil while the broker serves with a security extension.
func TestReady(t *testing.T) {
	errOf := func(err error) string {
		if err == nil {
			return "<nil>"
		}
		return err.Error()
	}
	cfg := testConfig(t.TempDir())
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := errOf(s.Ready()), "listeners not open yet: the broker has not started"; got != want {
		t.Errorf("Ready before Start = %q, want %q", got, want)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after Start = %v, want nil", err)
	}

	addr := s.Addr("tcp")
	s.StopAccepting("tcp")
	want := `listener "tcp" on ` + addr + " stopped accepting connections"
	poll.Until(t, "Ready to report the listener that stopped accepting", func() bool { return errOf(s.Ready()) == want })

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := errOf(s.Ready()), "listeners closed: the broker is shutting down\nstore closed"; got != want {
		t.Errorf("Ready after Close = %q, want %q", got, want)
	}
}

// TestReadyWithoutSecurity: a broker without a security extension is not
// ready, and says so, however well its listeners and store are.
func TestReadyWithoutSecurity(t *testing.T) {
	s, _ := startServer(t, testConfig(t.TempDir()), broker.Extensions{})
	if got, want := s.Ready(), "no security extension loaded: every CONNECT is refused"; got == nil || got.Error() != want {
		t.Errorf("Ready = %v, want %q", got, want)
	}
}
