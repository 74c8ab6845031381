// Package natstest starts real NATS servers, embedded in the test process,
// for the tests of the cluster code: one server with JetStream, its store in
// the test's temporary folder, listening on a random loopback port. The
// server and every connection made with Connect end with the test.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// readyTimeout bounds how long Start waits for the server to accept
// connections: long enough for a loaded two-core machine.
const readyTimeout = 30 * time.Second

// Start runs one NATS server with JetStream for t, named name, its store in
// a fresh folder of t.TempDir(), its client port a random loopback port,
// and shuts it down when t ends.
func Start(t testing.TB, name string) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoSigs:     true,
		NoLog:      true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server %s: %v", name, err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(readyTimeout) {
		t.Fatalf("nats server %s not ready for connections after %s", name, readyTimeout)
	}
	return s
}

// Connect opens an in-process connection to s, closed when t ends.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(s)}, opts...)...)
	if err != nil {
		t.Fatalf("connect to nats server %s: %v", s.Name(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}
