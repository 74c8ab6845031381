package host

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// TestUseBrokerServices wires a host and a real broker in the order
// cmd/propolis does (host, broker with the host as its extensions,
// UseBroker, LoadAll) and checks that the host reaches the broker's
// services.
func TestUseBrokerServices(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := New(Options{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	if s := h.services(); s != nil {
		t.Fatalf("services before UseBroker = %v, want nil", s)
	}

	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	srv, err := broker.New(broker.Options{Config: cfg, Logger: log, Extensions: broker.Extensions{Authenticator: h, Events: h}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	h.UseBroker(srv)
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}

	s := h.services()
	if s != broker.Services(srv) {
		t.Fatalf("services() = %v, want the broker %p", s, srv)
	}
	// A call through it reaches the broker's memory.
	if err := s.PutRetained(broker.Message{Topic: "via/host", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if m, ok := srv.Retained("via/host"); !ok || string(m.Payload) != "x" {
		t.Fatalf("Retained after a call through the host = %+v, %v", m, ok)
	}
}
