package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// Shared subscriptions across nodes ($share/G/F).
//
// No node delivers a message to shared subscriptions from its own fan-out
// (the broker drops shared groups when it runs in a cluster). Instead,
// every node with local members of the group G on filter F holds two NATS
// queue subscriptions, on F's subject (filterSubject, QoS 1/2) and on its
// pz. twin (volatileSubject, QoS 0), both in the queue group
// queueName(G, F), counted by its local members: NATS hands each message
// published on the subject to one subscription of the queue group, so to
// one node, which delivers it to one of its members
// (sharedBroker.DeliverShared). The queue group's name holds F as well as
// G, so all its subscriptions have the same filter: a message the subject
// covers but F does not match (levels beyond the topic distribution depth)
// is dropped by whichever node NATS picked, as every other node would.
//
// The queue subscriptions must receive the messages this node publishes
// itself: a message published on node A may have its one delivery on A.
// So the connection must not be NoEcho (newShared refuses one that is).
//
// Order: NATS picks a member for each message on its own, so a
// publisher's messages to a group may go to members on different nodes
// and keep no order between them; the two subscriptions of a node each
// deliver on their own goroutine, so a QoS 0 and a QoS 1/2 message that
// land on one node keep no order between them either.

// sharedBroker is what shared asks of the local broker (*broker.Server).
type sharedBroker interface {
	// DeliverShared delivers m to one local member of the shared
	// subscription group (group, filter).
	DeliverShared(group, filter string, m broker.Message, publisher string) error
}

// sharedOptions are the dependencies of newShared.
type sharedOptions struct {
	// Conn carries the queue subscriptions; it must receive its own
	// publishes (not NoEcho).
	Conn *nats.Conn
	// Levels is the topic level distribution (cluster.topic_level_distribution).
	Levels int
	// Interest numbers the subscriptions made on Conn (interest.go); nil
	// numbers none.
	Interest *interest
	Broker   sharedBroker
	Log      *slog.Logger
}

// shared holds this node's queue subscriptions for shared subscription
// groups. Its methods are safe for concurrent use.
type shared struct {
	o       sharedOptions
	mu      sync.Mutex
	groups  map[sharedKey]*sharedGroup
	closed  bool
	dropped uint64 // messages the NATS client dropped on subscriptions since left
}

// sharedKey names a shared subscription group: $share/group/filter.
type sharedKey struct{ group, filter string }

// sharedGroup is this node's part of one group.
type sharedGroup struct {
	members int                  // local members (client ids)
	subs    []*nats.Subscription // pm. and pz.; nil if subscribing failed
	seq     uint64               // its number in Interest
}

// newShared checks its options; queue subscriptions come with members.
func newShared(o sharedOptions) (*shared, error) {
	switch {
	case o.Conn == nil:
		return nil, errors.New("shared subscriptions: no NATS connection")
	case o.Conn.Opts.NoEcho:
		return nil, errors.New("shared subscriptions: the NATS connection is NoEcho; its queue subscriptions must receive this node's own publishes")
	case o.Levels < 1:
		return nil, fmt.Errorf("shared subscriptions: topic level distribution %d, want 1 or more", o.Levels)
	case o.Broker == nil:
		return nil, errors.New("shared subscriptions: no broker")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &shared{o: o, groups: map[sharedKey]*sharedGroup{}}, nil
}

// queueName is the NATS queue group of the shared subscription group
// (group, filter): injective, as escapeToken never writes '.'.
func queueName(group, filter string) string {
	return "pms." + escapeToken(group) + "." + escapeToken(filter)
}

// subscribed counts a new local member of (group, filter); the first one
// makes this node join the group's queue subscriptions. It returns their
// number in Interest (0: none), for Node.Subscribed to wait until the
// other nodes know them. Called through Cluster.Subscribed with a group.
func (s *shared) subscribed(filter, group string) uint64 {
	k := sharedKey{group, filter}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	g := s.groups[k]
	if g == nil {
		g = &sharedGroup{}
		s.groups[k] = g
	}
	g.members++
	if g.subs != nil {
		return g.seq
	}
	if err := filterFits(filter, group, s.o.Levels, ""); err != nil {
		// A stored session's filter (new ones are refused by the broker,
		// CheckFilter): never sent, as NATS would close the connection.
		s.o.Log.Error("shared subscription not joined", "group", group, "filter", filter, "error", err)
		return 0
	}
	subj := filterSubject(filter, s.o.Levels)
	for _, sj := range []string{subj, volatileSubject(subj)} {
		sub, err := s.o.Conn.QueueSubscribe(sj, queueName(group, filter), func(msg *nats.Msg) {
			s.deliver(k, msg)
		})
		if err != nil {
			s.o.Log.Error("shared subscription not joined", "group", group, "filter", filter, "error", err)
			s.leave(g)
			return 0
		}
		g.subs = append(g.subs, sub)
	}
	g.seq = s.o.Interest.subscribed()
	return g.seq
}

// leave unsubscribes g's queue subscriptions, keeping their counts of
// dropped messages. s.mu is held.
func (s *shared) leave(g *sharedGroup) {
	for _, sub := range g.subs {
		if n, err := sub.Dropped(); err == nil {
			s.dropped += uint64(n)
		}
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			s.o.Log.Warn("shared subscription not left", "subject", sub.Subject, "queue", sub.Queue, "error", err)
		}
	}
	g.subs = nil
}

// unsubscribed counts a local member of (group, filter) gone; at the last
// one this node leaves the queue subscription. Called through
// Cluster.Unsubscribed with a group.
func (s *shared) unsubscribed(filter, group string) {
	k := sharedKey{group, filter}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[k]
	if g == nil {
		return
	}
	g.members--
	if g.members > 0 {
		return
	}
	delete(s.groups, k)
	s.leave(g)
}

// subscriptions returns the number of groups whose queue subscriptions
// this node holds.
func (s *shared) subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.groups {
		if g.subs != nil {
			n++
		}
	}
	return n
}

// Dropped is how many messages the NATS client dropped on this node's
// queue subscriptions because their deliveries did not keep up (its
// pending limits): messages NATS gave no other node, which the catch-up
// brings back.
func (s *shared) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	for _, g := range s.groups {
		for _, sub := range g.subs {
			if d, err := sub.Dropped(); err == nil {
				n += uint64(d)
			}
		}
	}
	return n
}

// joined returns the groups whose queue subscriptions this node holds.
func (s *shared) joined() []sharedKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sharedKey
	for k, g := range s.groups {
		if g.subs != nil {
			out = append(out, k)
		}
	}
	return out
}

// Close leaves every queue subscription.
func (s *shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for k, g := range s.groups {
		for _, sub := range g.subs {
			_ = sub.Unsubscribe()
		}
		delete(s.groups, k)
	}
}

// deliver hands one message NATS gave this node's queue subscription of k
// to a local member. Called on the subscription's goroutine, so in order.
func (s *shared) deliver(k sharedKey, msg *nats.Msg) {
	m, publisher, err := decode(msg)
	if err != nil {
		s.o.Log.Warn("shared message not decoded", "group", k.group, "filter", k.filter, "subject", msg.Subject, "error", err)
		return
	}
	if _, err := s.deliverTo(k, m, publisher); err != nil {
		s.o.Log.Warn("shared message not delivered", "group", k.group, "filter", k.filter, "topic", m.Topic, "error", err)
	}
}

// deliverTo hands m to a local member of k if it matches k's filter; it
// reports whether it matched, and the broker's error.
func (s *shared) deliverTo(k sharedKey, m broker.Message, publisher string) (bool, error) {
	if !topic.Match(k.filter, m.Topic) {
		return false, nil // the subject covers more than the filter
	}
	return true, s.o.Broker.DeliverShared(k.group, k.filter, m, publisher)
}
