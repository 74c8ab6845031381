package brokertest

import (
	"io"
	"log/slog"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// Start runs a broker with ext, the embedded configuration and a data
// folder in the test's temporary folder, listening on a free loopback
// port, until the test ends, and returns its address. tune, if given,
// changes the configuration first (a durability mode, a limit). The
// broker's log is discarded.
func Start(t testing.TB, ext broker.Extensions, tune ...func(*config.Config)) string {
	t.Helper()
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	for _, f := range tune {
		f(cfg)
	}
	s, err := broker.New(broker.Options{Config: cfg, Extensions: ext, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.Addr(cfg.Listeners[0].Name)
}
