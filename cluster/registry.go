package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// The node registry: every node puts an entry about itself (registryEntry,
// JSON) under its name in the key-value bucket RegistryBucket every
// HeartbeatInterval; entries not renewed for RegistryTTL are removed by
// JetStream. Each node watches the bucket and notes when it last heard of
// every node by its own clock, so clock skew between machines does not
// make a node look dead.

// Registry constants.
const (
	// RegistryBucket is the key-value bucket of the node registry.
	RegistryBucket = "PROPOLIS_NODES"
	// HeartbeatInterval is the time between two entries of one node.
	HeartbeatInterval = 2 * time.Second
	// RegistryTTL is how long an entry lives without being renewed.
	RegistryTTL = 15 * time.Second
	// AliveWindow is how recent a node's last entry must be for the node
	// to count as alive: three missed heartbeats and it is not.
	AliveWindow = 4 * HeartbeatInterval
)

// ProtocolVersion is the version of the cluster protocol this build
// speaks: what nodes send each other and keep in the cluster's streams
// and buckets. A feature that needs every node to understand it is gated
// on it (features.go: Feature, FeatureOn). Version 1 is phase 1 of the
// cluster; version 2 adds replicated sessions (FeatureSessions). A test
// build sets another with
// -ldflags "-X github.com/propolis-mqtt/propolis/cluster.protocolOverride=N"
// (-X sets only strings, hence the override): the rolling upgrade test
// builds a protocol 1 node so.
//
// Versions: 2 replicated sessions and session attributes; 3 QoS 0 routed
// on pz. subjects, which no stream stores (route.go).
var ProtocolVersion = 3

// protocolOverride, when set at link time, replaces ProtocolVersion.
var protocolOverride string

func init() {
	if protocolOverride != "" {
		v, err := strconv.Atoi(protocolOverride)
		if err != nil || v < 1 {
			panic("cluster: protocolOverride " + strconv.Quote(protocolOverride) + " is not a version above 0")
		}
		ProtocolVersion = v
	}
}

// ExtensionInfo is one extension a node runs, as the registry reports it.
type ExtensionInfo struct {
	// ID is the extension's id (its folder name).
	ID string `json:"id"`
	// Version is the version its manifest declares.
	Version string `json:"version"`
	// State is the host's state of it: running, disabled, failed.
	State string `json:"state"`
}

// registryEntry is the JSON a node puts in the registry.
type registryEntry struct {
	Name        string          `json:"name"`
	Version     string          `json:"version"`
	Protocol    int             `json:"protocol"`
	Stress      float64         `json:"stress"`
	Extensions  []ExtensionInfo `json:"extensions"`
	StartedAt   time.Time       `json:"started_at"`
	ClientCount int             `json:"client_count"`
	// Instance is random per Start: an entry under this node's name with
	// another instance is another node with the same name, or this
	// node's previous run (checkClash).
	Instance string `json:"instance"`
}

// ErrNameClash is wrapped by Start's error when another node with the
// same cluster.name runs in the cluster.
var ErrNameClash = errors.New("another node with this name is running in the cluster")

// newInstance returns a random instance id.
func newInstance() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// checkClash looks, before this node's first heartbeat, for an entry
// under its name. None: fine. One: it is either this node's previous run
// (a restart within RegistryTTL), which nobody renews, or another node
// with the same name, which renews it every HeartbeatInterval; checkClash
// waits up to two heartbeats and a second to tell, and returns an error
// wrapping ErrNameClash in the second case. (NATS derives Raft peer ids
// from server names, so two nodes of one name disturb the cluster's
// JetStream while both run; the later one must leave.)
func (n *Node) checkClash(ctx context.Context) error {
	kv := n.bucket()
	ctx, cancel := context.WithTimeout(ctx, 2*HeartbeatInterval+3*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, n.cfg.Name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("registry bucket %s: read %s: %w", RegistryBucket, n.cfg.Name, err)
	}
	first := e.Revision()
	deadline := time.Now().Add(2*HeartbeatInterval + time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		e, err := kv.Get(ctx, n.cfg.Name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil // deleted: a node that closed
		}
		if err != nil || e.Revision() == first {
			continue
		}
		var r registryEntry
		if json.Unmarshal(e.Value(), &r) == nil && r.Instance != n.instance {
			return fmt.Errorf("%w: %q renewed its registry entry while this node waited (started %s); give this node another cluster.name",
				ErrNameClash, n.cfg.Name, r.StartedAt.Format(time.RFC3339))
		}
	}
	return nil
}

// Status is the cluster as this node sees it: GET /api/v1/cluster and
// `propolis cluster status` show it.
type Status struct {
	// Node is this node's name and Cluster the cluster's (cluster.name,
	// cluster.cluster_name).
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
	// Healthy is false while Problems is not empty.
	Healthy bool `json:"healthy"`
	// Problems says what is wrong: no JetStream quorum, a stream without
	// leader, a replica offline or behind.
	Problems []string `json:"problems"`
	// Replicas is the replication factor in force (Node.Replicas), and
	// ConfiguredReplicas cluster.replicas.
	Replicas           int `json:"replicas"`
	ConfiguredReplicas int `json:"configured_replicas"`
	// Protocol is this node's cluster protocol version (ProtocolVersion).
	Protocol int `json:"protocol"`
	// Nodes are the nodes in the registry, and the JetStream peers not in
	// it, by name.
	Nodes []NodeStatus `json:"nodes"`
	// Streams are the cluster's JetStream streams and key-value buckets
	// (Kind says which), by name.
	Streams []StreamStatus `json:"streams"`
	// Mismatch names each way the alive nodes differ: Propolis version,
	// protocol version, extensions and their versions or states; empty
	// when they all agree (a rolling upgrade in progress shows here).
	Mismatch []string `json:"mismatch"`
	// Dropped counts the messages of other nodes this node dropped
	// because its broker did not take them fast enough (the router's
	// inbox was full).
	Dropped uint64 `json:"dropped"`
	// Features are the gated features of Features, on or off on this
	// node, with the alive nodes that hold each back.
	Features []FeatureStatus `json:"features"`
}

// NodeStatus is one node of Status.
type NodeStatus struct {
	Name       string          `json:"name"`
	Version    string          `json:"version"`
	Protocol   int             `json:"protocol"`
	Stress     float64         `json:"stress"`
	Clients    int             `json:"clients"`
	Extensions []ExtensionInfo `json:"extensions"`
	// StartedAt is when the node started, by its own clock, and
	// LastSeen when this node last heard its heartbeat, by this node's
	// clock; both are left out of the JSON (zero) for a JetStream peer
	// with no registry entry.
	StartedAt time.Time `json:"started_at,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// Alive is true for a registered node heard within AliveWindow, and
	// for an unregistered JetStream peer its meta group counts online
	// and current.
	Alive bool `json:"alive"`
	// Registered is false for a JetStream peer with no registry entry
	// (not a Propolis node, or gone longer than RegistryTTL).
	Registered bool `json:"registered"`
	// State sums Alive and Registered up in the operator's words: one of
	// NodeAlive, NodeSilent, NodePeer, NodePeerOffline.
	State string `json:"state"`
}

// The states of NodeStatus.
const (
	// NodeAlive is a node whose heartbeat this node heard within
	// AliveWindow.
	NodeAlive = "alive"
	// NodeSilent is a node of the registry whose last heartbeat is older
	// than AliveWindow (and younger than RegistryTTL): killed, frozen or
	// cut off. It no longer holds a feature back nor gets control
	// requests.
	NodeSilent = "silent"
	// NodePeer is a JetStream peer without a registry entry that
	// JetStream counts online: a node starting (no heartbeat yet).
	NodePeer = "jetstream peer only"
	// NodePeerOffline is a JetStream peer without a registry entry that
	// JetStream counts offline: a node stopped or dead for longer than
	// RegistryTTL (JetStream keeps its peers until they are removed).
	NodePeerOffline = "jetstream peer only, offline"
)

// nodeState returns ns's State.
func nodeState(ns NodeStatus) string {
	switch {
	case !ns.Registered && ns.Alive:
		return NodePeer
	case !ns.Registered:
		return NodePeerOffline
	case ns.Alive:
		return NodeAlive
	}
	return NodeSilent
}

// StreamStatus is one JetStream stream or key-value bucket of Status:
// its replicas in force, leader, size in messages and bytes, health (a
// leader and every peer online and current) and peers.
type StreamStatus struct {
	// Name is the stream's name, or the bucket's (without JetStream's
	// "KV_" prefix of its stream).
	Name string `json:"name"`
	// Kind is KindStream or KindBucket.
	Kind     string `json:"kind"`
	Replicas int    `json:"replicas"`
	// Leader is the node holding the stream's leadership; "" while it has
	// none (no quorum).
	Leader   string `json:"leader"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	Healthy  bool   `json:"healthy"`
	// Problem is Problem(): "" when healthy.
	Problem string       `json:"problem"`
	Peers   []PeerStatus `json:"peers"`
}

// PeerStatus is one replica of a stream other than its leader: whether
// it is offline, current, and how many operations it is behind. Offline
// is JetStream's verdict, or Status's own when JetStream still counts a
// dead node's replica as merely not current (peerOffline).
type PeerStatus struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
	Lag     uint64 `json:"lag"`
}

// The kinds of StreamStatus.
const (
	KindStream = "stream"
	KindBucket = "bucket"
)

// kvStreamPrefix is the prefix JetStream gives a key-value bucket's stream.
const kvStreamPrefix = "KV_"

// seen is what the watcher learnt of one node.
type seen struct {
	entry registryEntry
	at    time.Time // by this node's clock
}

// bucket returns the registry bucket, nil until created.
func (n *Node) bucket() jetstream.KeyValue {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.kv
}

// ensureRegistry creates the registry bucket, or raises its replication
// factor to the one in force (never lowers it: a node starting alone in a
// cluster of three must not shrink it), and starts watching it.
func (n *Node) ensureRegistry(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registrySetup)
	defer cancel()
	want := n.Replicas()
	kv, raised, err := ensureBucket(ctx, n.jsx, jetstream.KeyValueConfig{Bucket: RegistryBucket, TTL: RegistryTTL, Replicas: want,
		Description: "Propolis node registry: one entry per node, renewed every " + HeartbeatInterval.String()})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if raised {
		n.log.Info("cluster bucket replicas raised", "bucket", RegistryBucket, "to", want)
	}
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return fmt.Errorf("watch registry bucket %s: %w", RegistryBucket, err)
	}
	n.mu.Lock()
	n.kv, n.watch = kv, w
	n.mu.Unlock()
	go n.watchRegistry(w)
	return nil
}

// registrySetup bounds ensureRegistry.
const registrySetup = 30 * time.Second

// raiseReplicas updates the bucket kv to want replicas if it has fewer:
// once per heartbeat, as nodes join.
func (n *Node) raiseReplicas(ctx context.Context, kv jetstream.KeyValue, want int) error {
	st, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.Replicas >= want {
		return nil
	}
	_, err = n.jsx.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: RegistryBucket, TTL: RegistryTTL, Replicas: want,
		Description: info.Config.Description})
	if err == nil {
		n.log.Info("cluster bucket replicas raised", "bucket", RegistryBucket, "from", info.Config.Replicas, "to", want)
	}
	return err
}

// quietLog logs a failure that repeats at every heartbeat and is
// expected for a few seconds now and then: raiseReplicas's read of the
// bucket's status times out while JetStream elects a leader for it (about
// 4 to 9 s after a node dies), though nothing needed raising. The failures
// go to debug until they have lasted quietFor, then to warn, once every
// quietFor while they last; a success after a warning is logged at info.
// Not safe for concurrent use: one goroutine owns it.
type quietLog struct {
	since  time.Time // the first failure of the current run; zero: none
	warned time.Time // the last warning of the run; zero: none yet
}

// quietFor is how long quietLog keeps a repeating failure at debug, and
// then the time between two of its warnings.
const quietFor = 30 * time.Second

// note records the outcome err of one attempt at now and logs it as
// quietLog says; msg and args say what failed.
func (q *quietLog) note(log *slog.Logger, now time.Time, err error, msg string, args ...any) {
	if err == nil {
		if !q.warned.IsZero() {
			log.Info(msg+": works again", append(args, "failed_for", now.Sub(q.since).Round(time.Second))...)
		}
		*q = quietLog{}
		return
	}
	if q.since.IsZero() {
		q.since = now
	}
	args = append(args, "error", err, "failing_for", now.Sub(q.since).Round(time.Second))
	if now.Sub(q.since) < quietFor || now.Sub(q.warned) < quietFor {
		log.Debug(msg, args...)
		return
	}
	q.warned = now
	log.Warn(msg, args...)
}

// watchRegistry notes every registry update until the watcher stops.
func (n *Node) watchRegistry(w jetstream.KeyWatcher) {
	for e := range w.Updates() {
		if e == nil { // the end of the initial values: FeatureOn may answer now
			n.mu.Lock()
			n.registryRead = true
			n.mu.Unlock()
			n.logFeatures()
			continue
		}
		n.mu.Lock()
		switch e.Operation() {
		case jetstream.KeyValuePut:
			var r registryEntry
			switch err := json.Unmarshal(e.Value(), &r); {
			case err != nil:
				n.log.Warn("cluster registry entry unreadable", "key", e.Key(), "error", err)
			case e.Key() == n.cfg.Name && r.Instance != n.instance:
				// Another node with this name, renewing its entry while
				// this one runs: the one started later stops its
				// heartbeat and reports the clash. An entry among the
				// watch's initial values is not proof: it may be this
				// node's previous run, killed within RegistryTTL, which
				// nobody renews (checkClash tells the two apart); a
				// live node's next heartbeat comes after them.
				if n.registryRead && r.StartedAt.Before(n.start) && n.clash == "" {
					n.clash = fmt.Sprintf("%s: another node named %q started at %s", ErrNameClash, n.cfg.Name, r.StartedAt.Format(time.RFC3339))
					n.problem = n.clash
					n.log.Error("cluster node name clash: this node stops its heartbeat; give it another cluster.name", "started", r.StartedAt)
				}
			default:
				n.seen[e.Key()] = seen{entry: r, at: time.Now()}
			}
		default: // a node that closed deletes its entry
			delete(n.seen, e.Key())
		}
		n.mu.Unlock()
		n.logFeatures()
	}
}

// heartbeats puts this node's entry every HeartbeatInterval until Close,
// creating the registry first if Start could not (no quorum then).
func (n *Node) heartbeats() {
	defer close(n.done)
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			n.mu.Lock()
			if n.watch != nil {
				_ = n.watch.Stop()
			}
			n.mu.Unlock()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), HeartbeatInterval)
		n.heartbeat(ctx)
		cancel()
		n.logFeatures() // a node that died stops being alive without a registry update
	}
}

// heartbeat puts this node's entry once, creating the registry or raising
// its replicas as needed, and records the outcome as the node's health.
func (n *Node) heartbeat(ctx context.Context) {
	n.mu.Lock()
	clash := n.clash
	n.mu.Unlock()
	if clash != "" {
		return // the problem stays the clash
	}
	kv := n.bucket()
	if kv == nil {
		if err := n.ensureRegistry(ctx); err != nil {
			n.setProblem("jetstream not ready: " + err.Error())
			return
		}
		if err := n.checkClash(context.Background()); errors.Is(err, ErrNameClash) {
			n.mu.Lock()
			n.clash, n.problem = err.Error(), err.Error()
			n.mu.Unlock()
			n.log.Error("cluster node name clash: this node stops its heartbeat; give it another cluster.name", "error", err)
			return
		}
		kv = n.bucket()
		n.log.Info("cluster registry ready", "replicas", n.Replicas())
	} else {
		err := n.raiseReplicas(ctx, kv, n.Replicas())
		n.raiseLog.note(n.log, time.Now(), err, "cluster bucket replicas not raised", "bucket", RegistryBucket)
	}
	e := registryEntry{Name: n.cfg.Name, Version: n.o.Version, Protocol: ProtocolVersion, StartedAt: n.start.UTC(),
		Extensions: []ExtensionInfo{}, Instance: n.instance}
	if n.o.Stress != nil {
		e.Stress = n.o.Stress()
	}
	if n.o.Extensions != nil {
		if x := n.o.Extensions(); x != nil {
			e.Extensions = x
		}
	}
	if n.o.Clients != nil {
		e.ClientCount = n.o.Clients()
	}
	data, err := json.Marshal(e)
	if err != nil {
		panic(err) // a struct of plain fields always marshals
	}
	if _, err := kv.Put(ctx, n.cfg.Name, data); err != nil {
		n.setProblem("registry heartbeat: " + err.Error())
		return
	}
	n.setProblem("")
}

// Status returns the cluster as this node sees it. It asks JetStream for
// the streams (up to 2 s); without quorum it reports that as a problem and
// what it knows locally.
func (n *Node) Status() Status {
	st := Status{Node: n.cfg.Name, Cluster: n.cfg.ClusterName, Replicas: n.Replicas(), ConfiguredReplicas: n.cfg.Replicas,
		Protocol: ProtocolVersion, Problems: []string{}, Nodes: []NodeStatus{}, Streams: []StreamStatus{},
		Mismatch: []string{}}
	if r := n.routing(); r != nil {
		st.Dropped = r.Dropped()
	}
	n.mu.Lock()
	if n.problem != "" {
		st.Problems = append(st.Problems, n.problem)
	}
	n.mu.Unlock()
	st.Nodes = n.registryNodes()
	names := map[string]bool{}
	for _, ns := range st.Nodes {
		names[ns.Name] = true
	}

	if info, err := n.srv.Jsz(&server.JSzOptions{}); err == nil && info.Meta != nil {
		if info.Meta.Leader == "" {
			st.Problems = append(st.Problems, "jetstream has no meta leader: fewer than a quorum of the cluster's nodes are reachable")
		}
		for _, p := range info.Meta.Replicas {
			if !names[p.Name] {
				st.Nodes = append(st.Nodes, NodeStatus{Name: p.Name, Alive: !p.Offline && p.Current, Extensions: []ExtensionInfo{}})
				names[p.Name] = true
			}
		}
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	for i := range st.Nodes {
		st.Nodes[i].State = nodeState(st.Nodes[i])
	}

	down := map[string]bool{} // the nodes of the list that are not alive
	for _, ns := range st.Nodes {
		down[ns.Name] = !ns.Alive
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	streams := n.jsx.ListStreams(ctx)
	for info := range streams.Info() {
		s := streamStatus(info, n.cfg.Name, !n.srv.JetStreamIsClustered(), down)
		s.Kind = KindStream
		if name, ok := strings.CutPrefix(s.Name, kvStreamPrefix); ok {
			s.Name, s.Kind = name, KindBucket
		}
		if !s.Healthy {
			st.Problems = append(st.Problems, fmt.Sprintf("%s %s: %s", s.Kind, s.Name, s.Problem))
		}
		st.Streams = append(st.Streams, s)
	}
	if err := streams.Err(); err != nil {
		st.Problems = append(st.Problems, "list streams: "+err.Error())
	}
	st.Mismatch = mismatch(st.Nodes)
	st.Features = n.featureStatus()
	st.Healthy = len(st.Problems) == 0
	return st
}

// registryNodes returns the nodes of the registry, by name: those heard
// of within RegistryTTL (JetStream removes the others' entries too).
func (n *Node) registryNodes() []NodeStatus {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []NodeStatus{}
	for name, s := range n.seen {
		if now.Sub(s.at) > RegistryTTL {
			continue
		}
		e := s.entry
		out = append(out, NodeStatus{Name: name, Version: e.Version, Protocol: e.Protocol, Stress: e.Stress,
			Clients: e.ClientCount, Extensions: e.Extensions, StartedAt: e.StartedAt, LastSeen: s.at.UTC(),
			Alive: now.Sub(s.at) <= AliveWindow, Registered: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// aliveNames returns the names of the alive nodes of the registry and
// this node's own (whose heartbeat may not have landed yet), by name:
// the nodes a control request goes to.
func (n *Node) aliveNames() []string {
	names := []string{n.cfg.Name}
	for _, ns := range n.registryNodes() {
		if ns.Alive && ns.Name != n.cfg.Name {
			names = append(names, ns.Name)
		}
	}
	slices.Sort(names)
	return names
}

// otherAlive returns the names of the alive nodes of the registry other
// than this one: the nodes a new subscription must be known on
// (interest.go).
func (n *Node) otherAlive() []string {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name, s := range n.seen {
		if name != n.cfg.Name && now.Sub(s.at) <= AliveWindow {
			out = append(out, name)
		}
	}
	return out
}

// notAlive returns the nodes this node knows of that are not alive, by
// name, with why: every node whose heartbeat it heard since it started
// but not within AliveWindow (however long ago: JetStream's removal of
// the entry after RegistryTTL does not make this node forget it; a node
// stopped with SIGTERM deletes its entry and is forgotten), and the
// JetStream peers of the meta group without such a heartbeat. These are
// the nodes a control request is not sent to (SetExtension).
func (n *Node) notAlive() []NotAsked {
	now := time.Now()
	known := map[string]bool{n.cfg.Name: true}
	out := []NotAsked{}
	n.mu.Lock()
	for name, s := range n.seen {
		known[name] = true
		if name == n.cfg.Name {
			continue
		}
		if age := now.Sub(s.at); age > AliveWindow {
			out = append(out, NotAsked{Node: name, Reason: fmt.Sprintf("not alive: last seen %d s ago", int(age.Seconds()))})
		}
	}
	n.mu.Unlock()
	var info *server.JSInfo
	if n.srv != nil { // nil in a test of a Node without a server
		info, _ = n.srv.Jsz(&server.JSzOptions{})
	}
	if info != nil && info.Meta != nil {
		for _, p := range info.Meta.Replicas {
			if !known[p.Name] {
				known[p.Name] = true
				out = append(out, NotAsked{Node: p.Name, Reason: "not alive: a JetStream peer without a registry entry (stopped, or not a Propolis node)"})
			}
		}
	}
	slices.SortFunc(out, func(a, b NotAsked) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Mismatch returns how the alive nodes differ (Status.Mismatch), from
// the registry alone: it asks nothing of JetStream, so the control
// center may read it at every poll.
func (n *Node) Mismatch() []string { return mismatch(n.registryNodes()) }

// streamStatus summarizes a stream's info; when JetStream runs alone,
// self leads every stream. down holds the nodes known not to be alive
// (peerOffline).
func streamStatus(info *jetstream.StreamInfo, self string, alone bool, down map[string]bool) StreamStatus {
	s := StreamStatus{Name: info.Config.Name, Replicas: info.Config.Replicas, Messages: info.State.Msgs, Bytes: info.State.Bytes,
		Peers: []PeerStatus{}}
	if c := info.Cluster; c != nil {
		s.Leader = c.Leader
		for _, p := range c.Replicas {
			s.Peers = append(s.Peers, PeerStatus{Name: p.Name, Current: p.Current, Offline: peerOffline(p, down), Lag: p.Lag})
		}
	}
	if alone {
		s.Leader = self
	}
	s.Problem = s.problem()
	s.Healthy = s.Problem == ""
	return s
}

// peerOffline says whether a stream's replica p is offline. JetStream
// says so itself only after a while, and meanwhile reports a killed
// node's replica as not current (lag 0 or the lag when it died) for a
// minute or more: "behind" would mislead. So a replica is offline too
// when it is not current and either JetStream last heard from it more
// than AliveWindow ago, or its node is known not to be alive (down: a
// registered node without a heartbeat within AliveWindow, or a bare
// JetStream peer its meta group counts offline).
func peerOffline(p *jetstream.PeerInfo, down map[string]bool) bool {
	return p.Offline || !p.Current && (p.Active > AliveWindow || down[p.Name])
}

// problem says why s is not healthy ("no leader", "replica n2 offline,
// replica n3 behind by 12"), or "" when it is.
func (s StreamStatus) problem() string {
	if s.Leader == "" {
		return "no leader"
	}
	var bad []string
	for _, p := range s.Peers {
		switch {
		case p.Offline:
			bad = append(bad, p.Name+" offline")
		case !p.Current:
			bad = append(bad, fmt.Sprintf("%s behind by %d", p.Name, p.Lag))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "replica " + strings.Join(bad, ", replica ")
}

// mismatch names each way the alive registered nodes differ.
func mismatch(nodes []NodeStatus) []string {
	var alive []NodeStatus
	for _, n := range nodes {
		if n.Alive && n.Registered {
			alive = append(alive, n)
		}
	}
	out := []string{}
	differ := func(what string, value func(NodeStatus) string) {
		vals := make([]string, len(alive))
		for i, n := range alive {
			vals[i] = value(n)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(vals)))) < 2 {
			return
		}
		parts := make([]string, len(alive))
		for i, n := range alive {
			parts[i] = n.Name + " " + vals[i]
		}
		out = append(out, what+" differs: "+strings.Join(parts, ", "))
	}
	differ("propolis version", func(n NodeStatus) string { return n.Version })
	differ("cluster protocol", func(n NodeStatus) string { return strconv.Itoa(n.Protocol) })
	ids := map[string]bool{}
	for _, n := range alive {
		for _, x := range n.Extensions {
			ids[x.ID] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		differ("extension "+id, func(n NodeStatus) string {
			for _, x := range n.Extensions {
				if x.ID == id {
					return strings.TrimSpace(x.Version + " " + x.State) // a failed folder may have no version
				}
			}
			return "(none)"
		})
	}
	return out
}
