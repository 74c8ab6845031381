package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestClusterStatusCLI: `propolis serve` with a cluster section runs a
// node (alone: no seeds); `propolis cluster status` prints it with its
// extension and the registry bucket, --json the API's JSON; against a
// broker without a cluster section it says so, exit 1.
func TestClusterStatusCLI(t *testing.T) {
	tmp := t.TempDir()
	file := allowAllConfig(t, tmp, `cluster:
  name: cli-node
  listen: 127.0.0.1:0
`)
	b := serveForClients(t, exec.Command(bin, "serve", "--config", file))

	var st cluster.Status
	poll.Settle(t, "the node registered with allow-all running", func() string {
		code, out, errOut := runAdminCLI(t, nil, "cluster", "status", "--json", "--url", b.base)
		if code != 0 {
			t.Fatalf("cluster status --json: exit %d\n%s%s", code, out, errOut)
		}
		st = cluster.Status{}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("cluster status --json: %v\n%s", err, out)
		}
		if st.Healthy && len(st.Nodes) == 1 && len(st.Nodes[0].Extensions) == 1 && st.Nodes[0].Extensions[0].State == "running" &&
			len(st.Features) == len(cluster.Features) && !slices.ContainsFunc(st.Features, func(f cluster.FeatureStatus) bool { return !f.On }) {
			return ""
		}
		return out
	})
	if n := st.Nodes[0]; n.Name != "cli-node" || n.Version != version || n.Protocol != cluster.ProtocolVersion ||
		n.Extensions[0].ID != "allow-all" || st.Replicas != 1 {
		t.Fatalf("status %+v", st)
	}
	code, out, errOut := runAdminCLI(t, nil, "cluster", "status", "--url", b.base)
	if code != 0 {
		t.Fatalf("cluster status: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"cluster propolis, seen from node cli-node: healthy\n",
		"replication factor in force: 1 (configured 3)\n",
		"allow-all@",
		"PROPOLIS_NODES",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster status lacks %q:\n%s", want, out)
		}
	}
	if !hasRow(out, "cli-node", "alive") {
		t.Errorf("cluster status has no row cli-node alive:\n%s", out)
	}
	if !hasRow(out, "replicated-sessions", "2", "on", "-") {
		t.Errorf("cluster status has no row replicated-sessions 2 on:\n%s", out)
	}
}

// TestClusterStatusCLIAlone: a broker without a cluster section answers
// that it runs without one.
func TestClusterStatusCLIAlone(t *testing.T) {
	tmp := t.TempDir()
	installAllowAll(t, filepath.Join(tmp, "ext"))
	b := serveForClients(t, exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0",
		"--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext")))
	code, _, errOut := runAdminCLI(t, nil, "cluster", "status", "--url", b.base)
	if want := "404 Not Found: this node runs without a cluster section"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("cluster status alone: exit %d\n%s\nwant exit 1 and %q", code, errOut, want)
	}
}
