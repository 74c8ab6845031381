package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// This file joins the node (node.go, registry.go) to the broker: Node
// implements broker.Cluster by handing each report to the part that acts
// on it: messages and plain filters to the router (route.go), shared
// filters to shared (shared.go), client ids to owners (owner.go) and, with
// replicated sessions on, to sessions (sessions.go), which also answers
// ClaimSession.
//
// The order `propolis serve` follows: Start, StartRouting (the streams;
// before broker.New, whose restore reports filters and forwards crash
// wills), broker.New with the Node as Options.Cluster, UseBroker (owners
// and shared, which act on the broker), Join (the retained replay), then
// the broker's Start; at shutdown StopReceiving before the broker's Close
// and Close after it.

var _ broker.Cluster = (*Node)(nil)

// ErrNoRouting is returned by Forward before StartRouting succeeded.
var ErrNoRouting = errors.New("cluster routing not started")

// Broker is what the cluster acts on: *broker.Server.
type Broker interface {
	remoteBroker
	ownerBroker
	sharedBroker
	sessionBroker
	// Config is the broker's configuration: replicated sessions read
	// mqtt.max_session_expiry (how long a tombstone stays) and
	// mqtt.max_queued_messages (the bound of a replay) at UseBroker.
	Config() *config.Config
}

// registryWait bounds UseBroker's wait for the registry's first read,
// and a CONNECT's while the registry was not read yet (Node.registryWait
// replaces it when positive, in tests).
const registryWait = 5 * time.Second

// StartRouting creates or updates the message and retained streams with
// the replication factor in force and starts the router. It needs
// JetStream: a node that started without quorum (Status unhealthy) gets
// an error naming the cause, and `propolis serve` calls it again until it
// succeeds (accepting no client meanwhile), as a node that cannot store a
// QoS 1 message cannot acknowledge one.
func (n *Node) StartRouting() error {
	r, err := newRouter(routerOptions{Conn: n.nc, JS: n.jsx, Node: n.cfg.Name, Replicas: n.Replicas(),
		Levels: n.cfg.TopicLevelDistribution, MaxAge: time.Duration(n.cfg.StreamMaxAge),
		MaxBytes: int64(n.cfg.StreamMaxBytes), Log: n.log, Interest: n.interest,
		StoreQoS0: func() bool { return !n.qos0Gate.get(n) }})
	if err != nil {
		if p := n.Status().Problems; len(p) > 0 {
			return fmt.Errorf("cluster node %s: %w (%s)", n.cfg.Name, err, p[0])
		}
		return fmt.Errorf("cluster node %s: %w", n.cfg.Name, err)
	}
	n.mu.Lock()
	n.router = r
	n.mu.Unlock()
	return nil
}

// UseBroker gives the node its broker, after broker.New and before the
// broker's Start: the router starts subscribing for the filters reported
// so far, take-over (owners) and shared subscriptions (shared) start. It
// waits up to registryWait for the registry's first read (the protocol
// gate is unknown until then) and, with replicated sessions on, checks
// the restored sessions against their records (reconcileSessions; again
// each time the feature switches on: logFeatures).
func (n *Node) UseBroker(b Broker) error {
	r := n.routing()
	if r == nil {
		return fmt.Errorf("cluster node %s: %w", n.cfg.Name, ErrNoRouting)
	}
	if err := r.useBroker(b); err != nil {
		return fmt.Errorf("cluster node %s: %w", n.cfg.Name, err)
	}
	w, err := newOwners(ownerOptions{JS: n.jsx, Node: n.cfg.Name, Replicas: n.Replicas(), Broker: b, Log: n.log,
		Ready: n.srv.JetStreamIsCurrent})
	if err != nil {
		return fmt.Errorf("cluster node %s: %w", n.cfg.Name, err)
	}
	s, err := newShared(sharedOptions{Conn: n.nc, Levels: n.cfg.TopicLevelDistribution, Interest: n.interest, Broker: b, Log: n.log})
	if err != nil {
		w.Close()
		return fmt.Errorf("cluster node %s: %w", n.cfg.Name, err)
	}
	mqttCfg := b.Config().MQTT
	ss, err := newSessions(sessionOptions{Conn: n.nc, JS: n.jsx, Node: n.cfg.Name, Replicas: n.Replicas(),
		Levels: n.cfg.TopicLevelDistribution, MaxBytes: int64(n.cfg.StreamMaxBytes), Broker: b, Router: r,
		On: n.sessionsOn, Alive: n.reachable, Registered: n.alive, Sweeper: n.sweeper, Log: n.log,
		Attributes: n.attributeStore(), TombstoneFor: time.Duration(mqttCfg.MaxSessionExpiry),
		MaxReplay: mqttCfg.MaxQueuedMessages})
	if err != nil {
		s.Close()
		w.Close()
		return fmt.Errorf("cluster node %s: %w", n.cfg.Name, err)
	}
	cu := newCatchUp(catchUpOptions{Router: r, Sessions: ss, Shared: s, Healthy: n.healthyForCatchUp, Log: n.log})
	n.mu.Lock()
	n.owners, n.shared, n.sessions, n.catchup = w, s, ss, cu
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), n.registryWaitFor())
	err = n.waitRegistry(ctx)
	cancel()
	if err != nil {
		n.log.Warn("cluster: registry not read yet; the protocol gate is unknown, CONNECTs wait for it", "error", err)
	}
	if n.sessionsOn() {
		n.reconcileSessions(ss)
	}
	return nil
}

// reconcileSessions checks the sessions the broker restored against
// their records (sessions.reconcile), logging what it did: at UseBroker,
// and on a goroutine each time replicated sessions switch on
// (logFeatures), as sessions restored or kept while they were off may
// have moved or ended in the cluster meanwhile.
func (n *Node) reconcileSessions(ss *sessions) {
	ss.reconcileMu.Lock()
	defer ss.reconcileMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	dropped, released, err := ss.reconcile(ctx)
	cancel()
	if err != nil {
		n.log.Warn("cluster: restored sessions not all checked against their records; those stay here", "error", err)
	}
	if dropped+released > 0 {
		n.log.Info("cluster: restored sessions checked against their records", "dropped", dropped, "released", released)
	}
}

// registryWaitFor is registryWait, or n.registryWait when set (tests).
func (n *Node) registryWaitFor() time.Duration {
	if n.registryWait > 0 {
		return n.registryWait
	}
	return registryWait
}

// waitRegistry waits until this node has read the registry once (the
// protocol gate known), polling every recordPoll, or until ctx ends
// (an error saying so).
func (n *Node) waitRegistry(ctx context.Context) error {
	for {
		n.mu.Lock()
		read := n.registryRead
		n.mu.Unlock()
		if read {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the cluster registry was not read yet: %w", ctx.Err())
		case <-time.After(recordPoll):
		}
	}
}

// sessionsOn reports whether sessions are replicated (docs/cluster.md,
// "Replicated sessions"): the protocol gate's FeatureSessions (features.go).
func (n *Node) sessionsOn() bool { return n.FeatureOn(FeatureSessions) }

// alive reports whether node is alive in the registry.
func (n *Node) alive(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.seen[node]
	return ok && time.Since(s.at) <= AliveWindow
}

// reachable reports whether node is alive in the registry and this
// node's server has a route to it. A node killed is not reachable as soon
// as its routes close, where the registry would count it alive for up to
// AliveWindow more: a claim of a session it held then uses the record at
// once instead of asking the dead node to release it (docs/cluster.md,
// "Replicated sessions"). The routes are read at most every
// routeCacheFor.
func (n *Node) reachable(node string) bool {
	if !n.alive(node) {
		return false
	}
	if node == n.cfg.Name {
		return true
	}
	return n.routes.has(n.srv, node)
}

// routeCacheFor is how long reachable reuses a read of the server's
// routes: thousands of claims after a node died read them once.
const routeCacheFor = 250 * time.Millisecond

// routeNames caches, by server name, the ids of the routes this node's
// server has to the other servers: the one place that reads them
// (reachable, healthyForCatchUp).
type routeNames struct {
	mu  sync.Mutex
	at  time.Time
	ids map[string][]uint64 // sorted
	err error
}

// read returns srv's routes by server name (sorted ids), read again when
// the last read is older than routeCacheFor. The map is shared: callers
// do not change it.
func (r *routeNames) read(srv *server.Server) (map[string][]uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil || time.Since(r.at) > routeCacheFor {
		r.ids, r.err = map[string][]uint64{}, nil
		rz, err := srv.Routez(&server.RoutezOptions{})
		if err != nil {
			r.err = err
		} else {
			for _, ri := range rz.Routes {
				r.ids[ri.RemoteName] = append(r.ids[ri.RemoteName], ri.Rid)
			}
			for _, ids := range r.ids {
				slices.Sort(ids)
			}
		}
		r.at = time.Now()
	}
	return r.ids, r.err
}

// has reports whether srv has a route to the server named name.
func (r *routeNames) has(srv *server.Server, name string) bool {
	ids, _ := r.read(srv)
	return len(ids[name]) > 0
}

// sweeper reports whether this node sweeps the sessions bucket for
// expired records: it is the alive node with the lowest name in the
// registry (its own entry included). Nodes whose registries differ for a
// moment may both sweep, which the sweep's conditioned deletes allow.
func (n *Node) sweeper() bool {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	lowest := ""
	for name, s := range n.seen {
		if now.Sub(s.at) <= AliveWindow && (lowest == "" || name < lowest) {
			lowest = name
		}
	}
	return lowest == n.cfg.Name
}

// sessionsPart returns the sessions part, nil before UseBroker.
func (n *Node) sessionsPart() *sessions {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sessions
}

var _ broker.ClusterSessions = (*Node)(nil)

// ClaimSession implements broker.ClusterSessions: the broker calls it for
// every CONNECT accepted, on the client's goroutine, before mochi looks
// for a session to inherit. With replicated sessions on, it returns the
// client's session as the cluster holds it (nil: none, or it is on this
// node already) and the messages owed to it, and records the session as
// online here; it blocks up to 10 s (another node releasing the session
// included). An error (no JetStream quorum, a timeout) makes the broker
// refuse the CONNECT. With them off it returns nil, nil, nil at once.
// While this node has not read the registry yet (the protocol gate
// unknown), it first waits for that, up to registryWait, then fails.
// A session that ends with its connection (persistent false) and has no
// record costs one KV read.
func (n *Node) ClaimSession(clientID string, cleanStart, persistent bool) (*broker.SessionState, []broker.Message, error) {
	ss := n.sessionsPart()
	if ss == nil {
		return nil, nil, nil
	}
	// Until the registry was read the gate is unknown: a claim skipped
	// then would resume a stale local copy, so wait for it (bounded).
	ctx, cancel := context.WithTimeout(context.Background(), n.registryWaitFor())
	err := n.waitRegistry(ctx)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster node %s: claim the session of %q: %w", n.cfg.Name, clientID, err)
	}
	if !n.sessionsOn() {
		return nil, nil, nil
	}
	st, msgs, err := ss.claim(clientID, cleanStart, persistent)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster node %s: claim the session of %q: %w", n.cfg.Name, clientID, err)
	}
	return st, msgs, nil
}

// SessionChanged implements broker.ClusterSessions: with replicated
// sessions on, the record of clientID's session, online here, gets the
// session's new state, coalesced per client id (sessionsync.go). It
// returns at once.
func (n *Node) SessionChanged(clientID string) {
	if ss := n.sessionsPart(); ss != nil && n.sessionsOn() {
		ss.sessionChanged(clientID)
	}
}

// InvalidateSession ends the session of clientID on every node: with
// replicated sessions on it replaces its record by a tombstone (so that a
// node missing the news drops its copy later), purges its held messages,
// invalidates the local session (a connected client is disconnected with
// 0x98), then tells the other nodes to invalidate theirs; with them off,
// only the local one (phase 1). The operator's invalidate (admin API, CLI,
// control center) calls it when the broker is a node, after UseBroker.
// Errors: broker.ErrNoSession (wrapped) when neither the cluster nor this
// node had the session; the broker's; JetStream's.
func (n *Node) InvalidateSession(clientID string) error {
	ss := n.sessionsPart()
	if ss == nil {
		return fmt.Errorf("cluster node %s: invalidate the session of %q: no broker yet", n.cfg.Name, clientID)
	}
	if !n.sessionsOn() {
		return ss.o.Broker.InvalidateSession(clientID)
	}
	found, err := ss.invalidate(clientID)
	switch {
	case errors.Is(err, broker.ErrNoSession) && found: // it was offline in the cluster
		return nil
	case err != nil && !errors.Is(err, broker.ErrNoSession):
		return fmt.Errorf("cluster node %s: invalidate the session of %q: %w", n.cfg.Name, clientID, err)
	}
	return err
}

// Join puts the cluster's retained messages into the broker's store
// (the last of each topic, deletions included), before the broker accepts
// clients.
func (n *Node) Join(ctx context.Context) error {
	r := n.routing()
	if r == nil {
		return fmt.Errorf("cluster node %s: %w", n.cfg.Name, ErrNoRouting)
	}
	count, err := r.replayRetained(ctx)
	if err != nil {
		return fmt.Errorf("cluster node %s: retained messages: %w", n.cfg.Name, err)
	}
	n.log.Info("cluster retained messages replayed", "topics", count)
	return nil
}

// Forward implements broker.Cluster.
func (n *Node) Forward(m *broker.Message, publisher string) error {
	r := n.routing()
	if r == nil {
		return ErrNoRouting
	}
	return r.forward(m, publisher)
}

// Subscribed implements broker.Cluster. The broker calls it from mochi's
// OnSubscribed, on the client's goroutine, before the SUBACK is written.
// When the filter's subject (or shared group) is new on this node, it
// returns only once every other alive node's server knows the
// subscription (interest.go: one round trip, at most about 2 s, none
// when the node is alone), so that a message published on another node
// after the SUBACK reaches the subscriber; a subject subscribed before
// costs nothing.
func (n *Node) Subscribed(filter, group string) {
	var seq uint64
	if group == "" {
		if r := n.routing(); r != nil {
			seq = r.subscribed(filter)
		}
	} else {
		n.mu.Lock()
		s := n.shared
		n.mu.Unlock()
		if s != nil {
			seq = s.subscribed(filter, group)
		}
	}
	n.interest.wait(seq)
}

// Unsubscribed implements broker.Cluster.
func (n *Node) Unsubscribed(filter, group string) {
	if group == "" {
		if r := n.routing(); r != nil {
			r.unsubscribed(filter)
		}
		return
	}
	n.mu.Lock()
	s := n.shared
	n.mu.Unlock()
	if s != nil {
		s.unsubscribed(filter, group)
	}
}

// Connected implements broker.Cluster.
func (n *Node) Connected(clientID string) {
	n.mu.Lock()
	w := n.owners
	n.mu.Unlock()
	if w != nil {
		w.connected(clientID)
	}
	if ss := n.sessionsPart(); ss != nil && n.sessionsOn() {
		ss.connected(clientID)
	}
}

// Disconnected implements broker.Cluster.
func (n *Node) Disconnected(clientID string) {
	n.mu.Lock()
	w := n.owners
	n.mu.Unlock()
	if w != nil {
		w.disconnected(clientID)
	}
	if ss := n.sessionsPart(); ss != nil && n.sessionsOn() {
		ss.disconnected(clientID)
	}
}

// StopReceiving stops everything that acts on the broker from the
// cluster: the router's subscriptions and inbox (nothing more is
// injected or retained), the shared queue subscriptions and the take-over
// watch. Forward keeps working, so wills published while the broker
// closes still reach the other nodes. `propolis serve` calls it before
// the broker's Close, so that nothing reaches a closed broker; Close does
// the rest after the broker's Close. Calling it again does nothing.
func (n *Node) StopReceiving() { n.stopParts(false) }

// JetStreamCurrent reports whether this node's JetStream is current with
// the cluster's meta group (a node alone always is): false while it has
// no quorum. It asks nothing of the network.
func (n *Node) JetStreamCurrent() bool { return n.srv.JetStreamIsCurrent() }

// healthyForCatchUp reports whether nothing can be missing from what
// this node receives (catchup.go): its connection up, JetStream current
// and a route to every other node alive in the registry; and the epochs
// of its connections: the reconnects of its NATS connection, and the ids
// of its routes to each node, which change when one was lost and made
// again.
func (n *Node) healthyForCatchUp() (bool, map[string]string) {
	epoch := map[string]string{"nats": fmt.Sprint(n.nc.Stats().Reconnects)}
	ids, err := n.routes.read(n.srv)
	if err != nil {
		return false, epoch
	}
	for name, rids := range ids {
		epoch["route "+name] = fmt.Sprint(rids)
	}
	if !n.nc.IsConnected() || !n.srv.JetStreamIsCurrent() {
		return false, epoch
	}
	for _, name := range n.otherAlive() {
		if ids[name] == nil {
			return false, epoch
		}
	}
	return true, epoch
}

// routing returns the router, nil before StartRouting.
func (n *Node) routing() *router {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.router
}

// closeParts stops owners, shared and the router, before the connection
// closes (Close).
func (n *Node) closeParts() { n.stopParts(true) }

// stopParts stops the parts that act on the broker: the catch-up,
// sessions, the take-over watch, the shared subscriptions and the
// router. final (closeParts) also drains and closes owners and forgets
// every part; otherwise (StopReceiving) they stay for Close.
func (n *Node) stopParts(final bool) {
	n.mu.Lock()
	w, s, r, ss, cu := n.owners, n.shared, n.router, n.sessions, n.catchup
	if final {
		n.owners, n.shared, n.router, n.sessions, n.catchup = nil, nil, nil, nil, nil
	}
	n.mu.Unlock()
	if cu != nil {
		cu.close()
	}
	if ss != nil {
		ss.close()
	}
	if w != nil {
		if final {
			w.Close()
		} else {
			w.stopWatch()
		}
	}
	if s != nil {
		s.Close()
	}
	if r != nil {
		r.close()
	}
}
