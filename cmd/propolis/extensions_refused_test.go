package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/host"
)

// TestListShowsRefusedServiceCalls: `propolis extensions list` reads the
// refused service calls from the folder's per-service counts
// (Status.ServiceCalls, the one count of them), as a running broker's
// status file carries them.
func TestListShowsRefusedServiceCalls(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.ExtensionsDir = t.TempDir(), t.TempDir()
	st := host.Status{ID: "svc", Version: "1.0.0", State: host.StateRunning, ServiceRate: 1, ServiceBurst: 5,
		ServiceCalls: []host.ServiceCalls{
			{Service: "storage", Status: "OK", Calls: 7},
			{Service: "storage", Status: "RATE_LIMITED", Calls: 2},
			{Service: "clients", Status: "RATE_LIMITED", Calls: 1},
			{Service: "clients", Status: "NOT_PERMITTED", Calls: 4},
		}}
	doc := map[string]any{"pid": os.Getpid(), "updated": time.Now().UTC(), "extensions": []host.Status{st}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statusFile(cfg), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := listExtensions(cfg, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(refused: 3 rate-limited, 4 not permitted)") {
		t.Errorf("list:\n%s", out.String())
	}
}
