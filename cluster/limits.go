package cluster

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// Length limits of what the cluster sends to NATS (see docs/cluster.md,
// "Limits"). The NATS server closes a connection whose protocol line (SUB
// subject queue sid, HPUB subject reply sizes, MSG subject sid reply
// size) exceeds max_control_line (4 KiB, the embedded server's default):
// one long filter, shared group or client id would cut the node off from
// the cluster. So every subject, queue group name and KV key is checked
// with fits before it goes to NATS, and what does not fit is refused to
// the client (SUBACK 0x8F, CONNACK 0x85, PUBACK 0x80) rather than sent.

// maxSubject is the most bytes the subject and queue group name of one
// protocol line may hold together: max_control_line (4,096) less room for
// the verb, a reply subject (a JetStream ack subject is about 150 bytes),
// the sid and the sizes.
const maxSubject = 3500

// ErrTooLong is wrapped by the errors of fits: a subject, queue group or
// key too long for the cluster. It is broker.ErrClusterTopicTooLong, so
// that the broker names the cause when it refuses a message.
var ErrTooLong = broker.ErrClusterTopicTooLong

// fits checks that parts, the subject and queue group (or key) of one
// NATS protocol line, hold at most maxSubject bytes together; what names
// the kind of thing they come from, for the error, which does not quote
// the thing itself (a reason string sent back to a client must stay
// short; the caller logs it).
func fits(what string, parts ...string) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > maxSubject {
		return fmt.Errorf("%s: %w: %d bytes in NATS, the cluster's limit is %d", what, ErrTooLong, n, maxSubject)
	}
	return nil
}

// filterFits checks that a local filter (group "") or shared filter
// (group G of $share/G/filter) can be subscribed in NATS at levels
// (topic_level_distribution), nodeQueue being the router's queue group:
// both subjects, the pm. one and its pz. twin (QoS 0), each with the queue
// group, so the longer counts.
func filterFits(filter, group string, levels int, nodeQueue string) error {
	subj := filterSubject(filter, levels)
	what, queue := "filter", nodeQueue
	if group != "" {
		what, queue = "shared subscription", queueName(group, filter)
	}
	for _, sj := range []string{subj, volatileSubject(subj)} {
		if err := fits(what, sj, queue); err != nil {
			return err
		}
	}
	return nil
}

// nodeQueue is the NATS queue group of all of node's plain subscriptions.
func nodeQueue(node string) string { return "propolis-node-" + node }

// CheckFilter implements broker.Cluster: an error wrapping ErrTooLong
// for a filter (group "") or shared filter whose NATS subject and queue
// group do not fit a protocol line.
func (n *Node) CheckFilter(filter, group string) error {
	return filterFits(filter, group, n.cfg.TopicLevelDistribution, nodeQueue(n.cfg.Name))
}

// CheckClientID implements broker.Cluster: an error wrapping ErrTooLong
// for a client id whose key in ClientsBucket does not fit a protocol line.
func (n *Node) CheckClientID(id string) error {
	_, err := clientKey(id)
	return err
}

// connLost logs loudly that the node's NATS connection dropped (it
// reconnects by itself).
func (n *Node) connLost(c *nats.Conn, err error) {
	select {
	case <-n.stop: // the node is closing: the server went first
		return
	default:
	}
	n.log.Error("cluster: the node's NATS connection dropped; reconnecting", "error", err)
}

// connClosed logs loudly that the node's NATS connection closed for good
// and marks the node unhealthy (unless the node is closing): routing,
// take-over and shared subscriptions stop.
func (n *Node) connClosed(c *nats.Conn) {
	select {
	case <-n.stop:
		return
	default:
	}
	n.log.Error("cluster: the node's NATS connection closed; this node no longer routes messages", "error", c.LastError())
	n.setProblem(fmt.Sprintf("NATS connection closed: %v", c.LastError()))
}

// natsMaxPayload is the embedded server's max_payload for a broker whose
// largest packet is maxPacket bytes (0: the configuration's default):
// room for the packet and its routing headers, so that a message the
// broker accepts is never refused for its size by NATS; at most NATS's
// own limit, 64 MiB (the configuration refuses a larger
// mqtt.max_packet_size with a cluster section).
func natsMaxPayload(maxPacket int64) int32 {
	if maxPacket <= 0 {
		maxPacket = int64(config.Default().MQTT.MaxPacketSize)
	}
	return int32(min(maxPacket+config.ClusterHeaderRoom, config.MaxClusterPacketSize+config.ClusterHeaderRoom))
}
