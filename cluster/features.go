package cluster

import (
	"slices"
	"sync/atomic"
	"time"
)

// The protocol gate: a cluster feature new in protocol version v changes
// what nodes send each other or keep in the cluster's streams and
// buckets, so it is used only while every alive node speaks v or later.
// A rolling upgrade therefore runs the old behaviour until its last node
// runs the new build, and a node of an older build joining switches the
// feature off again (docs/cluster.md, "Rolling upgrades").
//
// Alive means what the registry says (AliveWindow): a node that stops
// cleanly deletes its entry and no longer holds a feature back; a node
// that dies holds it back until its last heartbeat is AliveWindow old.
// Until this node has read the registry's current entries once, it knows
// of no other node, and every feature is off.

// Feature is a cluster behaviour every node must understand. Features
// lists them all; FeatureOn says whether one may be used now.
type Feature struct {
	// Name is how status and logs call it: lower-case words joined by -.
	Name string
	// Since is the first cluster protocol version that has it.
	Since int
}

// FeatureSessions is replicated sessions: the state of a persistent
// session whose client is offline lives in JetStream (the
// PROPOLIS_SESSIONS bucket and the PROPOLIS_QUEUES stream), so that the
// client finds it on any node. Off, every node keeps its sessions
// locally, as protocol 1 does.
var FeatureSessions = Feature{Name: "replicated-sessions", Since: 2}

// FeatureQoS0Unstored is QoS 0 routed on pz. subjects, which no stream
// stores (route.go). Off, a node sends QoS 0 on pm. subjects, where
// PROPOLIS_MESSAGES stores it, because nodes of protocol 2 or older
// subscribe to those only.
var FeatureQoS0Unstored = Feature{Name: "qos0-not-stored", Since: 3}

// Features lists every gated feature, oldest first, in the order Status
// shows them.
var Features = []Feature{FeatureSessions, FeatureQoS0Unstored}

// hotGate is a feature's answer for a path taken per message: FeatureOn,
// computed again at most every hotGateFor (a node's death or arrival is
// seen that much later there; the registry's own window is seconds).
type hotGate struct {
	f     Feature
	until atomic.Int64 // Unix nanoseconds until which on holds
	on    atomic.Bool
}

// hotGateFor is how long a hotGate reuses its answer.
const hotGateFor = 100 * time.Millisecond

// get returns g's feature's FeatureOn on n, at most hotGateFor old.
func (g *hotGate) get(n *Node) bool {
	now := time.Now().UnixNano()
	if now < g.until.Load() {
		return g.on.Load()
	}
	on := n.FeatureOn(g.f)
	g.on.Store(on)
	g.until.Store(now + int64(hotGateFor))
	return on
}

// FeatureStatus is one feature of Status.
type FeatureStatus struct {
	// Name and Since are the Feature's.
	Name  string `json:"name"`
	Since int    `json:"since"`
	// On is FeatureOn's answer when Status was made.
	On bool `json:"on"`
	// HeldBackBy names, sorted, the alive nodes (this one included) that
	// speak a protocol older than Since; empty when On, and also while
	// this node has not read the registry yet (On is false then).
	HeldBackBy []string `json:"held_back_by"`
}

// FeatureOn reports whether f may be used now: this node has read the
// registry and every alive node in it, this one included, speaks cluster
// protocol f.Since or later. It is called on the path of a client's
// CONNECT: it takes the node's lock and looks at each registry entry, no
// I/O. The answer may change at any moment (a node joins, stops or dies);
// the node logs each change (logFeatures).
func (n *Node) FeatureOn(f Feature) bool { return n.Supports(f.Since) }

// Supports reports whether every alive node speaks cluster protocol v or
// later, so that a feature new in v may be used; false until this node
// has read the registry. FeatureOn(f) is Supports(f.Since).
func (n *Node) Supports(v int) bool {
	on, _ := n.gate(v, time.Now(), false)
	return on
}

// gate is the one rule of the protocol gate: whether protocol v may be
// spoken, and, when names is set, which alive nodes hold it back (sorted;
// this node first checked by its own ProtocolVersion, the others by their
// registry entries).
func (n *Node) gate(v int, now time.Time, names bool) (on bool, by []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if names {
		by = []string{}
	}
	held := false
	if ProtocolVersion < v {
		held = true
		if !names {
			return false, nil
		}
		by = append(by, n.cfg.Name)
	}
	for name, s := range n.seen {
		if name == n.cfg.Name || now.Sub(s.at) > AliveWindow || s.entry.Protocol >= v {
			continue
		}
		held = true
		if !names {
			return false, nil
		}
		by = append(by, name)
	}
	slices.Sort(by)
	return n.registryRead && !held, by
}

// featureStatus returns every feature of Features as this node sees it
// now.
func (n *Node) featureStatus() []FeatureStatus {
	now := time.Now()
	out := make([]FeatureStatus, len(Features))
	for i, f := range Features {
		on, by := n.gate(f.Since, now, true)
		out[i] = FeatureStatus{Name: f.Name, Since: f.Since, On: on, HeldBackBy: by}
	}
	return out
}

// logFeatures logs, at info, each feature whose state changed since the
// last call: "cluster feature on" with the nodes that held it back
// until then, "cluster feature off" with the nodes that hold it back now.
// The first state logged is the one found once the registry was read. It
// runs after every registry update and every heartbeat (a node that died
// stops being alive without an update); featureMu makes each change
// logged once when both run at once. Replicated sessions switching on
// (the first state found included) start a check of the restored
// sessions against their records (reconcileSessions) on a goroutine,
// once the node has its broker.
func (n *Node) logFeatures() {
	n.mu.Lock()
	read := n.registryRead
	n.mu.Unlock()
	if !read {
		return
	}
	n.featureMu.Lock()
	defer n.featureMu.Unlock()
	if n.featureLast == nil {
		n.featureLast = map[string]FeatureStatus{}
	}
	for _, st := range n.featureStatus() {
		last, known := n.featureLast[st.Name]
		switch {
		case known && last.On == st.On:
			if !st.On {
				n.featureLast[st.Name] = st // the nodes holding it back now, for the line when it comes on
			}
			continue
		case st.On && known:
			n.log.Info("cluster feature on", "feature", st.Name, "protocol", st.Since, "was_held_back_by", last.HeldBackBy)
		case st.On:
			n.log.Info("cluster feature on", "feature", st.Name, "protocol", st.Since)
		default:
			n.log.Info("cluster feature off", "feature", st.Name, "protocol", st.Since, "held_back_by", st.HeldBackBy)
		}
		n.featureLast[st.Name] = st
		if st.On && st.Name == FeatureSessions.Name {
			if ss := n.sessionsPart(); ss != nil {
				ss.background(func() { n.reconcileSessions(ss) })
			}
		}
	}
}
