package broker

import (
	"fmt"
	"math/rand/v2"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// Shared subscriptions across a cluster ($share/G/F, MQTT 5 4.8.2).
//
// With a Cluster, each message goes to one member of a group cluster-wide:
// no node delivers to shared subscriptions from its own fan-out
// (dropShared, from OnSelectSubscribers), and every node with local
// members of (G, F) holds a NATS queue subscription for the pair
// (cluster/shared.go), so that NATS hands each message to one of those
// nodes, which calls DeliverShared. The broker tells the cluster which
// pairs it has members of through Cluster.Subscribed and Unsubscribed with
// the group, counted per client id (clusterShared).

// clusterShared holds, per client id, the shared filters ("$share/G/F")
// the broker has reported to the Cluster as subscribed, so that each
// (client id, filter) is reported once and withdrawn once, whichever way
// the subscription goes (UNSUBSCRIBE, a clean start taking the session
// over, the end or expiry of the session, its removal).
type clusterShared struct {
	mu   sync.Mutex
	subs map[string]map[string]struct{} // client id -> shared filters reported
}

// syncShared reports to the Cluster the change in client id's shared
// subscriptions since its last call: mochi's client of id holds the truth
// (none when id has no session in mochi's client map). Called wherever a
// session's subscriptions may change (OnSubscribed, OnUnsubscribed,
// OnSessionEstablished, removeSession, Start); it does nothing
// without a Cluster. The reports are made under the lock, so that two
// calls for one id cannot reorder them.
func (h *hook) syncShared(id string) {
	if h.cluster == nil {
		return
	}
	c := h.cluster.c
	// The current set is read under the lock too: read before it, two
	// calls for one id could compute their sets in one order and report
	// them in the other, leaving a queue subscription no member holds.
	cs := &h.shared
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cur := map[string]struct{}{}
	if cl, ok := h.mochi.Clients.Get(id); ok && !cl.Net.Inline {
		for f := range cl.State.Subscriptions.GetAll() {
			if _, _, shared := topic.SplitShared(f); shared {
				cur[f] = struct{}{}
			}
		}
	}
	had := cs.subs[id]
	for f := range had {
		if _, ok := cur[f]; !ok {
			g, inner, _ := topic.SplitShared(f)
			c.Unsubscribed(inner, g)
		}
	}
	for f := range cur {
		if _, ok := had[f]; !ok {
			g, inner, _ := topic.SplitShared(f)
			c.Subscribed(inner, g)
		}
	}
	if len(cur) == 0 {
		delete(cs.subs, id)
		return
	}
	if cs.subs == nil {
		cs.subs = map[string]map[string]struct{}{}
	}
	cs.subs[id] = cur
}

// reportRestoredShared reports to the Cluster, if any, the shared
// subscriptions of every session mochi holds: at Start, those New
// restored. Called by Start before the listeners open.
func (s *Server) reportRestoredShared() {
	if s.hook.cluster == nil {
		return
	}
	for id := range s.mochi.Clients.GetAll() {
		s.hook.syncShared(id)
	}
}

// dropShared empties the shared groups of a fan-out when the broker runs
// in a cluster: their members are served by DeliverShared. The non-shared
// subscribers are kept. Called from OnSelectSubscribers.
func (h *hook) dropShared(subs *mqtt.Subscribers) {
	clear(subs.Shared)
	subs.SharedSelected = map[string]packets.Subscription{}
}

// DeliverShared delivers m, which the cluster routed to this node for the
// shared subscription group of group and filter (the filter without its
// "$share/<group>/" prefix), to one local member of the group: one chosen
// at random among the connected members, or among all of them (offline
// persistent sessions queue it) when none is connected. The copy gets the
// member's subscription QoS and identifier and the checks of any delivery
// (deliverTo, which PublishTo shares). publisher is the client id of the
// message's publisher (its Origin). Called by the cluster on its NATS
// subscription's goroutine.
//
// Errors: ErrInvalidArgument for a message MQTT could not carry;
// ErrNotSubscribed when m's topic does not match filter or the group has
// no member on this node (the cluster stops its queue subscription when
// the last member leaves, so this is a race with that leave); the error
// of the write to the member's connection.
func (s *Server) DeliverShared(group, filter string, m Message, publisher string) error {
	if err := checkMessage(&m); err != nil {
		return fmt.Errorf("deliver shared %q to group %q: %w", m.Topic, group, err)
	}
	if m.Retain {
		m.Retain = false // a forwarded live message: retained only in the store, [MQTT-3.3.1-12]
	}
	if !topic.Match(filter, m.Topic) {
		return fmt.Errorf("deliver shared %q to group %q: %w: filter %q does not match", m.Topic, group, ErrNotSubscribed, filter)
	}
	full := "$share/" + group + "/" + filter
	members := s.mochi.Topics.Subscribers(m.Topic).Shared[full]
	cl, sub, ok := s.pickMember(members)
	if !ok {
		return fmt.Errorf("deliver shared %q to group %q filter %q: %w: no member on this node", m.Topic, group, filter, ErrNotSubscribed)
	}
	if err := s.deliverTo(cl, sub, m, publisher); err != nil {
		return fmt.Errorf("deliver shared %q to group %q: client %q: %w", m.Topic, group, cl.ID, err)
	}
	return nil
}

// pickMember chooses the member of a shared group DeliverShared sends a
// message to: uniformly at random among the connected members, else among
// all members with a session.
func (s *Server) pickMember(members map[string]packets.Subscription) (*mqtt.Client, packets.Subscription, bool) {
	var online, offline []*mqtt.Client
	for id := range members {
		cl, ok := s.sessionClient(id)
		if !ok {
			continue
		}
		if cl.Closed() {
			offline = append(offline, cl)
		} else {
			online = append(online, cl)
		}
	}
	pool := online
	if len(pool) == 0 {
		pool = offline
	}
	if len(pool) == 0 {
		return nil, packets.Subscription{}, false
	}
	cl := pool[rand.IntN(len(pool))]
	return cl, members[cl.ID], true
}
