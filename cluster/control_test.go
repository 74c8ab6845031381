package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/natstest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// The tests of control.go: control parts of several nodes on one embedded
// NATS server (natstest), each acting on an extensions folder of its own
// with the operator's functions host.Enable and host.Disable; then two
// real nodes (Start) routed to each other.

// extensionsFolder returns a fresh extensions folder holding a manifest
// for each of ids (host.Enable and host.Disable need one).
func extensionsFolder(t *testing.T, ids ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, id := range ids {
		if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
			t.Fatal(err)
		}
		m := fmt.Sprintf("id: %s\nversion: 1.0.0\nmodule: ext.wasm\n", id)
		if err := os.WriteFile(filepath.Join(dir, id, host.ManifestFile), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// folderAction is the ExtensionFunc of a node whose extensions folder is
// dir: host.Enable or host.Disable, as cmd/propolis wires it.
func folderAction(dir string) ExtensionFunc {
	return func(id string, disable bool) (string, error) {
		if disable {
			marker, err := host.Disable(dir, id)
			return id + " disabled (" + marker + " created)", err
		}
		marker, err := host.Enable(dir, id)
		return id + " enabled (" + marker + " removed)", err
	}
}

// disabled reports whether extension id of folder dir has its DISABLED
// file.
func disabled(dir, id string) bool {
	_, err := os.Stat(filepath.Join(dir, id, host.DisabledFile))
	return err == nil
}

// startControl starts the control part of node name on ns acting on the
// folder dir (no Extension function when dir is ""), closed when the test
// ends.
func startControl(t *testing.T, ns *server.Server, name, dir string, timeout time.Duration) *control {
	t.Helper()
	o := controlOptions{Conn: natstest.Connect(t, ns), Node: name, Log: testLogger().With("node", name), Timeout: timeout}
	if dir != "" {
		o.Extension = folderAction(dir)
	}
	c, err := newControl(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

// extensionReq is a ControlExtension request from n1 by alice.
func extensionReq(id string, disable bool) controlRequest {
	return controlRequest{From: "n1", By: "alice", Extension: &extensionRequest{ID: id, Disable: disable}}
}

// TestControlExtension: a disable sent to three nodes creates the
// DISABLED file in each node's folder, each node saying so; an enable
// removes them. A node without the extension fails with host's error
// naming it, the others act all the same.
func TestControlExtension(t *testing.T) {
	ns := natstest.Start(t, "n")
	names := []string{"n1", "n2", "n3"}
	dirs := map[string]string{}
	var c1 *control
	for _, name := range names {
		dirs[name] = extensionsFolder(t, "acl", "audit")
		c := startControl(t, ns, name, dirs[name], 0)
		if name == "n1" {
			c1 = c
		}
	}
	// Listed twice and out of order: asked once each, answered by name.
	ask := []string{"n3", "n1", "n2", "n1"}
	for _, disable := range []bool{true, false} {
		res := c1.request(context.Background(), ControlExtension, ask, extensionReq("acl", disable))
		if !res.OK || len(res.Nodes) != 3 || res.Failed() != nil {
			t.Fatalf("disable %v: %+v", disable, res)
		}
		for i, r := range res.Nodes {
			want := "enabled"
			if disable {
				want = "disabled"
			}
			if r.Node != names[i] || !r.OK || r.Error != "" || !strings.HasPrefix(r.Message, "acl "+want+" (") ||
				!strings.Contains(r.Message, dirs[r.Node]) {
				t.Errorf("disable %v: result %d = %+v", disable, i, r)
			}
			if disabled(dirs[r.Node], "acl") != disable || disabled(dirs[r.Node], "audit") {
				t.Errorf("disable %v: %s's folder: acl disabled %v, audit %v", disable, r.Node, disabled(dirs[r.Node], "acl"),
					disabled(dirs[r.Node], "audit"))
			}
		}
	}

	if err := os.RemoveAll(filepath.Join(dirs["n2"], "acl")); err != nil {
		t.Fatal(err)
	}
	res := c1.request(context.Background(), ControlExtension, names, extensionReq("acl", true))
	if res.OK || !slices.Equal(res.Failed(), []string{"n2"}) {
		t.Fatalf("n2 without acl: %+v", res)
	}
	want := fmt.Sprintf(`extension "acl": no %s in %s`, host.ManifestFile, filepath.Join(dirs["n2"], "acl"))
	if r := res.Nodes[1]; r.Node != "n2" || r.OK || r.Error != want || r.Message != "" {
		t.Errorf("n2 = %+v, want error %q", r, want)
	}
	if !disabled(dirs["n1"], "acl") || !disabled(dirs["n3"], "acl") {
		t.Error("n1 or n3 did not disable acl while n2 failed")
	}
	res = c1.request(context.Background(), ControlExtension, names, extensionReq("not an id", true))
	for _, r := range res.Nodes {
		if r.OK || r.Error != `extension "not an id": not a valid extension id` {
			t.Errorf("bad id: %+v", r)
		}
	}
}

// TestControlNoAnswer: a node with nothing subscribed (an older version)
// and a node whose action hangs past the timeout are both named, with
// their reasons, while the others answer.
func TestControlNoAnswer(t *testing.T) {
	ns := natstest.Start(t, "n")
	dir := extensionsFolder(t, "acl")
	const timeout = time.Second
	c1 := startControl(t, ns, "n1", dir, timeout)
	startControl(t, ns, "old", "", timeout) // takes no extension requests
	// hung: a node whose folder does not answer (a hung file system);
	// released when the test ends.
	release := make(chan struct{})
	hung, err := newControl(controlOptions{Conn: natstest.Connect(t, ns), Node: "hung", Log: testLogger(),
		Extension: func(string, bool) (string, error) { <-release; return "late", nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hung.close)
	t.Cleanup(func() { close(release) })

	res := c1.request(context.Background(), ControlExtension, []string{"n1", "old", "hung"}, extensionReq("acl", true))
	if res.OK || !slices.Equal(res.Failed(), []string{"hung", "old"}) {
		t.Fatalf("result %+v, want hung and old failed", res)
	}
	want := map[string]string{
		"hung": "no answer within 1s",
		"old":  "no answer: nothing on the node takes extension requests (a Propolis version without them, or a node stopping)",
	}
	for _, r := range res.Nodes {
		switch {
		case r.Node == "n1":
			if !r.OK || !disabled(dir, "acl") {
				t.Errorf("n1 = %+v, acl disabled %v", r, disabled(dir, "acl"))
			}
		case r.OK || r.Error != want[r.Node]:
			t.Errorf("%s = %+v, want error %q", r.Node, r, want[r.Node])
		}
	}
}

// TestControlBadRequests: a node answers a request it cannot read with
// an error naming what was wrong, and does nothing.
func TestControlBadRequests(t *testing.T) {
	ns := natstest.Start(t, "n")
	dir := extensionsFolder(t, "acl")
	startControl(t, ns, "n1", dir, 0)
	nc := natstest.Connect(t, ns)
	for _, tt := range []struct {
		name, body, want string
	}{
		{"not json", `{"version":`, "bad control request: unexpected end of JSON input"},
		{"later version", `{"version":2,"extension":{"id":"acl","disable":true}}`, "bad control request: version 2, this node reads version 1"},
		{"no extension", `{"version":1}`, "bad control request: no extension id in the extension request"},
		{"empty id", `{"version":1,"extension":{"id":"","disable":true}}`, "bad control request: no extension id in the extension request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := nc.Request(controlSubject(ControlExtension, "n1"), []byte(tt.body), poll.Timeout)
			if err != nil {
				t.Fatal(err)
			}
			var r NodeResult
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			if r.Node != "n1" || r.OK || r.Error != tt.want {
				t.Errorf("answer %+v, want error %q", r, tt.want)
			}
		})
	}
	// A publish without a reply subject is not carried out.
	if err := nc.Publish(controlSubject(ControlExtension, "n1"), []byte(`{"version":1,"extension":{"id":"acl","disable":true}}`)); err != nil {
		t.Fatal(err)
	}
	// The control part handles its messages in order: once a later
	// request is answered, the publish has been seen.
	if _, err := nc.Request(controlSubject(ControlExtension, "n1"), []byte(`{}`), poll.Timeout); err != nil {
		t.Fatal(err)
	}
	if disabled(dir, "acl") {
		t.Fatal("a bad request or a publish without reply disabled acl")
	}
	// A node that answers without saying why it failed is still a failure.
	if _, err := nc.Subscribe(controlSubject(ControlExtension, "mute"), func(m *nats.Msg) { _ = m.Respond([]byte(`{}`)) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the subscription is on the server
		t.Fatal(err)
	}
	c := startControl(t, ns, "n2", "", 0)
	res := c.request(context.Background(), ControlExtension, []string{"mute"}, extensionReq("acl", true))
	if res.OK || res.Nodes[0].Error != "the node answered that it failed, without saying why" {
		t.Errorf("mute: %+v", res)
	}
}

// TestSetExtensionTwoNodes: on two real nodes routed to each other,
// SetExtension reaches both folders once each node sees the other alive;
// Mismatch names the extension their registries report differently; an
// empty id is refused before anything is sent.
func TestSetExtensionTwoNodes(t *testing.T) {
	addrs := testport.Reserve(t, 2)
	dirs := []string{extensionsFolder(t, "acl"), extensionsFolder(t, "acl")}
	exts := [][]ExtensionInfo{{{ID: "acl", Version: "1.0.0", State: "running"}}, {{ID: "acl", Version: "1.1.0", State: "running"}}}
	nodes := make([]*Node, 2)
	done := make(chan struct{})
	for i, name := range []string{"a", "b"} {
		o := Options{Config: clusterSection(name, addrs[i], addrs[1-i]), Extension: folderAction(dirs[i]),
			Extensions: func() []ExtensionInfo { return exts[i] }}
		go func() {
			defer func() { done <- struct{}{} }()
			nodes[i] = startClusterNode(t, o)
		}()
	}
	<-done
	<-done
	if nodes[0] == nil || nodes[1] == nil {
		t.FailNow()
	}
	for _, n := range nodes {
		poll.Until(t, n.Name()+" sees both nodes alive in its registry", func() bool {
			alive := 0
			for _, ns := range n.registryNodes() {
				if ns.Alive {
					alive++
				}
			}
			return alive == 2 && len(n.aliveNames()) == 2
		})
	}
	res, err := nodes[1].SetExtension(context.Background(), "acl", true, "alice")
	if err != nil || !res.OK || len(res.Nodes) != 2 || res.Nodes[0].Node != "a" || res.Nodes[1].Node != "b" || len(res.NotAsked) != 0 {
		t.Fatalf("SetExtension = %+v, %v", res, err)
	}
	for i, d := range dirs {
		if !disabled(d, "acl") {
			t.Errorf("node %d: acl not disabled", i)
		}
	}
	want := []string{"extension acl differs: a 1.0.0 running, b 1.1.0 running"}
	if got := nodes[0].Mismatch(); !slices.Equal(got, want) {
		t.Errorf("Mismatch = %q, want %q", got, want)
	}
	if st := nodes[0].Status(); !slices.Equal(st.Mismatch, want) {
		t.Errorf("Status().Mismatch = %q, want %q", st.Mismatch, want)
	}
	if _, err := nodes[0].SetExtension(context.Background(), "", false, "alice"); !errors.Is(err, ErrBadControl) ||
		err.Error() != "bad control request: no extension id" {
		t.Errorf("SetExtension with no id = %v, want ErrBadControl", err)
	}
	if !disabled(dirs[0], "acl") {
		t.Error("a refused request enabled acl")
	}
}

// TestNotAlive: the nodes a control request is not sent to are those
// heard of but not within AliveWindow, however long ago, named with how
// long; this node and alive nodes are not among them.
func TestNotAlive(t *testing.T) {
	now := time.Now()
	n := &Node{cfg: config.Cluster{Name: "b"}, seen: map[string]seen{
		"a": {at: now.Add(-94 * time.Second)},
		"b": {at: now.Add(-time.Minute)}, // this node: asked whatever its entry says
		"c": {at: now},
		"d": {at: now.Add(-AliveWindow - 2*time.Second)},
	}}
	got := n.notAlive()
	want := []NotAsked{{Node: "a", Reason: "not alive: last seen 94 s ago"}, {Node: "d", Reason: "not alive: last seen 10 s ago"}}
	if !slices.Equal(got, want) {
		t.Errorf("notAlive = %+v, want %+v", got, want)
	}
}
