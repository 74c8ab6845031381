package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
)

// This file routes messages between nodes (see docs/cluster.md, "Message routing"):
// Forward publishes a message accepted on this node to its routing subject
// (QoS 0 as a core NATS message on a pz. subject no stream stores, QoS
// 1/2 on a pm. subject into stream PROPOLIS_MESSAGES, waiting for the
// stream's acknowledgement); the node subscribes to both subjects of its
// local filters and injects what other nodes published into its broker; retained messages are also kept in PROPOLIS_RETAINED
// for nodes that start later (replayRetained).

// Stream names and the headers of a routed message.
const (
	// MessagesStream holds QoS 1/2 messages (subjects pm.>).
	MessagesStream = "PROPOLIS_MESSAGES"
	// RetainedStream holds the last retained message of each topic
	// (subjects pr.>).
	RetainedStream = "PROPOLIS_RETAINED"

	headerOrigin    = "Pm-Origin"    // name of the node that accepted the message
	headerTopic     = "Pm-Topic"     // the full MQTT topic, escaped (escapeHeader)
	headerPublisher = "Pm-Publisher" // the publishing client id, escaped; absent for the broker's own
)

// Timings and bounds of the router.
const (
	// publishTimeout bounds the wait for a JetStream acknowledgement by
	// default: a stream without quorum answers nothing.
	publishTimeout = 5 * time.Second
	// setupTimeout bounds the creation of the streams.
	setupTimeout = 30 * time.Second
	// inboxSize is how many received messages may wait for the broker;
	// more are dropped by the NATS client (never blocking its reader) and
	// counted (Dropped).
	inboxSize = 65536
	// dropLogInterval is how often a rise of the dropped count is logged.
	dropLogInterval = 10 * time.Second
)

// remoteBroker is what the router needs of the local broker
// (*broker.Server implements it).
type remoteBroker interface {
	// InjectRemote delivers a message another node accepted.
	InjectRemote(m broker.Message, publisher string) error
	// PutRetained and DeleteRetained change the local retained store.
	PutRetained(m broker.Message) error
	DeleteRetained(topic string) error
}

// routerOptions are the explicit dependencies of a router.
type routerOptions struct {
	// Conn is the node's one publishing connection: the order of its
	// publishes is the order other nodes receive them in. The router skips
	// its own messages by their Pm-Origin, so NoEcho may be on or off.
	Conn *nats.Conn
	// JS is JetStream on Conn.
	JS jetstream.JetStream
	// Node is this node's name (Pm-Origin).
	Node string
	// Replicas is the replication factor in force for the streams.
	Replicas int
	// Levels is cluster.topic_level_distribution (1..8).
	Levels int
	// MaxAge and MaxBytes bound PROPOLIS_MESSAGES (limits retention,
	// oldest discarded).
	MaxAge   time.Duration
	MaxBytes int64
	// Broker receives other nodes' messages; it may be nil and set later
	// with useBroker (subscriptions wait for it).
	Broker remoteBroker
	// Log receives the router's warnings.
	Log *slog.Logger
	// StoreQoS0 reports whether QoS 0 messages must still go on pm.
	// subjects (stored, as before protocol 3): while a node of protocol 2
	// or older is alive, which subscribes to pm. subjects only. nil: never.
	StoreQoS0 func() bool
	// Interest numbers the subscriptions made on Conn (interest.go); nil
	// numbers none (a node without a registry: tests).
	Interest *interest
	// InboxSize replaces inboxSize when positive (tests).
	InboxSize int
	// PublishTimeout bounds the wait for a JetStream acknowledgement;
	// 0 means publishTimeout. Keep it below clients' own timeouts (paho's
	// default is 10 s).
	PublishTimeout time.Duration
}

// router implements the message side of the cluster. Safe for concurrent
// use.
type router struct {
	o        routerOptions
	log      *slog.Logger
	queue    string           // the NATS queue group of all this node's subscriptions
	retained jetstream.Stream // RetainedStream, as ensureStream answered at start

	mu     sync.Mutex
	broker remoteBroker
	subs   map[string]*routeSub // by subscription subject
	// follow applies the retained messages stored after the replay, in
	// stream order (followRetained); nil until the replay ended.
	follow jetstream.ConsumeContext
	closed bool

	inbox    chan *nats.Msg
	done     chan struct{}
	wg       sync.WaitGroup
	dropped  atomic.Uint64 // messages of removed subscriptions the client dropped
	rejected atomic.Uint64 // received messages that could not be decoded or injected
}

// routeSub is one subscription subject and how many local filters need it:
// the subscription of the pm. subject (QoS 1/2) and of its pz. twin (QoS
// 0), both in the node's queue group and into the one inbox.
type routeSub struct {
	refs int
	subs []*nats.Subscription // pm. and pz.; nil until the broker is known
	seq  uint64               // its number in Interest, 0 until subscribed
}

// newRouter creates or updates the streams and returns a router; it
// starts receiving once it has a broker (Options.Broker or useBroker).
func newRouter(o routerOptions) (*router, error) {
	if o.Conn == nil || o.JS == nil {
		return nil, errors.New("cluster router: no NATS connection")
	}
	if o.Node == "" {
		return nil, errors.New("cluster router: no node name")
	}
	if o.Levels < 1 || o.Levels > 8 {
		return nil, fmt.Errorf("cluster router: topic_level_distribution %d, want 1..8", o.Levels)
	}
	o.Replicas = max(o.Replicas, 1)
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = publishTimeout
	}
	if o.InboxSize <= 0 {
		o.InboxSize = inboxSize
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := ensureStream(ctx, o.JS, messagesConfig(o)); err != nil {
		return nil, fmt.Errorf("cluster router: %w", err)
	}
	retained, err := ensureStream(ctx, o.JS, retainedConfig(o))
	if err != nil {
		return nil, fmt.Errorf("cluster router: %w", err)
	}
	r := &router{
		o:        o,
		retained: retained,
		log:      o.Log,
		queue:    nodeQueue(o.Node),
		subs:     make(map[string]*routeSub),
		inbox:    make(chan *nats.Msg, o.InboxSize),
		done:     make(chan struct{}),
	}
	r.wg.Add(2)
	go r.receive()
	go r.watchDrops()
	if o.Broker != nil {
		if err := r.useBroker(o.Broker); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// messagesConfig is PROPOLIS_MESSAGES: every routing subject, limits
// retention by age and size, the oldest discarded.
func messagesConfig(o routerOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        MessagesStream,
		Description: "Propolis: QoS 1/2 messages routed between nodes",
		Subjects:    []string{messagePrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		MaxBytes:    unlimited(o.MaxBytes),
		Replicas:    o.Replicas,
		Storage:     jetstream.FileStorage,
	}
}

// unlimited is n, or -1 (JetStream's "no limit") for n <= 0.
func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// retainedConfig is PROPOLIS_RETAINED: one message per topic, the last,
// kept until replaced (a deletion stays as an empty tombstone).
func retainedConfig(o routerOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              RetainedStream,
		Description:       "Propolis: the last retained message of each topic",
		Subjects:          []string{retainedPrefix + ".>"},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		Replicas:          o.Replicas,
		Storage:           jetstream.FileStorage,
	}
}

// forward publishes m, accepted on this node from client publisher, to
// the other nodes: QoS 0 as a core message on its pz. subject, which no
// stream stores (on its pm. subject while StoreQoS0 says an older node is
// alive); QoS 1/2 on its pm. subject into PROPOLIS_MESSAGES, returning once the stream acknowledged it (stored
// with the replication factor in force). A retained message is also
// written to PROPOLIS_RETAINED first, acknowledged likewise.
func (r *router) forward(m *broker.Message, publisher string) error {
	subject := routingSubject(m.Topic, r.o.Levels)
	if err := fits("topic", subject); err != nil {
		return err
	}
	msg := encode(m, publisher, r.o.Node, subject)
	if m.Retain {
		rm := *msg
		rm.Subject = retainedSubject(m.Topic)
		if err := fits("retained topic", rm.Subject); err != nil {
			return err
		}
		if err := r.publishStored(&rm); err != nil {
			return fmt.Errorf("store retained message of %q in %s: %w", m.Topic, RetainedStream, err)
		}
	}
	if m.QoS == 0 {
		if r.o.StoreQoS0 == nil || !r.o.StoreQoS0() {
			msg.Subject = volatileSubject(subject)
		}
		if err := r.o.Conn.PublishMsg(msg); err != nil {
			return fmt.Errorf("route message on %q: %w", m.Topic, r.sizeError(err))
		}
		return nil
	}
	if err := r.publishStored(msg); err != nil {
		return fmt.Errorf("store message on %q in %s: %w", m.Topic, MessagesStream, err)
	}
	return nil
}

// publishStored publishes msg into JetStream and waits for its
// acknowledgement (PublishTimeout).
//
// A stream whose leader changes (a node stopping) answers nothing for a
// moment: the wait is split in two attempts of half PublishTimeout each.
// The second may store the message a second time when the first reached
// the stream after all; other nodes then deliver it twice (QoS 1 is at
// least once; see docs/cluster.md for QoS 2). The messages carry no id
// for the stream to drop such a copy: its memory of ids would grow with
// the message rate.
func (r *router) publishStored(msg *nats.Msg) error {
	var err error
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), r.o.PublishTimeout/2)
		_, err = r.o.JS.PublishMsg(ctx, msg)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			break
		}
	}
	return r.sizeError(err)
}

// sizeError marks NATS's refusal of a message larger than its
// max_payload as broker.ErrClusterTooLarge, naming the limit.
func (r *router) sizeError(err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: more than the cluster's %d bytes (NATS max_payload)", broker.ErrClusterTooLarge, r.o.Conn.MaxPayload())
	}
	return err
}

// useBroker sets the broker that receives other nodes' messages and
// subscribes to the subjects of the filters reported so far.
func (r *router) useBroker(b remoteBroker) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("cluster router closed")
	}
	r.broker = b
	for subj, s := range r.subs {
		if s.subs != nil {
			continue
		}
		if err := fits("subject "+subj, subj, r.queue); err != nil {
			r.log.Error("cluster: subscription not made; messages of other nodes on it will not arrive", "error", err)
			continue
		}
		if err := r.subscribe(subj, s); err != nil {
			return fmt.Errorf("cluster router: %w", err)
		}
	}
	return nil
}

// subscribe makes s's two subscriptions, subj (pm.) and its pz. twin, in
// the node's queue group and into the one inbox: a publisher's QoS 0 and
// QoS 1/2 messages arrive in the order its node sent them (docs/cluster.md,
// "Ordering"). r.mu is held. On error neither subscription is left.
func (r *router) subscribe(subj string, s *routeSub) error {
	var subs []*nats.Subscription
	for _, sj := range []string{subj, volatileSubject(subj)} {
		sub, err := r.o.Conn.ChanQueueSubscribe(sj, r.queue, r.inbox)
		if err != nil {
			for _, made := range subs {
				r.removeSub(made)
			}
			return fmt.Errorf("subscribe to %s: %w", sj, err)
		}
		subs = append(subs, sub)
	}
	s.subs = subs
	s.seq = r.o.Interest.subscribed()
	return nil
}

// subscribed counts one more local filter (not a shared one) needing the
// subject of filter, subscribing when it is the first. It returns the
// subject's number in Interest (0: none, or not subscribed), for
// Node.Subscribed to wait until the other nodes know the subscription;
// it does not wait itself (a session claim reads what it misses from the
// stream instead).
func (r *router) subscribed(filter string) uint64 {
	subj := filterSubject(filter, r.o.Levels)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.subs[subj]
	if s == nil {
		s = &routeSub{}
		r.subs[subj] = s
	}
	s.refs++
	if s.subs != nil || r.broker == nil || r.closed {
		return s.seq
	}
	if err := filterFits(filter, "", r.o.Levels, r.queue); err != nil {
		// A stored session's filter (new ones are refused by the broker,
		// CheckFilter): never sent, as NATS would close the connection.
		r.log.Error("cluster: subscription not made; messages of other nodes on it will not arrive", "filter", filter, "error", err)
		return 0
	}
	if err := r.subscribe(subj, s); err != nil {
		// The filter stays counted: useBroker or the next subscriber of
		// the subject cannot retry without a subscription either, so say
		// it loudly.
		r.log.Error("cluster: subscription not made; messages of other nodes on it will not arrive",
			"filter", filter, "error", err)
		return 0
	}
	return s.seq
}

// unsubscribed counts one local filter less on its subject, unsubscribing
// when it was the last.
func (r *router) unsubscribed(filter string) {
	subj := filterSubject(filter, r.o.Levels)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.subs[subj]
	if s == nil {
		return
	}
	if s.refs--; s.refs > 0 {
		return
	}
	delete(r.subs, subj)
	for _, sub := range s.subs {
		r.removeSub(sub)
	}
}

// removeSub unsubscribes sub, keeping its count of dropped messages.
func (r *router) removeSub(sub *nats.Subscription) {
	if n, err := sub.Dropped(); err == nil {
		r.dropped.Add(uint64(n))
	}
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		r.log.Warn("cluster: unsubscribe", "subject", sub.Subject, "error", err)
	}
}

// subjects lists the subscription subjects in use (for tests and status).
func (r *router) subjects() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.subs))
	for subj, s := range r.subs {
		out[subj] = s.refs
	}
	return out
}

// Dropped is how many messages of other nodes this node dropped because
// its broker did not take them fast enough (the inbox was full).
func (r *router) Dropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.dropped.Load()
	for _, s := range r.subs {
		for _, sub := range s.subs {
			if d, err := sub.Dropped(); err == nil {
				n += uint64(d)
			}
		}
	}
	return n
}

// receive hands the messages of other nodes to the broker, in the order
// the connection received them: every subscription shares one inbox and
// this one goroutine. A message matching several of this node's subjects
// comes once (one queue group per node).
func (r *router) receive() {
	defer r.wg.Done()
	for {
		select {
		case <-r.done:
			return
		case msg := <-r.inbox:
			r.deliver(msg)
		}
	}
}

// currentBroker returns the broker receiving other nodes' messages, nil
// before useBroker (catchup.go injects through it too).
func (r *router) currentBroker() remoteBroker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.broker
}

// deliver injects one received message unless this node published it.
func (r *router) deliver(msg *nats.Msg) {
	if msg.Header.Get(headerOrigin) == r.o.Node {
		return
	}
	m, publisher, err := decode(msg)
	if err == nil {
		r.mu.Lock()
		b := r.broker
		r.mu.Unlock()
		err = b.InjectRemote(m, publisher)
	}
	if err != nil {
		r.reject(msg.Subject, msg.Header.Get(headerOrigin), err)
	}
}

// reject counts a message of another node that could not be decoded or
// applied, and logs the first and every thousandth.
func (r *router) reject(subject, origin string, err error) {
	n := r.rejected.Add(1)
	if n == 1 || n%1000 == 0 {
		r.log.Warn("cluster: message from another node not delivered", "subject", subject,
			"origin", origin, "error", err, "not_delivered_total", n)
	}
}

// watchDrops logs, at most every dropLogInterval, that messages were
// dropped since the last line.
func (r *router) watchDrops() {
	defer r.wg.Done()
	t := time.NewTicker(dropLogInterval)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
			if n := r.Dropped(); n > last {
				r.log.Warn("cluster: this node is too slow for the messages of other nodes; some were dropped",
					"dropped", n-last, "dropped_total", n, "inbox", cap(r.inbox))
				last = n
			}
		}
	}
}

// replayRetained puts the last retained message of every topic in
// PROPOLIS_RETAINED into the local retained store (a tombstone removes
// the topic's retained message), then follows the stream from the
// sequence after the last one it had (followRetained): the retained
// store has one writer, the stream, in stream order, so a replayed
// message never overwrites a newer one. The node calls it before its
// broker accepts clients.
func (r *router) replayRetained(ctx context.Context) (int, error) {
	r.mu.Lock()
	b := r.broker
	r.mu.Unlock()
	if b == nil {
		return 0, errors.New("replay retained messages: no broker")
	}
	st := r.retained
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("replay retained messages: %w", err)
	}
	last := info.State.LastSeq
	n := 0
	if info.State.Msgs > 0 {
		c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{retainedPrefix + ".>"},
			DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		})
		if err != nil {
			return 0, fmt.Errorf("replay retained messages: %w", err)
		}
		for {
			msg, err := c.Next(jetstream.FetchContext(ctx))
			if err != nil {
				return n, fmt.Errorf("replay retained messages (%d done): %w", n, err)
			}
			meta, err := r.applyStored(b, msg)
			if err != nil {
				return n, fmt.Errorf("replay retained messages: %w", err)
			}
			n++
			last = max(last, meta.Sequence.Stream)
			if meta.NumPending == 0 {
				break
			}
		}
	}
	if err := r.followRetained(ctx, st, b, last+1); err != nil {
		return n, fmt.Errorf("replay retained messages: %w", err)
	}
	return n, nil
}

// followRetained applies, on the consumer's goroutine, every retained
// message stored from sequence seq on, whatever this node's
// subscriptions: a client subscribing here later must find it.
func (r *router) followRetained(ctx context.Context, st jetstream.Stream, b remoteBroker, seq uint64) error {
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{retainedPrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    seq,
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("cluster router closed")
	}
	cc, err := c.Consume(func(msg jetstream.Msg) {
		if _, err := r.applyStored(b, msg); err != nil {
			r.reject(msg.Subject(), msg.Headers().Get(headerOrigin), err)
		}
	})
	if err != nil {
		return err
	}
	r.follow = cc
	return nil
}

// applyStored applies one message of PROPOLIS_RETAINED to b's retained
// store, with the expiry it has left (remainingExpiry). A message this
// node published is applied too (its store has it already; the same
// message again changes nothing). One it cannot decode (a body version a
// newer node wrote, in a rolling upgrade) is counted and skipped, as one
// the broker refuses as invalid; the error is any other failure to
// store, or the message's metadata missing.
func (r *router) applyStored(b remoteBroker, msg jetstream.Msg) (*jetstream.MsgMetadata, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return nil, err
	}
	nm := &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()}
	m, _, err := decode(nm)
	switch {
	case err != nil:
		r.reject(msg.Subject(), nm.Header.Get(headerOrigin), fmt.Errorf("retained message not applied: %w", err))
		return meta, nil
	case !remainingExpiry(&m, meta.Timestamp, time.Now()):
		err = b.DeleteRetained(m.Topic) // expired meanwhile: no retained message
	default:
		err = applyRetained(b, m)
	}
	if err != nil && !errors.Is(err, broker.ErrInvalidArgument) {
		return meta, fmt.Errorf("retained message of %q: %w", m.Topic, err)
	}
	return meta, nil
}

// remainingExpiry lowers m's message expiry interval by the time since
// stored, when the stream stored it, and reports whether m is still
// alive at now (a message without expiry always is). A retained message
// read back from the stream keeps the expiry it had left, not a fresh one.
func remainingExpiry(m *broker.Message, stored, now time.Time) bool {
	if m.MessageExpiry == 0 || len(m.Payload) == 0 {
		return true
	}
	age := now.Sub(stored)
	if age <= 0 {
		return true
	}
	left := int64(m.MessageExpiry) - int64(age/time.Second)
	if left <= 0 {
		return false
	}
	m.MessageExpiry = uint32(left)
	return true
}

// applyRetained puts m into b's retained store, or removes the topic's
// retained message when m's payload is empty (a deletion).
func applyRetained(b remoteBroker, m broker.Message) error {
	if len(m.Payload) == 0 {
		return b.DeleteRetained(m.Topic)
	}
	return b.PutRetained(m)
}

// close stops receiving and unsubscribes; it does not close Conn.
func (r *router) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	for subj, s := range r.subs {
		for _, sub := range s.subs {
			r.removeSub(sub)
		}
		delete(r.subs, subj)
	}
	if r.follow != nil {
		r.follow.Stop()
		r.follow = nil
	}
	r.mu.Unlock()
	close(r.done)
	r.wg.Wait()
}

// --- encoding ---

// bodyVersion is the first byte of a routed message's body.
const bodyVersion = 1

// encode is the NATS message of m on subject: headers Pm-Origin, Pm-Topic
// and Pm-Publisher, and the body (version 1):
//
//	version        1 byte, 1
//	flags          1 byte: bits 0-1 QoS, bit 2 retain
//	payload format 1 byte
//	message expiry uvarint, seconds (0: none)
//	content type   uvarint length, bytes
//	response topic uvarint length, bytes
//	correlation    uvarint length, bytes
//	user props     uvarint count, then per property key and value, each
//	               uvarint length, bytes
//	payload        the rest
func encode(m *broker.Message, publisher, origin, subject string) *nats.Msg {
	h := nats.Header{}
	h.Set(headerOrigin, origin)
	h.Set(headerTopic, escapeHeader(m.Topic))
	if publisher != "" {
		h.Set(headerPublisher, escapeHeader(publisher))
	}
	n := 3 + binary.MaxVarintLen32 + len(m.ContentType) + len(m.ResponseTopic) + len(m.CorrelationData) + len(m.Payload) + 5*binary.MaxVarintLen64
	for _, u := range m.UserProperties {
		n += len(u.Key) + len(u.Value) + 2*binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	flags := m.QoS & 3
	if m.Retain {
		flags |= 4
	}
	b = append(b, bodyVersion, flags, m.PayloadFormat)
	b = binary.AppendUvarint(b, uint64(m.MessageExpiry))
	b = appendBytes(b, m.ContentType)
	b = appendBytes(b, m.ResponseTopic)
	b = appendBytes(b, m.CorrelationData)
	b = binary.AppendUvarint(b, uint64(len(m.UserProperties)))
	for _, u := range m.UserProperties {
		b = appendBytes(b, u.Key)
		b = appendBytes(b, u.Value)
	}
	b = append(b, m.Payload...)
	return &nats.Msg{Subject: subject, Header: h, Data: b}
}

func appendBytes[T string | []byte](b []byte, s T) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decode is encode's inverse: the message and its publisher.
func decode(msg *nats.Msg) (broker.Message, string, error) {
	var m broker.Message
	topic, err := unescapeHeader(msg.Header.Get(headerTopic))
	if err != nil || topic == "" {
		return m, "", fmt.Errorf("header %s: missing or malformed", headerTopic)
	}
	publisher, err := unescapeHeader(msg.Header.Get(headerPublisher))
	if err != nil {
		return m, "", fmt.Errorf("header %s: %w", headerPublisher, err)
	}
	m.Topic = topic
	d := decoder{b: msg.Data}
	if v := d.byte("version"); d.err == nil && v != bodyVersion {
		return m, "", fmt.Errorf("body version %d, want %d", v, bodyVersion)
	}
	flags := d.byte("flags")
	m.QoS, m.Retain = flags&3, flags&4 != 0
	m.PayloadFormat = d.byte("payload format")
	m.MessageExpiry = uint32(d.uvarint("message expiry"))
	m.ContentType = string(d.bytes("content type"))
	m.ResponseTopic = string(d.bytes("response topic"))
	if c := d.bytes("correlation data"); len(c) > 0 {
		m.CorrelationData = c
	}
	count := d.uvarint("user property count")
	if d.err == nil && count > uint64(len(d.b)) {
		return m, "", fmt.Errorf("body: %d user properties in %d bytes", count, len(d.b))
	}
	for range count {
		k := string(d.bytes("user property key"))
		v := string(d.bytes("user property value"))
		m.UserProperties = append(m.UserProperties, broker.UserProperty{Key: k, Value: v})
	}
	if d.err != nil {
		return m, "", d.err
	}
	m.Payload = d.b
	return m, publisher, nil
}

// decoder reads the fields of a body, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = fmt.Errorf("body: %s missing", field)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("body: %s malformed", field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("body: %s of %d bytes, %d left", field, n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// escapeHeader makes s a NATS header value: '%', space, control
// characters (tab, CR and LF among them) and DEL become %XX. A header value
// cannot hold CR or LF, and NATS trims the spaces and tabs around it, so a
// topic or client id starting or ending with one would arrive changed;
// every space is escaped, not only those at the ends, so that the rule
// stays one line. Anything else, UTF-8 included, stays as it is, so a
// topic reads plainly in `nats sub`. unescapeHeader decodes every %XX, so
// the encoding is injective.
func escapeHeader(s string) string {
	if !strings.ContainsFunc(s, needsEscape) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(rune(c)) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func needsEscape(c rune) bool { return c == '%' || c <= ' ' || c == 0x7f }

// unescapeHeader is escapeHeader's inverse.
func unescapeHeader(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("malformed escape in %q", s)
		}
		c, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("malformed escape in %q", s)
		}
		b.WriteByte(byte(c))
		i += 2
	}
	return b.String(), nil
}
