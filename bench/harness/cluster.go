package harness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/cluster"
)

// The propolis-cluster3 broker: three Propolis nodes on loopback, each a
// child process with its own data and extensions folders, set up as the
// "propolis" broker (allow-all, durability none, the harness's limits)
// plus a cluster section as cmd/propolis's three-node tests write it
// (cluster.replicas left at its default, 3). Loads place their clients
// on the nodes (placement) so that every measured message crosses the
// cluster.

// clusterNodes is the size of the cluster broker.
const clusterNodes = 3

// clusterReadyTimeout bounds the wait for a started cluster to be whole:
// every node alive and the message stream at its replication factor.
const clusterReadyTimeout = 90 * time.Second

// clusterNode is one node's place in a cluster: its name, its route
// listener and every node's (the seeds).
type clusterNode struct {
	name, listen string
	seeds        []string
}

// yaml returns the node's cluster section.
func (n *clusterNode) yaml() string {
	return fmt.Sprintf("cluster:\n  name: %s\n  listen: %s\n  seeds: [%s]\n", n.name, n.listen, strings.Join(n.seeds, ", "))
}

// setup describes the node for the report.
func (n *clusterNode) setup() string {
	return fmt.Sprintf("cluster node %s of %d on loopback routes, cluster.replicas default (3), topic_level_distribution default (1)", n.name, len(n.seeds))
}

// startCluster runs a cluster of clusterNodes Propolis nodes set up as
// startPropolis's (exts, durability), in work/name/nN, started together
// (a node waits for its peers before it accepts clients), and waits until
// node 1 sees every node alive and PROPOLIS_MESSAGES at clusterNodes
// replicas. The returned broker's Nodes are the nodes, node 1 first.
func startCluster(work, name, propolis string, exts []string, examplesDir, durability string) (*Broker, error) {
	routes := make([]string, clusterNodes)
	for i := range routes {
		a, err := freePort()
		if err != nil {
			return nil, err
		}
		routes[i] = a
	}
	nodes := make([]*Broker, clusterNodes)
	errs := make([]error, clusterNodes)
	var wg sync.WaitGroup
	for i := range nodes {
		node := &clusterNode{name: fmt.Sprintf("n%d", i+1), listen: routes[i], seeds: routes}
		nodeName := name + "-" + node.name
		p, err := preparePropolis(filepath.Join(work, name, node.name), nodeName, propolis, exts, examplesDir, durability, "warn", node)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = start(nodeName, p.setup, p.command(), p.addr, filepath.Join(work, nodeName+".log"))
			if nodes[i] != nil {
				nodes[i].ops = p.ops
			}
		}()
	}
	wg.Wait()
	b := &Broker{Name: name, Nodes: nodes}
	for i, err := range errs {
		if err != nil {
			for _, n := range nodes {
				if n != nil {
					n.Stop()
				}
			}
			return nil, fmt.Errorf("%s node n%d: %w", name, i+1, err)
		}
	}
	b.Addr = nodes[0].Addr
	b.Setup = fmt.Sprintf("%d nodes (each: %s)", clusterNodes, strings.Replace(nodes[0].Setup, "cluster node n1 of", "a cluster node of", 1))
	if err := waitCluster(b); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// waitCluster waits until node 1 of b reports every node alive, the
// cluster healthy and PROPOLIS_MESSAGES at as many replicas as nodes.
func waitCluster(b *Broker) error {
	deadline := time.Now().Add(clusterReadyTimeout)
	for {
		st, err := clusterStatus(b.Nodes[0])
		last := ""
		if err != nil {
			last = err.Error()
		} else if alive := aliveNodes(st); !st.Healthy || alive != len(b.Nodes) || streamReplicas(st, "PROPOLIS_MESSAGES") != len(b.Nodes) {
			last = fmt.Sprintf("healthy %v (%s), %d of %d nodes alive, PROPOLIS_MESSAGES at %d replicas",
				st.Healthy, strings.Join(st.Problems, "; "), alive, len(b.Nodes), streamReplicas(st, "PROPOLIS_MESSAGES"))
		} else {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not whole after %v: %s", b.Name, clusterReadyTimeout, last)
		}
		time.Sleep(250 * time.Millisecond) // poll interval of the status
	}
}

// clusterStatus reads a cluster node's GET /api/v1/cluster (the operator
// API runs in local mode on loopback: no credentials).
func clusterStatus(n *Broker) (*cluster.Status, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.ops + "/api/v1/cluster")
	if err != nil {
		return nil, fmt.Errorf("%s cluster status: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s cluster status: HTTP %s", n.Name, resp.Status)
	}
	var st cluster.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s cluster status: %w", n.Name, err)
	}
	return &st, nil
}

// aliveNodes counts the nodes st reports alive.
func aliveNodes(st *cluster.Status) int {
	n := 0
	for _, nd := range st.Nodes {
		if nd.Alive {
			n++
		}
	}
	return n
}

// streamReplicas returns the replicas in force of stream name in st (0
// when it is not listed).
func streamReplicas(st *cluster.Status, name string) int {
	for _, s := range st.Streams {
		if s.Name == name {
			return s.Replicas
		}
	}
	return 0
}

// placement returns where a flow load's publishers and subscribers
// connect on broker b: nil for a broker of one node (Addr for all). On a
// cluster, one side of one client goes to node 1 and the other side to
// the other nodes, round-robin (fan-in: the subscriber on node 1, the
// publishers on nodes 2, 3, 2, ...; fan-out: the publisher on node 1,
// the subscribers on every node), so that every message crosses the
// cluster; with several of both, both sides are spread over every node,
// subscriber i on the node after publisher i's.
func placement(b *Broker, pubs, subs int) (pubAddrs, subAddrs []string) {
	addrs := b.Addrs()
	if len(addrs) < 2 {
		return nil, nil
	}
	switch {
	case subs == 1:
		return addrs[1:], addrs[:1]
	case pubs == 1:
		return addrs[:1], addrs
	default:
		return addrs, append(addrs[1:len(addrs):len(addrs)], addrs[0])
	}
}

// clusterDropped sums what the nodes of cluster b report as dropped
// (messages of other nodes their broker did not take fast enough: the
// router's inbox was full); 0 for a broker of one process, and a node
// whose status cannot be read counts 0.
func clusterDropped(b *Broker) uint64 {
	var n uint64
	for _, nd := range b.Nodes {
		if st, err := clusterStatus(nd); err == nil {
			n += st.Dropped
		}
	}
	return n
}
