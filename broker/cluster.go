package broker

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// This file is the broker's side of a cluster (package cluster implements
// Cluster): what a node hands to the others (forward), what it receives
// from them (InjectRemote), and the filters and client ids it reports.
// With Options.Cluster nil each entry point is a nil check and nothing
// else.

// Cluster connects the broker to the other nodes (cluster/ implements it).
type Cluster interface {
	// Forward hands a message accepted on this node to the other nodes;
	// for QoS 1/2 it returns once stored with the replication factor in force.
	Forward(m *Message, publisher string) error
	// Subscribed and Unsubscribed report a local subscription's filter
	// (group "" unless a shared subscription), counted per client.
	Subscribed(filter, group string)
	Unsubscribed(filter, group string)
	// Connected and Disconnected report a client id on this node.
	Connected(clientID string)
	Disconnected(clientID string)
	// CheckFilter and CheckClientID say whether the cluster can carry a
	// filter (group "" unless shared) or a client id; an error, naming
	// the cluster's limit, makes the broker refuse the SUBSCRIBE's filter
	// (0x8F) or the CONNECT (0x85).
	CheckFilter(filter, group string) error
	CheckClientID(clientID string) error
}

// ClusterClientID is the client id of the inline client InjectRemote
// publishes through: the hook never authorizes, intercepts (inbound) or
// forwards its messages. It is not a client of mochi's map, so no
// connecting client can take it.
const ClusterClientID = "propolis-cluster"

// Causes a Cluster's Forward error may wrap, which the broker names when
// it refuses the PUBLISH (clusterRefusal); any other error means the
// cluster could not store the message.
var (
	// ErrClusterTopicTooLong: the topic's subject is longer than the
	// cluster carries (also a filter or client id's, from CheckFilter and
	// CheckClientID).
	ErrClusterTopicTooLong = errors.New("too long for the cluster")
	// ErrClusterTooLarge: the message is larger than the cluster carries.
	ErrClusterTooLarge = errors.New("message too large for the cluster")
)

// clusterRefusal is the verdict for a QoS 1/2 PUBLISH the cluster did not
// store (see forward), naming the cause: a topic too long for the cluster
// (0x90 Topic Name Invalid), a message too large for it (0x83
// Implementation Specific Error: a PUBACK cannot carry 0x95 Packet Too
// Large), else the cluster unavailable (0x80, as a store failure is,
// storeRefusal). The reason is the error's text, which names the limit.
func clusterRefusal(err error) Verdict {
	switch {
	case errors.Is(err, ErrClusterTopicTooLong):
		return Verdict{Decision: Deny, ReasonCode: CodeTopicNameInvalid, ReasonString: err.Error()}
	case errors.Is(err, ErrClusterTooLarge):
		return Verdict{Decision: Deny, ReasonCode: CodeImplementationSpecificError, ReasonString: err.Error()}
	}
	return Verdict{Decision: Deny, ReasonCode: CodeUnspecifiedError, ReasonString: "cluster unavailable: message not stored"}
}

// clusterCheckFilters refuses, with 0x8F Topic Filter Invalid and the
// cluster's reason, each filter of a SUBSCRIBE not refused yet that the
// cluster cannot carry (CheckFilter). From beginSubscribe.
func (h *hook) clusterCheckFilters(filters []packets.Subscription, verdicts map[string]Verdict) {
	cs := h.cluster
	if cs == nil {
		return
	}
	for _, f := range filters {
		if _, done := verdicts[f.Filter]; done {
			continue
		}
		if err := cs.checkFilter(f.Filter); err != nil {
			verdicts[f.Filter] = Verdict{Decision: Deny, ReasonCode: CodeTopicFilterInvalid, ReasonString: err.Error()}
		}
	}
}

// checkFilter is the Cluster's CheckFilter for a full filter
// ($share/G/F split into F and G).
func (cs *clusterState) checkFilter(f string) error {
	g, inner, shared := topic.SplitShared(f)
	if !shared {
		g, inner = "", f
	}
	return cs.c.CheckFilter(inner, g)
}

// clusterCheckClientID is the reason a CONNECT of cl is refused because
// the cluster cannot carry its client id, "" when it can (or there is no
// cluster).
func (h *hook) clusterCheckClientID(cl *mqtt.Client) string {
	if cs := h.cluster; cs != nil {
		if err := cs.c.CheckClientID(cl.ID); err != nil {
			return err.Error()
		}
	}
	return ""
}

// clusterState is the hook's cluster bookkeeping, nil without a cluster.
type clusterState struct {
	c Cluster
	// sessions is c as ClusterSessions, nil when it does not replicate
	// sessions.
	sessions ClusterSessions
	// inline is the client InjectRemote publishes through.
	inline *mqtt.Client
	// dropped counts QoS 0 messages Forward failed to hand on; log
	// bounds the lines telling it.
	dropped atomic.Uint64
	log     *logLimit

	mu sync.Mutex
	// filters holds, per client id, the filters reported to Subscribed,
	// so that each is reported once per client and withdrawn when the
	// client's session ends (forgetFilters).
	filters map[string]map[string]struct{}
}

// newClusterState returns the bookkeeping for c, nil for a nil c.
func newClusterState(c Cluster, m *mqtt.Server) *clusterState {
	if c == nil {
		return nil
	}
	cs, _ := c.(ClusterSessions)
	return &clusterState{
		c:        c,
		sessions: cs,
		inline:   m.NewClient(nil, "local", ClusterClientID, true),
		log:      newLogLimit(10, time.Minute, nil),
		filters:  make(map[string]map[string]struct{}),
	}
}

// forward hands pk, a PUBLISH accepted on this node (authorized,
// intercepted and stamped), to the cluster, publisher being its client id
// ("" for the broker's own). A QoS 1/2 message the cluster did not store
// is an error, which refuses the PUBLISH; a QoS 0 one the cluster could
// not take is counted (Dropped.ClusterNotForwarded), and nil returned. Either is logged,
// at most 10 lines a minute (a cluster that is down fails every publish).
func (h *hook) forward(pk *packets.Packet, publisher string) error {
	cs := h.cluster
	if cs == nil {
		return nil
	}
	m := messageOfPacket(pk)
	err := cs.c.Forward(&m, publisher)
	if err == nil {
		return nil
	}
	qos := pk.FixedHeader.Qos
	if qos == 0 {
		cs.dropped.Add(1)
	}
	if ok, left := cs.log.take(); ok {
		h.log.Warn("message not forwarded to the cluster", "client", publisher, "topic", pk.TopicName, "qos", qos,
			"error", err, "qos0_dropped_total", cs.dropped.Load(), "not_logged", left)
	}
	if qos > 0 {
		return err
	}
	return nil
}

// admitPublish makes a client's PUBLISH, authorized, intercepted and
// stamped, reach the cluster (forward) and the store (savePending), in that
// order: a message the cluster refused is not stored. Both the plain and
// the intercepted path of OnPublish come here (acceptPublish, downgraded).
// The verdict is for failPublish when it is not nil.
func (h *hook) admitPublish(cl *mqtt.Client, pk *packets.Packet) *Verdict {
	if err := h.forward(pk, cl.ID); err != nil {
		v := clusterRefusal(err)
		return &v
	}
	if err := h.savePending(cl, pk); err != nil {
		v := storeRefusal(err)
		return &v
	}
	return nil
}

// clusterDropped is how many QoS 0 messages this node could not hand to
// the cluster (0 without one): Counters' Dropped.ClusterNotForwarded.
func (s *Server) clusterDropped() uint64 {
	if cs := s.hook.cluster; cs != nil {
		return cs.dropped.Load()
	}
	return 0
}

// InjectRemote delivers m, a message another node accepted from client
// publisher ("" for that broker's own), to this node's subscribers: it is
// not retained (the cluster keeps the retained store through PutRetained
// and DeleteRetained), it is queued for offline persistent sessions and passed through the delivery
// interceptors as any publish, through the inline client ClusterClientID,
// with publisher as its origin (No Local). It is neither authorized,
// intercepted inbound, nor forwarded again. Safe for concurrent use.
func (s *Server) InjectRemote(m Message, publisher string) error {
	cs := s.hook.cluster
	if cs == nil {
		return fmt.Errorf("inject message on %q: %w: the broker runs without a cluster", m.Topic, ErrInvalidArgument)
	}
	if err := checkMessage(&m); err != nil {
		return fmt.Errorf("inject message from the cluster on %q: %w", m.Topic, err)
	}
	pk := s.messagePacket(&m)
	// Not retained here: the cluster writes a node's retained store from
	// PROPOLIS_RETAINED alone, in stream order (cluster/route.go,
	// followRetained). Delivered live with retain 0, as [MQTT-3.3.1-12]
	// wants for subscribers without Retain As Published (see
	// docs/cluster.md for those with it).
	pk.FixedHeader.Retain = false
	if m.QoS > 0 {
		pk.PacketID = 1 // mochi's validation wants one; the inline client sends no ack
	}
	r := &reinjection{origin: publisher, created: s.hook.nextSeq()}
	if exp := pk.Properties.MessageExpiryInterval; exp > 0 {
		r.expiry = time.Now().Unix() + int64(exp)
	}
	key := reinjectKey + "cluster:" + strconv.FormatInt(r.created, 10)
	s.hook.reinjects.Store(key, r)
	defer s.hook.reinjects.Delete(key)
	pk.Connect.ClientIdentifier = key
	if err := s.mochi.InjectPacket(cs.inline, pk); err != nil {
		return fmt.Errorf("inject message from the cluster on %q: %w", m.Topic, err)
	}
	return nil
}

// clusterSubscribed reports the filters of pk that were granted (codes
// below 0x80) to the cluster, each once per client (clusterReport).
func (h *hook) clusterSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if h.cluster == nil || cl.Net.Inline {
		return
	}
	var granted []string
	for i, sub := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 {
			granted = append(granted, sub.Filter)
		}
	}
	h.clusterReport(cl, granted, true)
}

// clusterUnsubscribed withdraws the filters of an UNSUBSCRIBE.
func (h *hook) clusterUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if h.cluster == nil || cl.Net.Inline {
		return
	}
	filters := make([]string, 0, len(pk.Filters))
	for _, sub := range pk.Filters {
		filters = append(filters, sub.Filter)
	}
	h.clusterReport(cl, filters, false)
}

// clusterReport tells the cluster that cl's session gained (subscribed)
// or lost filters (reportFilters), and, for a persistent session, that
// it changed (sessionChanged). The one way a subscription reaches the
// cluster, whether a client's SUBSCRIBE or UNSUBSCRIBE made it or the
// Subscriptions service did.
func (h *hook) clusterReport(cl *mqtt.Client, filters []string, subscribed bool) {
	if h.cluster == nil || len(filters) == 0 {
		return
	}
	h.reportFilters(cl.ID, filters, subscribed)
	h.sessionChanged(cl)
}

// sessionChanged tells a cluster that replicates sessions that cl's
// session, if persistent, changed (ClusterSessions.SessionChanged). It
// takes cl's session lock.
func (h *hook) sessionChanged(cl *mqtt.Client) {
	if cs := h.cluster; cs != nil && cs.sessions != nil && h.persistentLocked(cl) {
		cs.sessions.SessionChanged(cl.ID)
	}
}

// reportFilters tells the cluster that client id's session gained
// (subscribed) or lost filters: plain filters through add and remove,
// shared ones by syncShared from the session's subscriptions.
func (h *hook) reportFilters(id string, filters []string, subscribed bool) {
	cs := h.cluster
	if cs == nil {
		return
	}
	for _, f := range filters {
		if subscribed {
			cs.add(id, f)
		} else {
			cs.remove(id, f)
		}
	}
	h.syncShared(id)
}

// forgetFilters withdraws every filter of client id's session, which
// ended (or was replaced by a fresh one).
func (h *hook) forgetFilters(id string) {
	cs := h.cluster
	if cs == nil {
		return
	}
	cs.mu.Lock()
	fs := cs.filters[id]
	delete(cs.filters, id)
	cs.mu.Unlock()
	for f := range fs {
		cs.report(f, false)
	}
}

// clusterRestored reports the subscriptions of the sessions restore put
// back in mochi.
func (s *Server) clusterRestored() {
	cs := s.hook.cluster
	if cs == nil {
		return
	}
	for id, cl := range s.mochi.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		for f := range cl.State.Subscriptions.GetAll() {
			cs.add(id, f)
		}
	}
}

// add records filter f for client id, reporting it if it is new. Shared
// filters are not recorded here: syncShared reports them
// (clustershared.go).
func (cs *clusterState) add(id, f string) {
	if _, _, shared := topic.SplitShared(f); shared {
		return
	}
	cs.mu.Lock()
	fs := cs.filters[id]
	if fs == nil {
		fs = make(map[string]struct{})
		cs.filters[id] = fs
	}
	_, had := fs[f]
	fs[f] = struct{}{}
	cs.mu.Unlock()
	if !had {
		cs.report(f, true)
	}
}

// remove forgets filter f of client id, reporting it if it was recorded.
func (cs *clusterState) remove(id, f string) {
	cs.mu.Lock()
	fs := cs.filters[id]
	_, had := fs[f]
	delete(fs, f)
	if len(fs) == 0 {
		delete(cs.filters, id)
	}
	cs.mu.Unlock()
	if had {
		cs.report(f, false)
	}
}

// report tells the cluster of one plain (not shared) filter.
func (cs *clusterState) report(f string, subscribed bool) {
	if subscribed {
		cs.c.Subscribed(f, "")
	} else {
		cs.c.Unsubscribed(f, "")
	}
}

// clusterConnected and clusterDisconnected report a client id's
// connection on this node.
func (h *hook) clusterConnected(cl *mqtt.Client) {
	if cs := h.cluster; cs != nil && !cl.Net.Inline {
		cs.c.Connected(cl.ID)
	}
}

func (h *hook) clusterDisconnected(cl *mqtt.Client) {
	if cs := h.cluster; cs != nil && !cl.Net.Inline {
		cs.c.Disconnected(cl.ID)
	}
}

// OnWillSent forwards a will mochi published (sendLWT, and its delayed
// form) to the cluster; the hook provides it only with a cluster. A will
// has nobody to refuse: a failure is logged by forward.
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	_ = h.forward(&pk, cl.ID)
}
