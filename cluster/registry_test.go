package cluster

import (
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// TestSweeper: the node that sweeps expired session records is the alive
// registered node with the lowest name; a silent one does not count.
func TestSweeper(t *testing.T) {
	now := time.Now()
	stale := now.Add(-2 * AliveWindow)
	for _, tc := range []struct {
		name string
		seen map[string]time.Time
		want bool // whether node "b" sweeps
	}{
		{"lowest alive", map[string]time.Time{"b": now, "c": now}, true},
		{"a lower one alive", map[string]time.Time{"a": now, "b": now}, false},
		{"the lower one silent", map[string]time.Time{"a": stale, "b": now}, true},
		{"b itself silent", map[string]time.Time{"b": stale, "c": now}, false},
		{"nobody seen", map[string]time.Time{}, false},
	} {
		n := &Node{cfg: config.Cluster{Name: "b"}, seen: map[string]seen{}}
		for name, at := range tc.seen {
			n.seen[name] = seen{at: at}
		}
		if got := n.sweeper(); got != tc.want {
			t.Errorf("%s: sweeper() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestMismatch: the alive registered nodes' differences, one line each,
// naming every node's value; silent nodes and bare JetStream peers are
// left out.
func TestMismatch(t *testing.T) {
	acl := func(v, state string) ExtensionInfo { return ExtensionInfo{ID: "acl", Version: v, State: state} }
	node := func(name, version string, protocol int, exts ...ExtensionInfo) NodeStatus {
		return NodeStatus{Name: name, Version: version, Protocol: protocol, Extensions: exts, Alive: true, Registered: true}
	}
	tests := []struct {
		name  string
		nodes []NodeStatus
		want  []string
	}{
		{"agree", []NodeStatus{node("a", "1.0", 1, acl("1", "running")), node("b", "1.0", 1, acl("1", "running"))}, []string{}},
		{"one node", []NodeStatus{node("a", "1.0", 1)}, []string{}},
		{"versions and protocol", []NodeStatus{node("a", "1.0", 1), node("b", "1.1", 2), node("c", "1.0", 1)}, []string{
			"propolis version differs: a 1.0, b 1.1, c 1.0",
			"cluster protocol differs: a 1, b 2, c 1",
		}},
		{"extension missing, other version, other state", []NodeStatus{
			node("a", "1.0", 1, acl("1", "running"), ExtensionInfo{ID: "log", Version: "2", State: "running"}),
			node("b", "1.0", 1, acl("2", "running")),
			node("c", "1.0", 1, acl("1", "disabled"), ExtensionInfo{ID: "log", Version: "2", State: "running"}),
		}, []string{
			"extension acl differs: a 1 running, b 2 running, c 1 disabled",
			"extension log differs: a 2 running, b (none), c 2 running",
		}},
		{"silent node and bare peer ignored", []NodeStatus{
			node("a", "1.0", 1),
			{Name: "b", Version: "0.9", Protocol: 1, Registered: true},
			{Name: "c", Alive: true},
		}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mismatch(tt.nodes); !slices.Equal(got, tt.want) {
				t.Errorf("mismatch = %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestStreamProblem: why a stream is unhealthy, or "" when it is not.
func TestStreamProblem(t *testing.T) {
	tests := []struct {
		name string
		s    StreamStatus
		want string
	}{
		{"healthy", StreamStatus{Leader: "a", Peers: []PeerStatus{{Name: "b", Current: true}}}, ""},
		{"no leader", StreamStatus{Peers: []PeerStatus{{Name: "b", Current: true}}}, "no leader"},
		{"peers", StreamStatus{Leader: "a", Peers: []PeerStatus{{Name: "b", Offline: true}, {Name: "c", Lag: 12}}},
			"replica b offline, replica c behind by 12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.problem(); got != tt.want {
				t.Errorf("problem() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPeerOffline: a replica JetStream counts offline is offline; one
// not current is offline once JetStream has not heard from it within
// AliveWindow or its node is not alive, and otherwise behind.
func TestPeerOffline(t *testing.T) {
	down := map[string]bool{"dead": true, "up": false}
	tests := []struct {
		name string
		p    jetstream.PeerInfo
		want bool
	}{
		{"jetstream says offline", jetstream.PeerInfo{Name: "up", Offline: true}, true},
		{"current", jetstream.PeerInfo{Name: "up", Current: true}, false},
		{"behind, heard lately", jetstream.PeerInfo{Name: "up", Active: time.Second, Lag: 12}, false},
		{"behind, not heard for long", jetstream.PeerInfo{Name: "up", Active: AliveWindow + time.Second}, true},
		{"behind, node not alive", jetstream.PeerInfo{Name: "dead", Active: time.Second}, true},
		{"behind, node unknown", jetstream.PeerInfo{Name: "other", Active: time.Second}, false},
		{"current, node not alive", jetstream.PeerInfo{Name: "dead", Current: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := peerOffline(&tt.p, down); got != tt.want {
				t.Errorf("peerOffline(%+v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

// TestNodeStatusJSON: a JetStream peer never seen in the registry has
// no started_at or last_seen in the JSON (not the zero time); a
// registered node has both.
func TestNodeStatusJSON(t *testing.T) {
	peer, err := json.Marshal(NodeStatus{Name: "n1", Extensions: []ExtensionInfo{}})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(peer); strings.Contains(s, "started_at") || strings.Contains(s, "last_seen") {
		t.Errorf("unregistered peer JSON = %s, want no started_at or last_seen", s)
	}
	at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	reg, err := json.Marshal(NodeStatus{Name: "n2", StartedAt: at, LastSeen: at, Registered: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(reg); !strings.Contains(s, `"started_at":"2026-11-30T07:00:00Z"`) || !strings.Contains(s, `"last_seen":"2026-11-30T07:00:00Z"`) {
		t.Errorf("registered node JSON = %s, want started_at and last_seen", s)
	}
}

// TestNodeState: the state names of the four kinds of node.
func TestNodeState(t *testing.T) {
	for _, tt := range []struct {
		ns   NodeStatus
		want string
	}{
		{NodeStatus{Registered: true, Alive: true}, NodeAlive},
		{NodeStatus{Registered: true}, NodeSilent},
		{NodeStatus{Alive: true}, NodePeer},
		{NodeStatus{}, NodePeerOffline},
	} {
		if got := nodeState(tt.ns); got != tt.want {
			t.Errorf("nodeState(%+v) = %q, want %q", tt.ns, got, tt.want)
		}
	}
}

// TestQuietLog: a failure repeated at every heartbeat stays at debug for
// quietFor, then warns once every quietFor; a success after a warning is
// logged at info, and a new run of failures starts quiet again.
func TestQuietLog(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	var q quietLog
	t0 := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	fail := errors.New("context deadline exceeded")
	var levels []string
	for _, step := range []struct {
		at  time.Duration
		err error
	}{
		{0, fail}, {2 * time.Second, fail}, {28 * time.Second, fail}, {30 * time.Second, fail}, {32 * time.Second, fail},
		{60 * time.Second, fail}, {62 * time.Second, nil}, {64 * time.Second, fail}, {66 * time.Second, nil},
	} {
		buf.Reset()
		q.note(log, t0.Add(step.at), step.err, "cluster bucket replicas not raised", "bucket", "B")
		level, _, _ := strings.Cut(strings.TrimPrefix(buf.String(), "level="), " ")
		levels = append(levels, level)
	}
	want := []string{"DEBUG", "DEBUG", "DEBUG", "WARN", "DEBUG", "WARN", "INFO", "DEBUG", ""}
	if !slices.Equal(levels, want) {
		t.Errorf("levels = %q, want %q", levels, want)
	}
}
