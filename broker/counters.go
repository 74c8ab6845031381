package broker

import (
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Counters are running totals since New, for metrics: the metrics package
// reads them at each scrape (Server.Counters). Counts are of events the
// hook saw; see stats.go for where each is counted.
type Counters struct {
	// SlowConsumerDisconnects counts clients disconnected because a socket
	// write (up to 64 KiB) took longer than mqtt.write_timeout or their
	// outbound buffer would exceed mqtt.max_outbound_buffer.
	SlowConsumerDisconnects int64
	// MessagesDropped counts deliveries dropped because a client's queue of
	// pending writes was full (QoS 0 is lost; QoS 1/2 leaves the message
	// out of that client's session) or its in-flight quota
	// (mqtt.max_queued_messages) was reached: mochi's own counts, the sum
	// of Dropped.WritesPending and mochi's part of Dropped.QueueFull.
	MessagesDropped int64

	// ConnectionsOpened counts the network connections each listener
	// accepted, by listener name, whatever became of them.
	ConnectionsOpened map[string]uint64
	// ConnectsAccepted counts CONNECTs answered with a success CONNACK.
	ConnectsAccepted uint64
	// ConnectsRefused counts CONNECTs answered with a refusing CONNACK, by
	// the reason code the client got (MQTT 5 codes, 0x80 and above; 3.1.1
	// codes 0x01-0x05 for 3.1.1 clients). Codes never sent are absent.
	ConnectsRefused map[byte]uint64
	// Disconnects counts the ends of connections that got a success
	// CONNACK, by kind.
	Disconnects DisconnectCounts
	// KeepaliveTimeouts counts connections closed because the client sent
	// nothing for 1.5 times its keepalive (also in Disconnects.Lost).
	KeepaliveTimeouts uint64
	// Received counts the PUBLISH packets read from clients, by QoS (index
	// 0-2), with their size on the wire (fixed header included), before
	// authorization: refused ones count too. Zero in a build with the
	// propolis_nometrics tag.
	Received [3]MessageCount
	// Sent counts the PUBLISH packets written to clients' connections, by
	// QoS, with their encoded size; a delivery held back by a client's
	// Receive Maximum counts when mochi writes it, a prevented one not at
	// all. Zero with propolis_nometrics.
	Sent [3]MessageCount
	// Dropped counts messages not delivered, by reason.
	Dropped DropCounts
	// InflightWindowFull counts QoS 1/2 deliveries held back because the
	// client's in-flight window (its Receive Maximum, or the window an
	// extension set) was full, or others were already held.
	InflightWindowFull uint64
	// StoreWrites and StoreFsyncs are the latencies of the store's writes
	// and of its write-ahead log's fsyncs (store.Timings). Empty when the
	// broker runs on an Options.Persistence of its own.
	StoreWrites, StoreFsyncs LatencyHistogram
}

// MessageCount is a number of PUBLISH packets and their bytes.
type MessageCount struct {
	Messages, Bytes uint64
}

// DisconnectCounts counts the ends of connections by kind (the kinds of
// the disconnect event, EventDisconnect, with take-overs apart).
type DisconnectCounts struct {
	// Client: the client sent DISCONNECT.
	Client uint64
	// Lost: the connection ended without DISCONNECT (network error, end
	// of stream, keepalive timeout): the "ungraceful disconnect".
	Lost uint64
	// Server: the broker ended it (a malformed packet or another protocol
	// error, which mochi answers with a reason code; a publish or
	// subscribe refused to a client that is then disconnected; a slow
	// consumer; shutdown). A refused CONNECT is not a disconnect: it
	// counts in ConnectsRefused only.
	Server uint64
	// TakenOver: a new connection with the same client id took the
	// session over.
	TakenOver uint64
}

// DropCounts counts messages the broker did not deliver, by reason. A
// message refused at the publisher counts once; a delivery refused for
// one subscriber counts once per subscriber.
type DropCounts struct {
	// QueueFull: a QoS 1/2 delivery refused because the subscriber's
	// session already held mqtt.max_queued_messages (or its own MaxQueued
	// setting) in flight or queued, or mochi ran out of packet ids.
	QueueFull uint64
	// WritesPending: a delivery dropped because the subscriber's queue of
	// 1,024 pending writes was full (the client is then disconnected as a
	// slow consumer; a QoS 1/2 copy stays in the store, see README).
	WritesPending uint64
	// Expired: a QoS 1/2 message whose Message Expiry Interval ran out in
	// a session before it was sent.
	Expired uint64
	// TooLarge: a delivery above the Maximum Packet Size its client
	// announced (mochi does not send it; a QoS 1/2 one is discarded from
	// the session, once, see hook.dropTooLargeInflight), or a PUBLISH
	// above mqtt.max_packet_size from a client (which is disconnected).
	TooLarge uint64
	// NotAuthorized: a PUBLISH its authorizer refused, or a delivery of a
	// subscription revoked when its session resumed.
	NotAuthorized uint64
	// Prevented: a PUBLISH or a delivery an interceptor prevented.
	Prevented uint64
	// ClusterNotForwarded: a QoS 0 PUBLISH accepted on this node that the
	// cluster did not take (delivered here, not on the other nodes);
	// always 0 without a cluster.
	ClusterNotForwarded uint64
}

// Counters returns the running totals. Safe to call from any goroutine;
// it costs a few hundred atomic loads and two small maps.
func (s *Server) Counters() Counters {
	st := s.stats
	inflightDropped := uint64(atomic.LoadInt64(&s.mochi.Info.InflightDropped))
	writesDropped := uint64(atomic.LoadInt64(&s.mochi.Info.MessagesDropped))
	c := Counters{
		SlowConsumerDisconnects: s.slow.Load(),
		MessagesDropped:         int64(writesDropped + inflightDropped),
		ConnectionsOpened:       make(map[string]uint64, len(s.listeners)),
		ConnectsAccepted:        st.connectsAccepted.Load(),
		ConnectsRefused:         map[byte]uint64{},
		Disconnects: DisconnectCounts{
			Client:    st.disconnects[discClient].Load(),
			Lost:      st.disconnects[discLost].Load(),
			Server:    st.disconnects[discServer].Load(),
			TakenOver: st.disconnects[discTakenOver].Load(),
		},
		KeepaliveTimeouts: st.keepaliveTimeouts.Load(),
		Dropped: DropCounts{
			QueueFull:           st.dropped[dropQueueFull].Load() + inflightDropped,
			WritesPending:       writesDropped,
			Expired:             st.dropped[dropExpired].Load(),
			TooLarge:            st.dropped[dropTooLarge].Load(),
			NotAuthorized:       st.dropped[dropNotAuthorized].Load(),
			Prevented:           st.dropped[dropPrevented].Load(),
			ClusterNotForwarded: s.clusterDropped(),
		},
		InflightWindowFull: st.windowFull.Load(),
		StoreWrites:        st.storeWrite.snapshot(),
		StoreFsyncs:        st.storeFsync.snapshot(),
	}
	for _, l := range s.listeners {
		c.ConnectionsOpened[l.ID()] += l.opened.Load()
	}
	for code := range st.connectsRefused {
		if n := st.connectsRefused[code].Load(); n > 0 {
			c.ConnectsRefused[byte(code)] = n
		}
	}
	for q := range st.received {
		c.Received[q] = MessageCount{Messages: st.received[q].n.Load(), Bytes: st.received[q].bytes.Load()}
		c.Sent[q] = MessageCount{Messages: st.sent[q].n.Load(), Bytes: st.sent[q].bytes.Load()}
	}
	return c
}

// Levels are the broker's current gauges, read at the moment of the call.
type Levels struct {
	// ClientsConnected is the number of connections past their success
	// CONNACK and not yet ended (mochi's count).
	ClientsConnected int64
	// SessionsOnline and SessionsOffline count the sessions the broker
	// holds: with a live connection, and without one (persistent sessions
	// waiting for their client or their expiry, restored ones included).
	SessionsOnline, SessionsOffline int64
	// QueuedMessages is the number of QoS 1/2 messages the sessions hold:
	// queued for offline sessions, and sent but unacknowledged or held back
	// for online ones.
	QueuedMessages int64
	// Subscriptions is the number of subscriptions the sessions hold,
	// online and offline (a shared subscription counts once per member).
	Subscriptions int64
	// RetainedMessages is the number of retained messages, mochi's own
	// $SYS topics not counted.
	RetainedMessages int64
	// StoreBytes is the size of the store's files on disk (pebble's
	// tables, logs and manifest); StoreSized is false, and StoreBytes 0,
	// when the broker runs on an Options.Persistence without a
	// DiskUsage() uint64 method.
	StoreBytes uint64
	StoreSized bool
}

// diskUser is what Levels asks of a Persistence for its size on disk;
// *store.Store has it.
type diskUser interface {
	DiskUsage() uint64
}

// Levels returns the current gauges. Safe from any goroutine; it walks
// mochi's clients once (taking each session's in-flight lock briefly),
// counts the retained messages without copying them (retainedMessages),
// and reads pebble's metrics, so call it per scrape, not per message.
func (s *Server) Levels() Levels {
	l := Levels{
		ClientsConnected: atomic.LoadInt64(&s.mochi.Info.ClientsConnected),
	}
	l.RetainedMessages = retainedMessages(s.mochi.Topics)
	for _, cl := range s.mochi.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		if cl.Closed() {
			l.SessionsOffline++
		} else {
			l.SessionsOnline++
		}
		l.QueuedMessages += int64(cl.State.Inflight.Len())
		l.Subscriptions += int64(cl.State.Subscriptions.Len())
	}
	if d, ok := s.persist.(diskUser); ok {
		l.StoreBytes, l.StoreSized = d.DiskUsage(), true
	}
	return l
}

// StoreWriteLatency is a recent store write latency, a signal for the
// node's stress level: the longest store write (store.Timings.Write: one
// pebble write or batch commit, including the fsync wait of a durable
// write in sync mode) that ended in the current or the previous second of
// the clock (so over the last 1 to 2 s); 0 when there was none, or when
// the broker runs on an Options.Persistence of its own. It costs three
// atomic loads and a clock read; safe from any goroutine.
func (s *Server) StoreWriteLatency() time.Duration {
	return s.stats.recentWrite.get(time.Now().Unix())
}

// retainedMessages is the number of retained messages topics holds, its
// $SYS/ topics left out, without copying them: the size of mochi's map of
// retained messages (which holds exactly the topics with a retained
// message: an empty payload deletes, a replacement keeps one entry,
// restored ones are added the same way) minus the $SYS/ topics found by
// walking only that branch of the topic tree (a few dozen of mochi's own).
// The two reads are not one atomic step: while messages are retained or
// cleared the count can be off by those in flight, as any gauge.
func retainedMessages(topics *mqtt.TopicsIndex) int64 {
	n := int64(topics.Retained.Len())
	for _, pk := range topics.Messages(mqtt.SysPrefix + "/#") {
		if strings.HasPrefix(pk.TopicName, mqtt.SysPrefix+"/") {
			n--
		}
	}
	return max(n, 0)
}
