package main

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// TestLogOutputReload: a new log.level and log.format apply to every
// logger made from the output, those made with With and WithGroup before
// the change included.
func TestLogOutputReload(t *testing.T) {
	var b strings.Builder
	out := newLogOutput(config.Log{Level: "info", Format: "text"}, &b)
	root := out.logger()
	client := root.With("client", "c1").WithGroup("g").With("k", 1)

	client.Debug("hidden")
	client.Info("text line")
	out.set(config.Log{Level: "debug", Format: "json"})
	client.Debug("json debug")
	root.Warn("json root")
	out.set(config.Log{Level: "error", Format: "json"})
	client.Warn("hidden too")

	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), b.String())
	}
	if !strings.Contains(lines[0], `msg="text line" client=c1 g.k=1`) {
		t.Errorf("text line = %s", lines[0])
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
		t.Fatalf("line after the change is not JSON: %s", lines[1])
	}
	if m["msg"] != "json debug" || m["client"] != "c1" || m["level"] != "DEBUG" {
		t.Errorf("json line = %v", m)
	}
	if g, _ := m["g"].(map[string]any); g["k"] != float64(1) {
		t.Errorf("json line lost its group: %v", m)
	}
	if !strings.Contains(lines[2], `"msg":"json root"`) {
		t.Errorf("root json line = %s", lines[2])
	}
}

// TestLogOutputConcurrentSwitch: loggers writing while the format changes
// write whole lines, each text or JSON (run with -race).
func TestLogOutputConcurrentSwitch(t *testing.T) {
	var b strings.Builder
	out := newLogOutput(config.Log{Level: "info", Format: "text"}, &b)
	log := out.logger().With("client", "c1")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				log.Info("line", "g", g, "i", i)
			}
		}()
	}
	for i := range 50 {
		out.set(config.Log{Level: "info", Format: []string{"text", "json"}[i%2]})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) && !strings.HasPrefix(l, "time=") {
			t.Fatalf("broken line %q", l)
		}
	}
}
