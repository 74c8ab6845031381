package admin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestClusterAlone: a broker without a cluster section answers GET
// /api/v1/cluster and the cluster-wide extension routes with 404 and a
// JSON error saying so, /extensions says cluster false and /broker has
// no mismatch.
func TestClusterAlone(t *testing.T) {
	r := startRig(t, testAdmin())
	c := r.req(t, "GET", "/api/v1/cluster", nil, bearer("viewer")).want(t, 404, "cluster status alone")
	if got := c.json(t)["error"]; got != admin.ErrNoCluster {
		t.Fatalf("error %q, want %q", got, admin.ErrNoCluster)
	}
	c = r.req(t, "POST", "/api/v1/cluster/extensions/wat-auth/disable", nil, bearer("operator")).want(t, 404, "cluster disable alone")
	if got := c.json(t)["error"]; got != admin.ErrNoCluster {
		t.Fatalf("error %q, want %q", got, admin.ErrNoCluster)
	}
	r.mustAudit(t, "tok-operator", "extension.disable", "wat-auth", "error")
	if _, err := os.Stat(filepath.Join(r.exts, "wat-auth", host.DisabledFile)); err == nil {
		t.Fatal("a cluster disable without a cluster disabled the extension here")
	}
	if x := r.req(t, "GET", "/api/v1/extensions", nil, bearer("viewer")).want(t, 200, "extensions").json(t); x["cluster"] != false {
		t.Fatalf("extensions alone: cluster %v, want false", x["cluster"])
	}
	if b := r.req(t, "GET", "/api/v1/broker", nil, bearer("viewer")).want(t, 200, "broker").json(t); len(b["cluster_mismatch"].([]any)) != 0 {
		t.Fatalf("broker alone: cluster_mismatch %v", b["cluster_mismatch"])
	}
}

// startTwoNodes starts two real cluster nodes a and b routed to each
// other, each with the extensions exts[i] in its registry and acting on
// the extensions folder *dirs[i] (read when a request comes) with
// host.Enable and host.Disable, and waits until a sees both alive.
func startTwoNodes(t *testing.T, exts [2][]cluster.ExtensionInfo, dirs [2]*atomic.Pointer[string]) []*cluster.Node {
	t.Helper()
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
				Extensions: func() []cluster.ExtensionInfo { return exts[i] },
				Extension: func(id string, disable bool) (string, error) {
					act := host.Enable
					if disable {
						act = host.Disable
					}
					marker, err := act(*dirs[i].Load(), id)
					return "DISABLED file " + marker, err
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
	return nodes
}

// clusterOptions sets the cluster options of the API as cmd/propolis
// does, over node.
func clusterOptions(node *cluster.Node) func(*rig, *admin.Options) {
	return func(_ *rig, o *admin.Options) {
		o.ClusterStatus = func() any { return node.Status() }
		o.ClusterMismatch = node.Mismatch
		o.ClusterExtension = func(ctx context.Context, id string, disable bool, by string) (any, []string, error) {
			res, err := node.SetExtension(ctx, id, disable, by)
			return res, res.Failed(), err
		}
	}
}

// TestClusterStatus: on a node of a real two-node cluster, GET
// /api/v1/cluster answers the node's Status: both nodes alive, the
// replication factor in force and the registry bucket with its replica.
func TestClusterStatus(t *testing.T) {
	var none [2]*atomic.Pointer[string]
	exts := []cluster.ExtensionInfo{{ID: "wat-auth", Version: "1.0.0", State: "running"}}
	nodes := startTwoNodes(t, [2][]cluster.ExtensionInfo{exts, exts}, none)
	r := startClusterRig(t, testAdmin(), clusterOptions(nodes[0]))
	c := r.req(t, "GET", "/api/v1/cluster", nil, bearer("viewer")).want(t, 200, "cluster status")
	var st cluster.Status
	if err := json.Unmarshal(c.body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "a" || st.Replicas != 2 || st.ConfiguredReplicas != 3 || len(st.Nodes) != 2 || st.Nodes[1].Name != "b" ||
		st.Nodes[1].Stress != 1.5 || st.Nodes[1].Clients != 2 || len(st.Nodes[1].Extensions) != 1 ||
		len(st.Streams) != 1 || st.Streams[0].Name != cluster.RegistryBucket || len(st.Mismatch) != 0 {
		t.Fatalf("status %s", c.body)
	}
}

// TestClusterExtensions: on a node of a real two-node cluster whose
// nodes report different extensions, /broker lists the mismatch and
// /extensions says cluster; POST /api/v1/cluster/extensions/{id}/disable
// creates the DISABLED file in both nodes' folders (the rig's host stops
// wat-auth) and answers one result per node, enable removes them, both
// audited with scope cluster; an extension no node has answers 200 with
// ok false and both nodes named, audited as an error; an invalid id is
// a 400.
func TestClusterExtensions(t *testing.T) {
	dirB := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dirB, "wat-auth"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "wat-auth", host.ManifestFile), []byte("id: wat-auth\nversion: 1.0.0\nmodule: ext.wasm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirs := [2]*atomic.Pointer[string]{{}, {}}
	dirs[1].Store(&dirB)
	nodes := startTwoNodes(t, [2][]cluster.ExtensionInfo{{{ID: "wat-auth", Version: "1.0.0", State: "running"}}, {}}, dirs)
	r := startClusterRig(t, testAdmin(), func(r *rig, o *admin.Options) {
		dirs[0].Store(&r.exts)
		clusterOptions(nodes[0])(r, o)
	})
	want := "extension wat-auth differs: a 1.0.0 running, b (none)"
	poll.Until(t, "/broker lists the mismatch", func() bool {
		b := r.req(t, "GET", "/api/v1/broker", nil, bearer("viewer")).want(t, 200, "broker").json(t)
		m := b["cluster_mismatch"].([]any)
		return len(m) == 1 && m[0] == want
	})
	if x := r.req(t, "GET", "/api/v1/extensions", nil, bearer("viewer")).want(t, 200, "extensions").json(t); x["cluster"] != true {
		t.Fatalf("extensions: cluster %v, want true", x["cluster"])
	}

	for _, disable := range []bool{true, false} {
		verb := "enable"
		if disable {
			verb = "disable"
		}
		c := r.req(t, "POST", "/api/v1/cluster/extensions/wat-auth/"+verb, nil, bearer("operator")).want(t, 200, "cluster "+verb)
		var res cluster.ControlResult
		if err := json.Unmarshal(c.body, &res); err != nil {
			t.Fatal(err)
		}
		if !res.OK || len(res.Nodes) != 2 || res.Nodes[0].Node != "a" || res.Nodes[1].Node != "b" {
			t.Fatalf("%s: %s", verb, c.body)
		}
		for i, dir := range []string{r.exts, dirB} {
			marker := filepath.Join(dir, "wat-auth", host.DisabledFile)
			_, err := os.Stat(marker)
			if (err == nil) != disable || res.Nodes[i].Message != "DISABLED file "+marker {
				t.Errorf("%s: node %s: %s exists %v; result %+v", verb, res.Nodes[i].Node, marker, err == nil, res.Nodes[i])
			}
		}
		state := host.StateRunning
		if disable {
			state = host.StateDisabled
		}
		poll.Until(t, "the rig's host has wat-auth "+string(state), func() bool {
			return slices.ContainsFunc(r.h.Status(), func(s host.Status) bool { return s.ID == "wat-auth" && s.State == state })
		})
		r.mustAudit(t, "tok-operator", "extension."+verb, "wat-auth", "ok")
	}
	for _, e := range r.auditLines(t) {
		if e.Action == "extension.enable" && e.Result == "ok" && e.Details["scope"] != "cluster" {
			t.Errorf("audit line without scope cluster: %+v", e)
		}
	}

	c := r.req(t, "POST", "/api/v1/cluster/extensions/nothing-here/disable", nil, bearer("operator")).want(t, 200, "cluster disable of nothing")
	var res cluster.ControlResult
	if err := json.Unmarshal(c.body, &res); err != nil {
		t.Fatal(err)
	}
	if res.OK || !slices.Equal(res.Failed(), []string{"a", "b"}) || !strings.Contains(res.Nodes[0].Error, `extension "nothing-here": no `+host.ManifestFile) {
		t.Fatalf("nothing-here: %s", c.body)
	}
	r.mustAudit(t, "tok-operator", "extension.disable", "nothing-here", "error")
	for _, e := range r.auditLines(t) {
		if e.Target == "nothing-here" && e.Result == "error" && e.Error != "not carried out on nodes a, b" {
			t.Errorf("audit of nothing-here: %+v", e)
		}
	}
	c = r.req(t, "POST", "/api/v1/cluster/extensions/Not-An-Id/disable", nil, bearer("operator")).want(t, 400, "cluster disable of a bad id")
	if got := c.json(t)["error"]; got != `extension "Not-An-Id": not a valid extension id` {
		t.Fatalf("bad id: error %q", got)
	}
	r.req(t, "POST", "/api/v1/cluster/extensions/wat-auth/disable", nil, bearer("viewer")).want(t, 403, "cluster disable as viewer")
	if _, err := os.Stat(filepath.Join(dirB, "wat-auth", host.DisabledFile)); err == nil {
		t.Fatal("a refused cluster disable acted")
	}

	// b stops (deleting its registry entry): it is no longer asked, and
	// the answer names it in not_asked, outside ok.
	nodes[1].Close()
	poll.Until(t, "the enable names b not asked", func() bool {
		c := r.req(t, "POST", "/api/v1/cluster/extensions/wat-auth/enable", nil, bearer("operator")).want(t, 200, "cluster enable without b")
		var res cluster.ControlResult
		if err := json.Unmarshal(c.body, &res); err != nil {
			t.Fatal(err)
		}
		want := []cluster.NotAsked{{Node: "b", Reason: "not alive: a JetStream peer without a registry entry (stopped, or not a Propolis node)"}}
		return res.OK && len(res.Nodes) == 1 && res.Nodes[0].Node == "a" && slices.Equal(res.NotAsked, want)
	})
	c = r.req(t, "POST", "/api/v1/cluster/extensions/wat-auth/disable", nil, bearer("operator")).want(t, 200, "cluster disable without b")
	res = cluster.ControlResult{}
	if err := json.Unmarshal(c.body, &res); err != nil {
		t.Fatal(err)
	}
	if !res.OK || len(res.NotAsked) != 1 || res.NotAsked[0].Node != "b" {
		t.Fatalf("disable without b: %s", c.body)
	}
}
