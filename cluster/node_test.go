package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// clusterSection returns a valid cluster section for node name.
func clusterSection(name, listen string, seeds ...string) *config.Cluster {
	return &config.Cluster{Name: name, Listen: listen, Seeds: seeds, Replicas: config.DefaultClusterReplicas,
		TopicLevelDistribution: 1, ClusterName: "test", StreamMaxAge: config.DefaultClusterStreamMaxAge,
		StreamMaxBytes: config.DefaultClusterStreamMaxBytes}
}

// startClusterNode starts a node for t with o's Config, a fresh data folder and
// the test's logger, and closes it when t ends.
func startClusterNode(t *testing.T, o Options) *Node {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = logTo(t)
	}
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start node %s: %v", o.Config.Name, err)
	}
	t.Cleanup(n.Close)
	return n
}

// logTo logs to the test at warn and above.
func logTo(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testWriter writes log lines to t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestSingleNode: a node with a cluster section and no seeds but itself
// runs JetStream alone: it reports itself alive in Status, with the
// replication factor in force capped at 1, the registry bucket healthy,
// and its store under <data>/cluster/jetstream.
func TestSingleNode(t *testing.T) {
	data := t.TempDir()
	self := testport.Reserve(t, 1)[0]
	exts := []ExtensionInfo{{ID: "allow-all", Version: "1.0.0", State: "running"}}
	n := startClusterNode(t, Options{DataDir: data, Config: clusterSection("solo", self, "localhost"+self[strings.LastIndex(self, ":"):]), Version: "v9.9.9",
		Stress: func() float64 { return 2.5 }, Clients: func() int { return 7 }, Extensions: func() []ExtensionInfo { return exts }})
	if n.Name() != "solo" || n.Replicas() != 1 {
		t.Fatalf("Name, Replicas = %s, %d; want solo, 1", n.Name(), n.Replicas())
	}
	var st Status
	poll.Settle(t, "the node registered, healthy, its registry read (replicated-sessions on)", func() string {
		st = n.Status()
		if st.Healthy && len(st.Nodes) == 1 && len(st.Streams) == 1 && len(st.Features) == len(Features) && st.Features[0].On && st.Features[1].On {
			return ""
		}
		return fmt.Sprintf("status %+v", st)
	})
	got := st.Nodes[0]
	if got.Name != "solo" || !got.Alive || !got.Registered || got.Version != "v9.9.9" || got.Protocol != ProtocolVersion ||
		got.Stress != 2.5 || got.Clients != 7 || !slices.Equal(got.Extensions, exts) {
		t.Errorf("node = %+v", got)
	}
	b := st.Streams[0]
	if b.Name != RegistryBucket || b.Kind != KindBucket || b.Replicas != 1 || b.Leader != "solo" || !b.Healthy {
		t.Errorf("bucket = %+v, want %s with 1 replica led by solo", b, RegistryBucket)
	}
	if st.Node != "solo" || st.Cluster != "test" || st.Replicas != 1 || st.ConfiguredReplicas != 3 || len(st.Mismatch) != 0 {
		t.Errorf("status = %+v", st)
	}
	if !n.Supports(ProtocolVersion) || n.Supports(ProtocolVersion+1) {
		t.Errorf("Supports(%d), Supports(%d) = %v, %v; want true, false", ProtocolVersion, ProtocolVersion+1,
			n.Supports(ProtocolVersion), n.Supports(ProtocolVersion+1))
	}
	if _, err := os.Stat(filepath.Join(data, "cluster", "jetstream")); err != nil {
		t.Errorf("store folder: %v", err)
	}
	if n.conn() == nil || n.js() == nil {
		t.Fatal("no connection or jetstream")
	}
}

// TestThreeNodes: three nodes started with routes to each other form one
// cluster; each Status lists all three alive, the replication factor in
// force is the configured one capped by the node count, and the registry
// bucket has that many replicas. A node that closes is gone from the
// others' registry.
func TestThreeNodes(t *testing.T) {
	addrs := testport.Reserve(t, 3)
	names := []string{"n1", "n2", "n3"}
	nodes := make([]*Node, 3)
	started := make(chan error, 3)
	for i := range nodes {
		cfg := clusterSection(names[i], addrs[i], addrs...)
		cfg.Replicas = 5 // capped at 3
		go func() {
			n, err := Start(context.Background(), Options{DataDir: t.TempDir(), Config: cfg, Version: "v1", Logger: logTo(t)})
			nodes[i] = n
			started <- err
		}()
	}
	for range nodes {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		t.Cleanup(n.Close)
	}
	for _, n := range nodes {
		var st Status
		poll.Settle(t, n.Name()+" lists three nodes alive and a registry of 3 replicas", func() string {
			st = n.Status()
			alive := 0
			for _, ns := range st.Nodes {
				if ns.Alive && ns.Registered {
					alive++
				}
			}
			if st.Healthy && alive == 3 && len(st.Streams) == 1 && st.Streams[0].Replicas == 3 {
				return ""
			}
			return fmt.Sprintf("status %+v", st)
		})
		if st.Replicas != 3 || st.ConfiguredReplicas != 5 || len(st.Mismatch) != 0 {
			t.Errorf("%s: replicas %d of %d, mismatch %v; want 3 of 5, none", n.Name(), st.Replicas, st.ConfiguredReplicas, st.Mismatch)
		}
	}
	nodes[2].Close()
	poll.Settle(t, "n3 gone from n1's registry", func() string {
		for _, ns := range nodes[0].Status().Nodes {
			if ns.Name == "n3" && ns.Registered {
				return fmt.Sprintf("n1 lists %+v", ns)
			}
		}
		return ""
	})
	// Its replica of the registry bucket is offline, never "behind", and
	// the problem names the bucket as the table does.
	poll.Settle(t, "n1 reports n3's replica offline", func() string {
		st := nodes[0].Status()
		want := "bucket " + RegistryBucket + ": replica n3 offline"
		if slices.Contains(st.Problems, want) && len(st.Streams) == 1 && st.Streams[0].Problem == "replica n3 offline" {
			return ""
		}
		return fmt.Sprintf("problems %q, want %q among them", st.Problems, want)
	})
}

// TestTwoNodesCapReplicas: with two nodes the replication factor in force
// is 2 whatever cluster.replicas says above it, and 1 when it says 1.
func TestTwoNodesCapReplicas(t *testing.T) {
	addrs := testport.Reserve(t, 2)
	a := clusterSection("a", addrs[0], addrs[1])
	b := clusterSection("b", addrs[1], addrs[0])
	done := make(chan *Node)
	go func() { done <- startClusterNode(t, Options{Config: a}) }()
	nb := startClusterNode(t, Options{Config: b})
	na := <-done
	for _, n := range []*Node{na, nb} {
		poll.Until(t, n.Name()+" has 2 replicas in force", func() bool { return n.Replicas() == 2 })
	}
}

// TestUnreachableSeed: a node whose only seed does not answer comes up
// within the deadline, serving, and reports itself unhealthy.
func TestUnreachableSeed(t *testing.T) {
	addrs := testport.Reserve(t, 2) // the second is nobody's
	n := startClusterNode(t, Options{Config: clusterSection("lonely", addrs[0], addrs[1]), ReadyTimeout: 3 * time.Second})
	st := n.Status()
	if st.Healthy || len(st.Problems) == 0 {
		t.Fatalf("status %+v, want unhealthy with a problem", st)
	}
	if !strings.Contains(strings.Join(st.Problems, "\n"), "jetstream") {
		t.Errorf("problems %q do not name jetstream", st.Problems)
	}
}

// TestRouteAddressInUse: a route listener that cannot be bound fails
// Start with an error naming the address, within the deadline.
func TestRouteAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(context.Background(), Options{DataDir: t.TempDir(), Config: clusterSection("busy", l.Addr().String(), testport.Reserve(t, 1)[0]),
		Logger: logTo(t), ReadyTimeout: 5 * time.Second})
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("Start = %v, want ErrNotReady naming %s", err, l.Addr())
	}
}

// TestNameClash: a node with the name of a running one is refused: Start
// fails with ErrNameClash when it sees the other's heartbeat at once, or
// the node reports the clash in its status; once it is gone the cluster
// it disturbed is healthy again with its two nodes. (While both run, the
// cluster's JetStream may lose its meta leader: NATS derives Raft peer ids
// from server names.)
func TestNameClash(t *testing.T) {
	addrs := testport.Reserve(t, 3)
	done := make(chan *Node)
	go func() { done <- startClusterNode(t, Options{Config: clusterSection("x", addrs[0], addrs[1])}) }()
	y := startClusterNode(t, Options{Config: clusterSection("y", addrs[1], addrs[0])})
	x := <-done
	poll.Until(t, "x and y healthy", func() bool { return x.Status().Healthy && y.Status().Healthy })
	clash, err := Start(context.Background(), Options{DataDir: t.TempDir(), Config: clusterSection("x", addrs[2], addrs[1]),
		Logger: logTo(t), ReadyTimeout: 5 * time.Second})
	switch {
	case err != nil:
		if !errors.Is(err, ErrNameClash) || !strings.Contains(err.Error(), `"x"`) {
			t.Fatalf("Start = %v, want ErrNameClash naming x", err)
		}
	default:
		poll.Settle(t, "the clashing node reports the clash", func() string {
			st := clash.Status()
			if !st.Healthy && strings.Contains(strings.Join(st.Problems, "\n"), ErrNameClash.Error()) {
				return ""
			}
			return fmt.Sprintf("%+v", st)
		})
		clash.Close()
	}
	poll.Settle(t, "y healthy with x and y after the clashing node left", func() string {
		st := y.Status()
		if st.Healthy && len(st.Nodes) == 2 && st.Nodes[0].Alive && st.Nodes[1].Alive {
			return ""
		}
		return fmt.Sprintf("%+v", st)
	})
}

// TestRestartAfterKill: a node started again within RegistryTTL after it
// was killed finds its previous run's entry (never deleted, no longer
// renewed) under its name; that is not a name clash: the node starts,
// registers and stays healthy.
func TestRestartAfterKill(t *testing.T) {
	addrs := testport.Reserve(t, 3)
	done := make(chan *Node)
	go func() { done <- startClusterNode(t, Options{Config: clusterSection("x", addrs[0], addrs[1])}) }()
	y := startClusterNode(t, Options{Config: clusterSection("y", addrs[1], addrs[0])})
	x := <-done
	poll.Until(t, "x and y healthy", func() bool { return x.Status().Healthy && y.Status().Healthy })
	// What a killed run of z left behind: its entry, started a minute ago.
	prev, err := json.Marshal(registryEntry{Name: "z", Version: "old", Protocol: 1, StartedAt: time.Now().Add(-time.Minute).UTC(),
		Extensions: []ExtensionInfo{}, Instance: "killed"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := y.bucket().Put(context.Background(), "z", prev); err != nil {
		t.Fatal(err)
	}
	z := startClusterNode(t, Options{Config: clusterSection("z", addrs[2], addrs[0], addrs[1]), Version: "new"})
	poll.Settle(t, "z registered with its own entry, healthy, on y too", func() string {
		st, sy := z.Status(), y.Status()
		for _, s := range []Status{st, sy} {
			i := slices.IndexFunc(s.Nodes, func(n NodeStatus) bool { return n.Name == "z" })
			if !s.Healthy || i < 0 || s.Nodes[i].Version != "new" || !s.Nodes[i].Alive {
				return fmt.Sprintf("%+v", s)
			}
		}
		return ""
	})
	if st := z.Status(); strings.Contains(strings.Join(st.Problems, "\n"), ErrNameClash.Error()) {
		t.Fatalf("z reports a clash with its own previous run: %+v", st)
	}
}
