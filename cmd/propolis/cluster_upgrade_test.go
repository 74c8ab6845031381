package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// clusterScenario sizes the rolling upgrade and partition tests; the
// variable scenario holds the sizes of this build (cluster_scenario_test.go
// for `make test`, cluster_soak_test.go for `make soak-cluster`).
type clusterScenario struct {
	// upgradeRounds is how many times every node is replaced in turn:
	// odd rounds by the current build (protocol cluster.ProtocolVersion; an upgrade), even rounds by the
	// protocol 1 build (a downgrade); odd, so the cluster ends upgraded.
	upgradeRounds int
	// messages is how many QoS 1 messages each check publishes.
	messages int
	// kill replaces every other node after SIGKILL instead of SIGTERM.
	kill bool
	// partitioned are the nodes (0, 1, 2) stopped by SIGSTOP, in turn.
	partitioned []int
}

// protocol1Version is the Propolis version the protocol 1 build reports.
const protocol1Version = "dev-protocol1"

// protocol1 is the propolis binary of the previous cluster protocol,
// built once for these tests.
var protocol1 struct {
	once sync.Once
	path string
	err  error
}

// buildProtocol1 builds propolis as a node of cluster protocol 1 (the
// link-time override of cluster.ProtocolVersion) reporting version
// protocol1Version, beside bin, and returns its path.
func buildProtocol1(t *testing.T) string {
	t.Helper()
	protocol1.once.Do(func() {
		path := filepath.Join(filepath.Dir(bin), "propolis-protocol1")
		ldflags := "-X github.com/propolis-mqtt/propolis/cluster.protocolOverride=1 -X main.version=" + protocol1Version
		if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", path, ".").CombinedOutput(); err != nil {
			protocol1.err = fmt.Errorf("build the protocol 1 propolis: %v\n%s", err, out)
			return
		}
		protocol1.path = path
	})
	if protocol1.err != nil {
		t.Fatal(protocol1.err)
	}
	return protocol1.path
}

// TestClusterRollingUpgrade runs three nodes of the protocol 1 build and
// replaces them one by one (SIGTERM, then the current build on the
// same configuration and data folder, as an operator upgrades). After
// each step, every node sees the three alive and healthy, each with its
// protocol, the mismatch of versions, and replicated-sessions off, held
// back by the nodes still on protocol 1, until the last one is replaced;
// and QoS 1 messages cross between the replaced node and the others both
// ways. Each node logs the switch of the feature.
func TestClusterRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("three broker processes, restarted in turn")
	}
	builds := map[int]string{1: buildProtocol1(t), cluster.ProtocolVersion: bin}
	nodes := startClusterOf(t, builds[1], 3, nil)
	logsOnFailure(t, brokersOf(nodes))
	protocols := map[string]int{"n1": 1, "n2": 1, "n3": 1}
	waitGate(t, nodes, protocols, "three protocol 1 nodes")
	if !strings.Contains(nodes[0].log.String(), `msg="cluster feature off"`) {
		t.Errorf("the protocol 1 node n1 did not log the feature off:\n%s", nodes[0].log.String())
	}

	sent, dups := 0, 0
	for round := 1; round <= scenario.upgradeRounds; round++ {
		to := cluster.ProtocolVersion
		if round%2 == 0 {
			to = 1
		}
		for i, p := range nodes {
			sig := syscall.SIGTERM
			if scenario.kill && (i+round)%2 == 0 {
				sig = syscall.SIGKILL
			}
			p.stop(t, sig)
			p.start(t, builds[to])
			protocols[p.name] = to
			step := fmt.Sprintf("round %d: %s replaced by the protocol %d build after %s", round, p.name, to, map[syscall.Signal]string{
				syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL"}[sig])
			old := waitGate(t, nodes, protocols, step)
			statusCLIShowsGate(t, p, old)
			for _, pair := range [][2]*clusterProc{{p, nodes[(i+1)%3]}, {nodes[(i+2)%3], p}} {
				d := crossNodeQoS1(t, pair[0], pair[1], fmt.Sprintf("upgrade/r%d/s%d/%s-%s", round, i, pair[0].name, pair[1].name))
				sent, dups = sent+scenario.messages, dups+d
			}
			t.Logf("%s: status and QoS 1 across nodes as expected", step)
		}
	}
	t.Logf("rolling upgrade: %d rounds, %d node replacements, %d QoS 1 messages across nodes, all delivered, %d duplicated",
		scenario.upgradeRounds, 3*scenario.upgradeRounds, sent, dups)

	// The first node of the last upgrade started while the other two still
	// spoke protocol 1, and saw the feature come on when the last one left.
	first := nodes[0].log.String()
	if !strings.Contains(first, `msg="cluster feature off"`) || !strings.Contains(first, `held_back_by="[n2 n3]"`) {
		t.Errorf("n1 did not log the feature off, held back by n2 and n3:\n%s", first)
	}
	for _, p := range nodes {
		lines := regexp.MustCompile(`msg="cluster feature (on|off)".* feature=replicated-sessions .*`).FindAllString(p.log.String(), -1)
		if last := lines[len(lines)-1:]; len(last) == 0 || !strings.HasPrefix(last[0], `msg="cluster feature on"`) ||
			!strings.Contains(last[0], "feature=replicated-sessions protocol=2") {
			t.Errorf("%s: the last feature line is not replicated-sessions on: %q", p.name, lines)
		}
	}
	if lines := regexp.MustCompile(`msg="cluster feature on".* feature=replicated-sessions .*`).FindAllString(first, -1); len(lines) != 1 || !strings.Contains(lines[0], "was_held_back_by=[n3]") {
		t.Errorf("n1: want one feature on line naming n3: %q", lines)
	}
}

// waitGate waits until every node sees the cluster whole with the
// protocols given by node name: each node's protocol and Propolis
// version, their mismatch while they differ, and replicated-sessions on
// exactly when no alive node speaks protocol 1, held back by those that
// do otherwise. It returns those, sorted.
func waitGate(t *testing.T, nodes []*clusterProc, protocols map[string]int, step string) (old []string) {
	t.Helper()
	versions := map[int]bool{}
	for name, v := range protocols {
		versions[v] = true
		if v < cluster.FeatureSessions.Since {
			old = append(old, name)
		}
	}
	slices.Sort(old)
	if old == nil {
		old = []string{}
	}
	waitCluster(t, nodes, ", "+step, func(_ *clusterProc, st cluster.Status) string {
		for _, n := range st.Nodes {
			if !n.Registered {
				return fmt.Sprintf("a JetStream peer %s without registry entry", n.Name)
			}
			if want := protocols[n.Name]; n.Protocol != want {
				return fmt.Sprintf("%s speaks protocol %d, want %d", n.Name, n.Protocol, want)
			}
			if want := map[int]string{1: protocol1Version, cluster.ProtocolVersion: version}[n.Protocol]; n.Version != want {
				return fmt.Sprintf("%s runs version %s, want %s", n.Name, n.Version, want)
			}
		}
		mixed := slices.ContainsFunc(st.Mismatch, func(m string) bool { return strings.HasPrefix(m, "cluster protocol differs: ") }) &&
			slices.ContainsFunc(st.Mismatch, func(m string) bool { return strings.HasPrefix(m, "propolis version differs: ") })
		if mixed != (len(versions) > 1) {
			return fmt.Sprintf("mismatch %q with protocols %v", st.Mismatch, protocols)
		}
		i := slices.IndexFunc(st.Features, func(f cluster.FeatureStatus) bool { return f.Name == cluster.FeatureSessions.Name })
		if i < 0 {
			return fmt.Sprintf("no feature %s: %+v", cluster.FeatureSessions.Name, st.Features)
		}
		if f := st.Features[i]; f.On != (len(old) == 0) || !slices.Equal(f.HeldBackBy, old) {
			return fmt.Sprintf("%s on %v held back by %q; want on %v held back by %q", f.Name, f.On, f.HeldBackBy, len(old) == 0, old)
		}
		return ""
	})
	return old
}

// statusCLIShowsGate checks that `propolis cluster status` on p prints
// replicated-sessions on, or off held back by old.
func statusCLIShowsGate(t *testing.T, p *clusterProc, old []string) {
	t.Helper()
	code, out, errOut := runAdminCLI(t, nil, "cluster", "status", "--url", p.base)
	if code != 0 {
		t.Fatalf("cluster status on %s: exit %d\n%s%s", p.name, code, out, errOut)
	}
	row := []string{cluster.FeatureSessions.Name, "2", "on", "-"}
	if len(old) > 0 {
		row = append([]string{cluster.FeatureSessions.Name, "2", "off"}, strings.Split(strings.Join(old, ", "), " ")...)
	}
	if !hasRow(out, row...) {
		t.Errorf("cluster status on %s has no row %q:\n%s", p.name, row, out)
	}
}

// crossNodeQoS1 subscribes a client on to's node to topic/#, publishes
// scenario.messages QoS 1 messages on topic/m through a client on from's
// node, waits until the subscriber has every one, and returns how many
// it received twice. The clients disconnect at the end.
func crossNodeQoS1(t *testing.T, from, to *clusterProc, topic string) (dups int) {
	t.Helper()
	rec := &recorder{}
	id := strings.ReplaceAll(topic, "/", "-")
	sub, _ := v5Client(t, to.addr, "sub-"+id, rec.add, nil, nil)
	if _, err := sub.Subscribe(brokertest.OpCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic + "/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _ := v5Client(t, from.addr, "pub-"+id, nil, nil, nil)
	probe(t, pub, topic+"/probe", rec)
	for i := range scenario.messages {
		publish(t, pub, topic+"/m", 1, false, fmt.Sprint(i))
	}
	poll.Settle(t, fmt.Sprintf("%d QoS 1 messages from %s to %s on %s", scenario.messages, from.name, to.name, topic), func() string {
		got := rec.of(topic + "/m")
		seen := map[string]bool{}
		for _, p := range got {
			seen[p] = true
		}
		if len(seen) != scenario.messages {
			return fmt.Sprintf("%d of %d", len(seen), scenario.messages)
		}
		dups = len(got) - len(seen)
		return ""
	})
	_ = pub.Disconnect(&paho.Disconnect{})
	_ = sub.Disconnect(&paho.Disconnect{})
	return dups
}
