package cluster

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// gateNode is a Node with only what the protocol gate reads: its name,
// the registry entries it has seen (name -> protocol, heard age ago) and
// whether it has read the registry; its log goes to the buffer returned.
func gateNode(self string, read bool, entries map[string]struct {
	protocol int
	age      time.Duration
}) (*Node, *bytes.Buffer) {
	var buf bytes.Buffer
	n := &Node{cfg: config.Cluster{Name: self}, seen: map[string]seen{}, registryRead: read,
		log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))}
	for name, e := range entries {
		n.seen[name] = seen{entry: registryEntry{Name: name, Protocol: e.protocol}, at: time.Now().Add(-e.age)}
	}
	return n, &buf
}

type entry = struct {
	protocol int
	age      time.Duration
}

// TestFeatureGate: a feature is on only when this node has read the
// registry and every alive node, itself included, speaks its protocol;
// the nodes holding it back are named, sorted; silent nodes do not count.
func TestFeatureGate(t *testing.T) {
	f := Feature{Name: "f", Since: ProtocolVersion}
	later := Feature{Name: "later", Since: ProtocolVersion + 1}
	old, cur, dead := entry{ProtocolVersion - 1, 0}, entry{ProtocolVersion, 0}, entry{ProtocolVersion - 1, AliveWindow + time.Second}
	tests := []struct {
		name    string
		read    bool
		entries map[string]entry
		feature Feature
		on      bool
		by      []string
	}{
		{"all current", true, map[string]entry{"a": cur, "b": cur, "c": cur}, f, true, []string{}},
		{"alone", true, map[string]entry{"a": cur}, f, true, []string{}},
		{"registry not read", false, map[string]entry{"a": cur, "b": cur}, f, false, []string{}},
		{"two old nodes", true, map[string]entry{"a": cur, "c": old, "b": old}, f, false, []string{"b", "c"}},
		{"old node silent", true, map[string]entry{"a": cur, "b": dead}, f, true, []string{}},
		{"this node too old", true, map[string]entry{"a": cur, "b": cur}, later, false, []string{"a", "b"}},
		{"this node's entry ignored, its build counts", true, map[string]entry{"a": old}, f, true, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _ := gateNode("a", tt.read, tt.entries)
			if got := n.FeatureOn(tt.feature); got != tt.on {
				t.Errorf("FeatureOn = %v, want %v", got, tt.on)
			}
			on, by := n.gate(tt.feature.Since, time.Now(), true)
			if on != tt.on || !slices.Equal(by, tt.by) {
				t.Errorf("gate = %v %q, want %v %q", on, by, tt.on, tt.by)
			}
		})
	}
}

// TestFeatureStatus: Status's list has every feature with its state.
func TestFeatureStatus(t *testing.T) {
	n, _ := gateNode("n3", true, map[string]entry{"n1": {1, 0}, "n2": {1, 0}, "n3": {ProtocolVersion, 0}})
	got := n.featureStatus()
	if len(got) != len(Features) || got[0].Name != "replicated-sessions" || got[0].Since != 2 || got[0].On ||
		!slices.Equal(got[0].HeldBackBy, []string{"n1", "n2"}) {
		t.Fatalf("featureStatus = %+v", got)
	}
}

// TestLogFeatures: nothing before the registry is read; then the state
// found, once; each switch once, "on" naming the node that held the
// feature back last, "off" the nodes holding it back.
func TestLogFeatures(t *testing.T) {
	n, buf := gateNode("n1", false, map[string]entry{"n1": {ProtocolVersion, 0}, "n2": {1, 0}, "n3": {1, 0}})
	// The lines of replicated-sessions; every feature logs alike.
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if strings.Contains(l, "feature="+FeatureSessions.Name+" ") {
				out = append(out, l)
			}
		}
		return out
	}
	n.logFeatures()
	if buf.Len() != 0 {
		t.Fatalf("logged before the registry was read: %s", buf.String())
	}
	n.registryRead = true
	n.logFeatures()
	n.logFeatures()
	want := []string{`level=INFO msg="cluster feature off" feature=replicated-sessions protocol=2 held_back_by="[n2 n3]"`}
	if got := lines(); !slices.Equal(got, want) {
		t.Fatalf("log %q\nwant %q", got, want)
	}
	if !strings.Contains(buf.String(), `feature=qos0-not-stored protocol=3 held_back_by="[n2 n3]"`) {
		t.Fatalf("qos0-not-stored not logged: %s", buf.String())
	}
	n.seen["n2"] = seen{entry: registryEntry{Protocol: ProtocolVersion}, at: time.Now()}
	n.logFeatures()
	delete(n.seen, "n3") // n3 stopped: its entry deleted
	n.logFeatures()
	n.logFeatures()
	n.seen["n4"] = seen{entry: registryEntry{Protocol: 1}, at: time.Now()} // an old build joins
	n.logFeatures()
	want = append(want,
		`level=INFO msg="cluster feature on" feature=replicated-sessions protocol=2 was_held_back_by=[n3]`,
		`level=INFO msg="cluster feature off" feature=replicated-sessions protocol=2 held_back_by=[n4]`)
	if got := lines(); !slices.Equal(got, want) {
		t.Fatalf("log %q\nwant %q", got, want)
	}
}
