package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The extensions of a cluster's nodes: `propolis extensions enable|disable
// ID --cluster` against real `propolis serve` child processes, each with
// its own extensions folder, and the control center's banner when the
// nodes' extensions differ.

// clusterExtID is the extension the tests enable and disable on every
// node: the events fixture (it allows every CONNECT too).
const clusterExtID = "events"

// startExtensionNodes starts count nodes with clusterExtID installed in
// each node's extensions folder (and its DISABLED file on the nodes
// disabled lists), and returns the nodes and their folders.
func startExtensionNodes(t *testing.T, count int, disabled ...int) ([]*ccBroker, []string) {
	t.Helper()
	dirs := make([]string, count)
	nodes := startNodes(t, count, func(i int, file string) {
		dirs[i] = filepath.Join(filepath.Dir(file), "ext")
		installFixture(t, dirs[i], clusterExtID, "ok/events", 5, "")
		for _, d := range disabled {
			if d == i {
				writeFile(t, filepath.Join(dirs[i], clusterExtID, host.DisabledFile), "")
			}
		}
	})
	return nodes, dirs
}

// extensionState returns the state of extension id on the broker at
// base, from its admin API (local mode), "" when it has none.
func extensionState(t *testing.T, base, id string) string {
	t.Helper()
	code, body := get(t, base+"/api/v1/extensions", nil)
	if code != 200 {
		t.Fatalf("GET %s/api/v1/extensions: %d %s", base, code, body)
	}
	var list struct {
		Extensions []struct{ ID, State string }
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	for _, x := range list.Extensions {
		if x.ID == id {
			return x.State
		}
	}
	return ""
}

// waitState waits until every node of nodes runs extension id in state.
func waitState(t *testing.T, nodes []*ccBroker, id, state string) {
	t.Helper()
	for i, n := range nodes {
		poll.Settle(t, fmt.Sprintf("n%d has %s %s", i+1, id, state), func() string {
			if got := extensionState(t, n.base, id); got != state {
				return "state " + got
			}
			return ""
		})
	}
}

// resultRow reports whether out has the row of node's result: what (ok,
// FAILED), then a text starting with text.
func resultRow(out, node, what, text string) bool {
	re := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(node) + ` +` + what + ` +` + regexp.QuoteMeta(text))
	return re.MatchString(out)
}

// TestClusterExtensionsCLI: on three real nodes, `propolis extensions
// disable events --cluster` through node 2's admin API creates DISABLED
// in every node's folder and every node stops the extension, each node's
// result printed (no path of a node's machine in it); enable starts it
// again everywhere. A node whose folder lacks the extension fails: exit
// 1 naming it, the others act.
func TestClusterExtensionsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("three broker processes")
	}
	nodes, dirs := startExtensionNodes(t, 3)
	waitState(t, nodes, clusterExtID, "running")
	marker := func(i int) string { return filepath.Join(dirs[i], clusterExtID, host.DisabledFile) }

	for _, verb := range []string{"disable", "enable"} {
		code, out, errOut := runAdminCLI(t, nil, "extensions", verb, clusterExtID, "--cluster", "--url", nodes[1].base)
		if code != 0 || errOut != "" {
			t.Fatalf("extensions %s --cluster: exit %d\n%s%s", verb, code, out, errOut)
		}
		if !strings.HasPrefix(out, fmt.Sprintf("%s %sd on 3 of 3 nodes asked:\n", clusterExtID, verb)) {
			t.Errorf("extensions %s --cluster printed:\n%s", verb, out)
		}
		for i := range nodes {
			_, err := os.Stat(marker(i))
			if (err == nil) != (verb == "disable") {
				t.Errorf("%s: n%d's %s exists %v", verb, i+1, marker(i), err == nil)
			}
			does := map[string]string{"disable": "stops", "enable": "starts"}[verb]
			if msg := fmt.Sprintf("%s %sd; the node %s it within 2 seconds", clusterExtID, verb, does); !resultRow(out, fmt.Sprintf("n%d", i+1), "ok", msg) {
				t.Errorf("%s: no row for n%d: ok %s:\n%s", verb, i+1, msg, out)
			}
		}
		state := "running"
		if verb == "disable" {
			state = "disabled"
		}
		waitState(t, nodes, clusterExtID, state)
	}

	if err := os.RemoveAll(filepath.Join(dirs[2], clusterExtID)); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAdminCLI(t, nil, "extensions", "disable", clusterExtID, "--cluster", "--url", nodes[0].base)
	want := fmt.Sprintf("propolis: extensions disable %s --cluster: not carried out on node n3\n", clusterExtID)
	if code != 1 || errOut != want || !strings.HasPrefix(out, clusterExtID+" disabled on 2 of 3 nodes asked:\n") ||
		!resultRow(out, "n3", "FAILED", fmt.Sprintf(`no extension %q in the node's extensions folder`, clusterExtID)+"\n") {
		t.Fatalf("disable with n3 lacking %s: exit %d, stderr %q, want %q; stdout:\n%s", clusterExtID, code, errOut, want, out)
	}
	waitState(t, nodes[:2], clusterExtID, "disabled")

	// On a broker without a cluster section: the API's 404, exit 1.
	_, base, _, _ := startAllowAll(t)
	code, _, errOut = runAdminCLI(t, nil, "extensions", "disable", "allow-all", "--cluster", "--url", base)
	if code != 1 || !strings.Contains(errOut, "404 Not Found: this node runs without a cluster section") {
		t.Fatalf("--cluster alone: exit %d, stderr %q", code, errOut)
	}
}

// TestControlCenterClusterMismatch: two real nodes whose extensions
// differ (events disabled on n2 only): n1's control center shows the
// amber banner naming the extension on every page; Disable on every
// node, from n1's extensions page, disables it on n2 too (already) and on
// n1, the message naming both nodes, and the banner goes once the nodes
// agree; Enable on every node starts it on both.
func TestControlCenterClusterMismatch(t *testing.T) {
	if testing.Short() {
		t.Skip("two broker processes")
	}
	ctx := browser(t)
	nodes, _ := startExtensionNodes(t, 2, 1)
	p := &page{t: t, ctx: ctx}
	p.open(nodes[0].base, "#/overview", "#chart-connections")
	// (A node reports its extensions once it has loaded them: until then
	// the banner may list every extension as missing there.)
	p.until("the cluster banner names events only", `!document.getElementById("cluster-mismatch").hidden && `+
		`document.getElementById("cluster-mismatch-list").innerText === "extension events differs: n1 1.0.0 running, n2 1.0.0 disabled"`)
	if got := p.text("#cluster-mismatch strong"); !strings.EqualFold(got, "Cluster nodes differ") {
		t.Errorf("the banner's title is %q", got)
	}
	p.shot("cluster-mismatch")
	// The header names the node (and so does the tab's title); the
	// overview shows the cluster: its health, both nodes alive, the
	// registry bucket.
	p.until("the header names n1", `!document.getElementById("node").hidden && document.getElementById("node").innerText === "node n1" && `+
		`document.title.startsWith("n1: ")`)
	p.until("the overview shows the cluster healthy with n1 and n2 alive", `(() => { const b = document.getElementById("overview-cluster"); `+
		`return b && !b.closest("section").hidden && b.innerText.includes("healthy") && !b.innerText.includes("UNHEALTHY") && `+
		`b.querySelector('tr[data-node="n1"]') && b.querySelector('tr[data-node="n1"]').innerText.includes("alive") && `+
		`b.querySelector('tr[data-node="n2"]') && b.querySelector('tr[data-node="n2"]').innerText.includes("alive") && `+
		`b.innerText.includes("PROPOLIS_NODES") && !document.getElementById("node").classList.contains("unhealthy"); })()`)
	p.shot("cluster-overview")

	row := `tr[data-extension="events"] `
	p.open(nodes[0].base, "#/extensions", row+`button[data-action="cluster-disable"]`)
	p.shot("cluster-extensions")
	if !p.present("#cluster-mismatch:not([hidden])") {
		t.Errorf("the cluster banner is not shown on the extensions page")
	}
	if !p.present("#node:not([hidden])") {
		t.Errorf("the header's node badge is not shown on the extensions page")
	}
	p.do("disable events on every node", chromedp.Click(css(row+`button[data-action="cluster-disable"]`)))
	p.confirm("disable events on every node")
	p.until("the message names both nodes", `document.getElementById("status").innerText.includes("Extension events disabled on all 2 nodes asked (n1, n2)")`)
	waitState(t, nodes, clusterExtID, "disabled")
	p.until("the cluster banner goes once the nodes agree", `document.getElementById("cluster-mismatch").hidden`)
	p.do("n1's row says disabled", chromedp.WaitVisible(css(row+`button[data-action="enable"]`)))

	p.do("enable events on every node", chromedp.Click(css(row+`button[data-action="cluster-enable"]`)))
	p.until("the enable message names both nodes", `document.getElementById("status").innerText.includes("Extension events enabled on all 2 nodes asked (n1, n2)")`)
	waitState(t, nodes, clusterExtID, "running")
}

// TestNodeExtensionAction: what a node answers another node's request
// with names the extension and never a path of its machine: done, no
// such extension, an invalid id, and the folder's own trouble (DISABLED
// a folder, which neither Disable can open nor Enable remove).
func TestNodeExtensionAction(t *testing.T) {
	dir := t.TempDir()
	installFixture(t, dir, "ok-ext", "ok/events", 1, "")
	installFixture(t, dir, "stuck", "ok/events", 1, "")
	writeFile(t, filepath.Join(dir, "stuck", host.DisabledFile, "keep"), "")
	for _, tt := range []struct {
		name, id string
		disable  bool
		msg, err string
	}{
		{"disable", "ok-ext", true, "ok-ext disabled; the node stops it within 2 seconds", ""},
		{"enable", "ok-ext", false, "ok-ext enabled; the node starts it within 2 seconds", ""},
		{"no such extension", "nope", true, "", `no extension "nope" in the node's extensions folder`},
		{"invalid id", "No!", true, "", `extension "No!": not a valid extension id`},
		{"disable, DISABLED a folder", "stuck", true, "", `extension "stuck" not disabled: the node's extensions folder: open DISABLED: is a directory`},
		{"enable, DISABLED a folder", "stuck", false, "", `extension "stuck" not enabled: the node's extensions folder: remove DISABLED: directory not empty`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := nodeExtensionAction(dir, tt.id, tt.disable)
			if msg != tt.msg || (err == nil) != (tt.err == "") || (err != nil && err.Error() != tt.err) {
				t.Fatalf("= %q, %v; want %q, %q", msg, err, tt.msg, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), dir) {
				t.Fatalf("the error names the folder's path: %v", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "ok-ext", host.DisabledFile)); err == nil {
		t.Fatal("ok-ext still disabled after enable")
	}
}
