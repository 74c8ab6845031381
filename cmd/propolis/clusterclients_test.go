package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestClusterClientsShowReplicated: on a two-node cluster, a persistent
// session whose client went offline on n1 lives in the cluster's bucket,
// on no node; `propolis clients show` on n2 (and GET
// /api/v1/clients/{id}) shows it from its record: offline, held by the
// cluster, last node n1, its expiry and subscriptions. GET
// /api/v1/broker names the node.
func TestClusterClientsShowReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("two broker processes")
	}
	nodes := startNodes(t, 2, nil)
	sub, _ := mustPersistent(t, nodes[0].addr, "show-sub", true, nil)
	if _, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "show/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	var d admin.ClientDetail
	poll.Settle(t, "n2 shows show-sub held by the cluster", func() string {
		code, out, errOut := runAdminCLI(t, nil, "clients", "show", "show-sub", "--json", "--url", nodes[1].base)
		if code != 0 {
			return out + errOut
		}
		d = admin.ClientDetail{}
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("clients show --json: %v\n%s", err, out)
		}
		if d.ClusterState != admin.HeldByCluster {
			return out
		}
		return ""
	})
	if d.Connected || d.LastNode != "n1" || d.SessionExpiry != sessionExpiry || d.OfflineSince == nil || d.ExpiresAt == nil ||
		!d.ExpiresAt.Equal(d.OfflineSince.Add(sessionExpiry*time.Second)) ||
		len(d.Subscriptions) != 1 || d.Subscriptions[0].Filter != "show/#" || d.Subscriptions[0].QoS != 1 {
		t.Fatalf("clients show --json on n2: %+v", d)
	}
	code, out, errOut := runAdminCLI(t, nil, "clients", "show", "show-sub", "--url", nodes[1].base)
	if code != 0 {
		t.Fatalf("clients show: exit %d\n%s%s", code, out, errOut)
	}
	if !hasRow(out, "state:", "offline,", "held", "by", "the", "cluster,", "disconnected", "at") || !hasRow(out, "last", "node:", "n1") ||
		!hasRow(out, "show/#", "1") {
		t.Errorf("clients show on n2:\n%s", out)
	}
	code, _, errOut = runAdminCLI(t, nil, "clients", "show", "nobody", "--url", nodes[1].base)
	if code != 1 || !strings.Contains(errOut, `client "nobody": no session`) {
		t.Errorf("clients show nobody: exit %d, %s", code, errOut)
	}

	for i, b := range nodes {
		resp, err := http.Get(b.base + "/api/v1/broker")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var info struct {
			Node string `json:"node"`
		}
		if err := json.Unmarshal(body, &info); err != nil || info.Node != []string{"n1", "n2"}[i] {
			t.Errorf("GET /api/v1/broker on node %d: node %q (%v): %s", i+1, info.Node, err, body)
		}
	}
}
