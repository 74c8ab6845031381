package admin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"testing"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestClusterAlone: a broker without a cluster section answers GET
// /api/v1/cluster with 404 and a JSON error saying so.
func TestClusterAlone(t *testing.T) {
	r := startRig(t, testAdmin())
	c := r.req(t, "GET", "/api/v1/cluster", nil, bearer("viewer")).want(t, 404, "cluster status alone")
	if got := c.json(t)["error"]; got != admin.ErrNoCluster {
		t.Fatalf("error %q, want %q", got, admin.ErrNoCluster)
	}
}

// TestClusterStatus: on a node of a real two-node cluster, GET
// /api/v1/cluster answers the node's Status: both nodes alive, the
// replication factor in force and the registry bucket with its replica.
func TestClusterStatus(t *testing.T) {
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close() // free again for the node
	}
	nodes := make([]*cluster.Node, 2)
	errs := make(chan error, 2)
	for i, name := range []string{"a", "b"} {
		cfg := &config.Cluster{Name: name, Listen: addrs[i], Seeds: addrs, Replicas: 3, TopicLevelDistribution: 1,
			ClusterName: "test", StreamMaxAge: config.DefaultClusterStreamMaxAge, StreamMaxBytes: config.DefaultClusterStreamMaxBytes}
		go func() {
			n, err := cluster.Start(context.Background(), cluster.Options{DataDir: t.TempDir(), Config: cfg, Version: "test",
				Logger: slog.New(slog.DiscardHandler),
				Stress: func() float64 { return 1.5 }, Clients: func() int { return 2 },
				Extensions: func() []cluster.ExtensionInfo {
					return []cluster.ExtensionInfo{{ID: "wat-auth", Version: "1.0.0", State: "running"}}
				}})
			nodes[i] = n
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		t.Cleanup(n.Close)
	}
	poll.Until(t, "node a sees a and b alive, the registry on both", func() bool {
		st := nodes[0].Status()
		return st.Healthy && len(st.Nodes) == 2 && st.Nodes[0].Alive && st.Nodes[1].Alive &&
			len(st.Streams) == 1 && len(st.Streams[0].Peers) == 1
	})
	r := startClusterRig(t, testAdmin(), func() any { return nodes[0].Status() })
	c := r.req(t, "GET", "/api/v1/cluster", nil, bearer("viewer")).want(t, 200, "cluster status")
	var st cluster.Status
	if err := json.Unmarshal(c.body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "a" || st.Replicas != 2 || st.ConfiguredReplicas != 3 || len(st.Nodes) != 2 || st.Nodes[1].Name != "b" ||
		st.Nodes[1].Stress != 1.5 || st.Nodes[1].Clients != 2 || len(st.Nodes[1].Extensions) != 1 ||
		len(st.Streams) != 1 || st.Streams[0].Name != cluster.RegistryBucket {
		t.Fatalf("status %s", c.body)
	}
}
