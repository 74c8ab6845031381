package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
)

// Replicated sessions (docs/cluster.md, "Replicated sessions").
//
// While its client is offline, a persistent session lives in JetStream,
// not on a node: its record (sessionRecord: the session, its
// subscriptions, and Since, the sequence of PROPOLIS_MESSAGES after which
// messages matching the subscriptions are still owed) in bucket
// SessionsBucket, and the messages the last node held for it (in flight
// and queued) under subject pq.<clientKey>.<generation> of stream
// QueuesStream, the generation the record names.
//
// The lifecycle, on the nodes' side (the broker's side is
// broker.ClusterSessions and Server.HoldConnectTurn, ExportSessionHeld,
// ForgetExportedHeld, ImportSession and
// QueueSessionMessages):
//
//  1. CONNECT on node Y: the broker calls ClaimSession (claim). A record
//     online on another alive node X makes X let the session go (a
//     release request on psr.<key>: X disconnects its client or releases
//     its offline session) and Y waits for the record to go offline. Y
//     takes temporary references on the subjects of the session's plain
//     filters, reads the last sequence L of PROPOLIS_MESSAGES, returns the
//     session with the held messages then those of (Since, L] matching
//     its filters, and writes the record online on Y, keeping Since and
//     the held messages: until Y releases the session, they are what a
//     claim elsewhere resumes from should Y die.
//  2. The broker imports the session and queues the messages; at
//     Connected, Y queues the messages of (L, now] too (catchUp): those
//     that reached Y between the claim and the import found no session.
//  3. The connection ends on X (Disconnected): X reads the last sequence
//     at once, waits releaseGrace (messages stored before the disconnect
//     may still be on their way to X), then, unless the client came back,
//     exports the session (release): its held messages into a new
//     generation pq.<key>.<gen>, the record offline naming it with Since =
//     that sequence, then the generation the record named before purged.
//  4. One node, the alive node with the lowest name (Sweeper), sweeps
//     the bucket every sweepInterval: an offline record past its expiry
//     becomes a tombstone (by revision: two sweeping at once stay
//     correct) and its queue is purged; a tombstone past its time
//     (TombstoneFor) is deleted; a record online on a node not registered
//     at two sweeps in a row is marked offline from then.
//  5. Node.InvalidateSession replaces the record with a tombstone, purges
//     the queue and tells every node (psi.<key>) to invalidate its local
//     session. A session that ended with its connection leaves a
//     tombstone too (handOver). A claim or reconcile meeting a tombstone
//     drops the local copy: a node that missed psi, or was down, does not
//     bring the session back.
//  6. At UseBroker (after the broker restored its store, and after the
//     registry's first read, waited for up to registryWait), and again
//     each time the feature switches on, a restored session whose record
//     names another node or is offline (a tombstone included) is dropped
//     locally; one whose record says online here (this node died with its
//     client connected) is released.
//  7. While the client is online, the record's state follows the session
//     (sessionsync.go): the broker's SessionChanged makes this node write
//     its SessionSnapshot into the record it claimed, coalesced per client
//     id, so that a node dying with its client connected loses none of the
//     subscriptions made during the connection.
//
// Lock order: the broker's CONNECT turn of a client id (a claim runs
// inside its CONNECT's; a release takes it first, Broker.HoldConnectTurn,
// and holds it to its end, ForgetExportedHeld included), then a slot of
// sem, then its sessionKey.mu, then sessions.mu. So a CONNECT of the id on
// this node waits for a release under way before its claim, and the claim
// finds the session either still in the broker or wholly released, never
// waiting for this node.
//
// Everything here runs only while sessionsOn (every alive node speaks
// protocol 2), release requests excepted (releaseAsked); otherwise the
// nodes keep sessions locally, as phase 1.

// Names of the bucket, stream and subjects of replicated sessions.
const (
	// SessionsBucket holds one sessionRecord per replicated session,
	// keyed by clientKey.
	SessionsBucket = "PROPOLIS_SESSIONS"
	// QueuesStream holds the messages a node held for a session when it
	// released it, under pq.<clientKey>.<generation>.
	QueuesStream = "PROPOLIS_QUEUES"

	queuePrefix      = "pq"  // QueuesStream's subjects
	invalidatePrefix = "psi" // core: invalidate the session of <clientKey> on every node
	releasePrefix    = "psr" // core: the node holding <clientKey> online lets it go
)

// Timings and bounds of replicated sessions.
const (
	// claimTimeout bounds a claim, the wait for another node's release
	// included. A claim reads and writes three of JetStream's Raft groups
	// (the sessions bucket, the queues and messages streams); one whose
	// leader was on a node that died answers nothing until its replicas
	// elect another, about 4 to 9 s after the leader's last heartbeat in
	// NATS. 10 s refused the first reconnects after a kill -9; 20 s lets
	// them wait out the election (each request tried again: retry.go).
	claimTimeout = 20 * time.Second
	// maxClaims is how many claims (and releases) one node runs at once:
	// a node going away with 10,000 sessions does not make the survivors
	// send 10,000 requests to JetStream at the same moment.
	maxClaims = 64
	// releaseGrace is how long a node waits after a persistent session's
	// connection ended before it releases the session.
	releaseGrace = 2 * time.Second
	// sweepInterval is how often the sweeping node (Sweeper) sweeps the
	// bucket for expired offline sessions.
	sweepInterval = 30 * time.Second
	// claimHold is how long the references a claim takes on its
	// subjects live at most when the session is never established.
	claimHold = 30 * time.Second
	// recordPoll is the interval of the wait for another node's release.
	recordPoll = 50 * time.Millisecond
	// sessionOpTimeout bounds a release, a sweep and an invalidation.
	sessionOpTimeout = 10 * time.Second
	// recordVersion is sessionRecord.Version.
	recordVersion = 1
)

// sessionRecord is the JSON value of a session's key in SessionsBucket.
type sessionRecord struct {
	Version int `json:"version"`
	// Node is the node that claimed or released the session last.
	Node string `json:"node"`
	// Online is true while the session's client is connected to Node.
	Online bool `json:"online"`
	// Since is the sequence of PROPOLIS_MESSAGES after which messages
	// matching the subscriptions are owed to the client (the held
	// messages of Queue excepted). A claim keeps it: it moves only when
	// a release writes what the session then held.
	Since uint64 `json:"since"`
	// Queue is the generation of the held messages, which are under
	// subject pq.<key>.<Queue> of QueuesStream: each release stores them
	// under a new one (random, unique to the release, even with none to
	// store), writes the record naming it, then purges the one it
	// replaced; a claim reads them and leaves them there, so a claiming
	// node that dies loses none of them. Held is how many were stored
	// (0: nothing to read or purge).
	Queue string `json:"queue,omitempty"`
	Held  int    `json:"held,omitempty"`
	// Expiry is the session expiry interval, seconds
	// (math.MaxUint32: never), counted from DisconnectedAt (unix
	// seconds) while offline.
	Expiry         uint32 `json:"expiry"`
	DisconnectedAt int64  `json:"disconnected_at"`
	// State is the session and its subscriptions as last exported; nil
	// for a session created on Node and not released yet.
	State *broker.SessionState `json:"state,omitempty"`
	// Tombstone marks a session that ended (invalidated, expired, or
	// ended with its connection): no state, offline, kept until
	// DisconnectedAt + Expiry (sessionOptions.TombstoneFor), then the
	// sweep deletes it. A node that meets one drops its own copy of the
	// session (claim, reconcile, handOver): a node that was down or
	// missed the invalidation does not bring the session back.
	Tombstone bool `json:"tombstone,omitempty"`
}

// expired reports whether r is an offline record past its expiry at now.
func (r *sessionRecord) expired(now time.Time) bool {
	if r.Online || r.Expiry == math.MaxUint32 {
		return false
	}
	return now.Unix() >= r.DisconnectedAt+int64(r.Expiry)
}

// tombstone returns the record of a session that ended at now, written
// by this node and kept for TombstoneFor.
func (s *sessions) tombstone(now time.Time) *sessionRecord {
	return &sessionRecord{Node: s.o.Node, Tombstone: true, DisconnectedAt: now.Unix(),
		Expiry: uint32(min(s.o.TombstoneFor/time.Second, math.MaxUint32-1))}
}

// sessionBroker is what sessions asks of the local broker
// (*broker.Server).
type sessionBroker interface {
	HoldConnectTurn(clientID string) (release func())
	ExportSessionHeld(clientID string) (broker.SessionState, []broker.Message, error)
	ForgetExportedHeld(clientID string) error
	ImportSession(st broker.SessionState) error
	SessionSnapshot(clientID string) (broker.SessionState, error)
	QueueSessionMessages(clientID string, msgs []broker.Message) (int, error)
	InvalidateSession(clientID string) error
	Client(clientID string) (broker.ClientInfo, bool)
	TakeOver(clientID string) error
	ListClients(q broker.ClientQuery) (broker.ClientPage, error)
}

// sessionOptions are the dependencies of newSessions.
type sessionOptions struct {
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Node     string
	Replicas int
	Levels   int
	// MaxBytes bounds QueuesStream (cluster.stream_max_bytes).
	MaxBytes int64
	Broker   sessionBroker
	Router   *router
	// Attributes, when set, loses the attributes of each session the
	// sweep expires (the broker drops those of sessions ending on a node).
	Attributes broker.AttributeStore
	// On reports whether replicated sessions are on (Node.sessionsOn).
	On func() bool
	// Alive reports whether a node is alive: in the registry, and routed
	// to (Node.reachable).
	Alive func(node string) bool
	// Sweeper reports whether this node is the one that sweeps expired
	// records: the alive node with the lowest name (Node.sweeper).
	Sweeper func() bool
	Log     *slog.Logger
	// Grace replaces releaseGrace when positive (tests).
	Grace time.Duration
	// SweepEvery replaces sweepInterval when positive (tests).
	SweepEvery time.Duration
	// SyncDelay replaces syncDelay when positive (tests).
	SyncDelay time.Duration
	// TombstoneFor is how long a tombstone record stays (the broker's
	// mqtt.max_session_expiry: no local copy of an ended session can
	// outlive it); defaultTombstoneFor when not positive.
	TombstoneFor time.Duration
	// MaxReplay bounds the messages one replay from PROPOLIS_MESSAGES
	// keeps (the broker's mqtt.max_queued_messages, which would drop the
	// rest anyway): the newest are kept, the number dropped is logged
	// with the client id. 0: defaultMaxReplay.
	MaxReplay int
	// Registered reports whether a node is alive in the registry (not
	// whether it is routed to): the sweep marks offline the online
	// records of a node it finds not registered at two sweeps in a row.
	// nil: Alive.
	Registered func(node string) bool
}

// Defaults of sessionOptions.
const (
	defaultTombstoneFor = 168 * time.Hour // config.Default's mqtt.max_session_expiry
	defaultMaxReplay    = 1000            // config.Default's mqtt.max_queued_messages
)

// sessions is the node's part in replicated sessions. Safe for
// concurrent use.
type sessions struct {
	o      sessionOptions
	kv     jetstream.KeyValue
	queues jetstream.Stream
	// msgs is MessagesStream's handle (messages), nil until first used.
	msgsMu sync.Mutex
	msgs   jetstream.Stream
	sem    chan struct{}
	// syncSem bounds the record writes of online sessions (sessionsync.go)
	// apart from sem: subscriptions never delay a CONNECT's claim.
	syncSem chan struct{}
	subs    []*nats.Subscription
	stop    chan struct{}
	wg      sync.WaitGroup
	last    lastSeq

	mu     sync.Mutex
	keys   map[string]*sessionKey // by clientKey
	closed bool                   // close called: spawn starts nothing
	// syncs holds the record writes of online sessions scheduled or
	// running, by clientKey (sessionsync.go).
	syncs map[string]*recordSync

	// sweepMu guards what one sweep leaves the next: orphans, the
	// records online on a node not registered, by key, with the revision
	// seen (marked offline when the next sweep finds them unchanged), and
	// unreadable, the error logged for each record that could not be
	// read (each logged once until it changes).
	sweepMu    sync.Mutex
	orphans    map[string]uint64
	unreadable map[string]string

	// reconcileMu makes the checks of restored sessions (reconcile: at
	// UseBroker, and each time the feature switches on) run one at a time.
	reconcileMu sync.Mutex
}

// spawn runs f on a goroutine close waits for, then ends the use of key's
// sessionKey sk; after close it only ends the use.
func (s *sessions) spawn(key string, sk *sessionKey, f func()) {
	if !s.background(func() { defer s.done(key, sk); f() }) {
		s.done(key, sk)
	}
}

// background runs f on a goroutine close waits for; after close it runs
// nothing and reports false.
func (s *sessions) background(f func()) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// sessionKey is what this node knows of one client id: its lock (claims
// and releases of one client id run one at a time), the generation a
// pending release must still find, and the catch-up owed at Connected.
type sessionKey struct {
	mu    sync.Mutex
	users int // goroutines holding or waiting for mu, or a pending catch-up
	gen   uint64
	// catch is set by a claim until Connected (or claimHold): the filters
	// whose subjects the claim holds, and the sequence it read.
	catch *catchUp
	// releasing is set while a release runs (its record writes are the
	// release's).
	releasing bool
}

// catchUp is what Connected owes a claimed session.
type catchUp struct {
	id      string
	filters []string
	after   uint64
	timer   *time.Timer
}

// newSessions creates or updates SessionsBucket and QueuesStream,
// subscribes to the invalidation and release subjects and starts the
// sweep. close stops it.
func newSessions(o sessionOptions) (*sessions, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Grace <= 0 {
		o.Grace = releaseGrace
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = sweepInterval
	}
	if o.SyncDelay <= 0 {
		o.SyncDelay = syncDelay
	}
	if o.Sweeper == nil {
		o.Sweeper = func() bool { return true }
	}
	if o.TombstoneFor <= 0 {
		o.TombstoneFor = defaultTombstoneFor
	}
	if o.MaxReplay <= 0 {
		o.MaxReplay = defaultMaxReplay
	}
	if o.Registered == nil {
		o.Registered = o.Alive
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	kv, _, err := ensureBucket(ctx, o.JS, jetstream.KeyValueConfig{
		Bucket:      SessionsBucket,
		Description: "Propolis: persistent sessions, their subscriptions and where their messages start",
		History:     1,
		Replicas:    max(o.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("replicated sessions: %w", err)
	}
	qcfg := jetstream.StreamConfig{
		Name:        QueuesStream,
		Description: "Propolis: the messages a node held for a session it released",
		Subjects:    []string{queuePrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		// Full: a release fails (the session stays on its node) rather
		// than dropping another session's messages.
		Discard:  jetstream.DiscardNew,
		MaxBytes: unlimited(o.MaxBytes),
		Replicas: max(o.Replicas, 1),
		Storage:  jetstream.FileStorage,
	}
	qs, err := ensureStream(ctx, o.JS, qcfg)
	if err != nil {
		return nil, fmt.Errorf("replicated sessions: %w", err)
	}
	s := &sessions{o: o, kv: kv, queues: qs, sem: make(chan struct{}, maxClaims), syncSem: make(chan struct{}, maxClaims),
		stop: make(chan struct{}), keys: map[string]*sessionKey{}, syncs: map[string]*recordSync{}}
	s.last.js = o.JS
	for prefix, handle := range map[string]func(*nats.Msg){invalidatePrefix: s.invalidated, releasePrefix: s.releaseAsked} {
		sub, err := o.Conn.Subscribe(prefix+".>", handle)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("replicated sessions: subscribe to %s.>: %w", prefix, err)
		}
		s.subs = append(s.subs, sub)
	}
	s.wg.Add(1)
	go s.sweeps()
	return s, nil
}

// close stops the sweep and the subscriptions; pending releases and
// record writes end without acting.
func (s *sessions) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	for _, c := range s.syncs {
		c.timer.Stop()
	}
	s.mu.Unlock()
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.wg.Wait()
}

// key returns the sessionKey of k, counted as used until done.
func (s *sessions) key(k string) *sessionKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.keys[k]
	if sk == nil {
		sk = &sessionKey{}
		s.keys[k] = sk
	}
	sk.users++
	return sk
}

// done ends a use of k's sessionKey (key), forgetting it when unused.
func (s *sessions) done(k string, sk *sessionKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sk.users--; sk.users == 0 {
		delete(s.keys, k)
	}
}

// acquire takes one of the maxClaims slots, or fails when ctx ends.
func (s *sessions) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d claims and releases already running on this node: %w", maxClaims, ctx.Err())
	}
}

func (s *sessions) release1() { <-s.sem }

// get reads the record of key: nil and revision 0 when there is none.
func (s *sessions) get(ctx context.Context, key string) (*sessionRecord, uint64, error) {
	var e jetstream.KeyValueEntry
	err := retry(ctx, func(ctx context.Context) (err error) {
		e, err = s.kv.Get(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s record %s: %w", SessionsBucket, key, err)
	}
	var r sessionRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("%s record %s (revision %d): %w", SessionsBucket, key, e.Revision(), err)
	}
	if r.Version != recordVersion {
		return nil, 0, fmt.Errorf("%s record %s: version %d, this node reads %d", SessionsBucket, key, r.Version, recordVersion)
	}
	return &r, e.Revision(), nil
}

// put writes r under key if the record still is at revision rev (0: none
// yet), returning the new revision; jetstream.ErrKeyExists or a wrong
// last sequence error when another write came first. A try that timed
// out may have landed: put returns its error (a caller reads the record
// again), and tries again only after a refusal (writeRetry).
func (s *sessions) put(ctx context.Context, key string, rev uint64, r *sessionRecord) (uint64, error) {
	r.Version = recordVersion
	v, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	var nrev uint64
	err = writeRetry(ctx, func(ctx context.Context) (err error) {
		if rev == 0 {
			nrev, err = s.kv.Create(ctx, key, v)
		} else {
			nrev, err = s.kv.Update(ctx, key, v, rev)
		}
		return err
	})
	return nrev, err
}

// putAny writes r under key whatever its revision. Like put, it tries
// again only after a refusal: a try that timed out may have landed, and
// repeating it later could overwrite a record another node wrote since.
func (s *sessions) putAny(ctx context.Context, key string, r *sessionRecord) error {
	r.Version = recordVersion
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeRetry(ctx, func(ctx context.Context) error {
		_, err := s.kv.Put(ctx, key, v)
		return err
	})
}

// conflict reports whether err is a conditional write that lost. A
// replicated stream answers a write racing another one on the same key
// with 10164 ("wrong last sequence", no number), which nats.go's Update
// wraps in ErrKeyRevisionMismatch, not ErrKeyExists.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// queueSubject is the subject of key's held messages of generation gen.
func queueSubject(key, gen string) string { return queuePrefix + "." + key + "." + gen }

// newQueueGen returns a generation for a release's held messages: random,
// so that two nodes releasing one session at once (one of them cut off)
// never write under the same subject.
func newQueueGen() string { return strconv.FormatUint(rand.Uint64(), 36) }

// purgeQueue removes the held messages of key, every generation, up to
// sequence upTo of QueuesStream (a session deleted: swept or
// invalidated). upTo is queuesLast read before the tombstone was written:
// a generation a later claim and release stored after it is kept, however
// late the purge runs.
func (s *sessions) purgeQueue(ctx context.Context, key string, upTo uint64) error {
	subject := queueSubject(key, ">")
	if err := retry(ctx, func(ctx context.Context) error {
		return s.queues.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(upTo+1))
	}); err != nil {
		return fmt.Errorf("purge %s of %s up to %d: %w", subject, QueuesStream, upTo, err)
	}
	return nil
}

// queuesLast returns the last sequence of QueuesStream now.
func (s *sessions) queuesLast(ctx context.Context) (uint64, error) {
	var last uint64
	err := retry(ctx, func(ctx context.Context) error {
		info, err := s.queues.Info(ctx)
		if err == nil {
			last = info.State.LastSeq
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read the last sequence of %s: %w", QueuesStream, err)
	}
	return last, nil
}

// purgeHeld removes the held messages of key's record rec (its
// generation), which no record names any more; nothing when it has none.
func (s *sessions) purgeHeld(ctx context.Context, key string, rec *sessionRecord) error {
	if rec.Held == 0 || rec.Queue == "" {
		return nil
	}
	return s.purgeSubject(ctx, queueSubject(key, rec.Queue))
}

func (s *sessions) purgeSubject(ctx context.Context, subject string) error {
	if err := retry(ctx, func(ctx context.Context) error {
		return s.queues.Purge(ctx, jetstream.WithPurgeSubject(subject))
	}); err != nil {
		return fmt.Errorf("purge %s of %s: %w", subject, QueuesStream, err)
	}
	return nil
}

// --- 1. claim ---

// claim is ClaimSession (see the top of this file); persistent says
// whether the new connection's session outlives it.
func (s *sessions) claim(id string, cleanStart, persistent bool) (_ *broker.SessionState, _ []broker.Message, claimErr error) {
	key, err := clientKey(id)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	if err := s.acquire(ctx); err != nil {
		return nil, nil, err
	}
	defer s.release1()
	sk := s.key(key)
	defer s.done(key, sk)
	sk.mu.Lock()
	defer func() { sk.mu.Unlock() }()
	sk.gen++ // a release pending here for an earlier connection does not run
	// No release of the id runs here: it would hold the CONNECT turn this
	// claim runs in.
	var asked time.Time
	// unsure: a record write of this claim got no answer and may land;
	// orig is the record it was to replace. A claim that fails after
	// that undoes it (undoClaim).
	var unsure bool
	var orig *sessionRecord
	defer func() {
		if claimErr != nil && unsure {
			s.undoClaim(id, key, orig)
		}
	}()
	for {
		rec, rev, err := s.get(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		if !cleanStart && rec != nil && rec.Online && rec.Node != s.o.Node && s.o.Alive(rec.Node) {
			// Another node holds it: ask it (again every second: the
			// request is a core message), and wait for its release. A
			// clean start does not wait: that node drops the session
			// when it finds the record names this one.
			if time.Since(asked) >= time.Second {
				if err := s.o.Conn.Publish(releasePrefix+"."+key, nil); err != nil {
					return nil, nil, fmt.Errorf("ask node %s to release the session: %w", rec.Node, err)
				}
				asked = time.Now()
			}
			select {
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("node %s did not release the session within %s", rec.Node, claimTimeout)
			case <-time.After(recordPoll):
			}
			continue
		}
		if rec != nil && rec.Tombstone && !cleanStart {
			// The session ended in the cluster: a copy this node kept
			// (it was down, or missed the invalidation) is not resumed.
			s.dropEnded(id)
		}
		if (rec == nil || rec.Tombstone) && !persistent {
			// No record (or a tombstone), and a session that ends with its connection:
			// nothing to resume, nothing written (one KV read in all).
			// The record a claim writes is what a late release on
			// another node X finds (handOver): naming this node, it
			// makes X drop its copy of an earlier session instead of
			// writing it back over this connection's clean start. No
			// record means no node holds a persistent session of the
			// id still to release: every claim of a persistent session
			// writes a record naming its node (take), which stays until
			// that node releases it (offline, kept) or another claim,
			// an invalidation or the sweep replaces it (the session
			// then gone from that node too). A session that ends with
			// its connection, as this one, has nothing to release:
			// its node's handOver finds no session and no record of
			// its own. (Sessions made while replicated sessions were
			// off, or made persistent during their connection by an
			// extension, get their record at their release only:
			// docs/cluster.md, "Limits".) Another node's claim of the
			// id finds no record either and starts afresh, which is
			// right for a session that ends with its connection; the
			// take-over of the client id (owner.go) disconnects it.
			return nil, nil, nil
		}
		if !cleanStart && rec != nil && rec.Online && rec.Node == s.o.Node {
			if _, ok := s.o.Broker.Client(id); ok {
				return nil, nil, nil // here already: the broker takes it over locally
			}
		}
		st, msgs, err := s.take(ctx, id, key, sk, rec, rev, cleanStart)
		if errors.Is(err, errMayHaveLanded) && !unsure {
			unsure, orig = true, rec
		} else if err == nil {
			unsure = false
		}
		if conflict(err) || transient(err) && ctx.Err() == nil {
			// Another node's claim or release came first, or a request
			// failed while a stream had no leader (a record write that
			// timed out may have landed: the record is read again).
			select {
			case <-ctx.Done():
			case <-time.After(retryPause):
			}
			continue
		}
		return st, msgs, err
	}
}

// errMayHaveLanded marks a claim's record write that got no answer: it
// may land yet.
var errMayHaveLanded = errors.New("the write may land yet")

// undoClaim runs when a claim of key fails after one of its record writes
// got no answer. Such a write may land later and name this node online
// for a session it never imported; a release request would then find no
// session here and end it with a tombstone, losing it. So undoClaim
// writes at the record's current revision, which makes any older
// conditional write fail when it arrives: what the record was before the
// claim (orig; a tombstone, "no session", for none) if the record names
// this node online (the claim's write landed), else the record as it is.
func (s *sessions) undoClaim(id, key string, orig *sessionRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), sessionOpTimeout)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		var cur *sessionRecord
		var rev uint64
		if cur, rev, err = s.get(ctx, key); err != nil {
			break
		}
		next := cur
		if cur != nil && cur.Online && cur.Node == s.o.Node {
			next = orig
		}
		if next == nil {
			next = s.tombstone(time.Now())
		}
		if _, err = s.put(ctx, key, rev, next); err == nil {
			return
		}
		if !conflict(err) {
			break
		}
	}
	s.o.Log.Error("replicated session: a failed claim's record write may still land and name this node for a session it does not hold; invalidate the session if its client cannot resume it",
		"client", id, "error", err)
}

// take claims the session of record rec (revision rev; nil when none) for
// this node: see claim. sk.mu is held.
func (s *sessions) take(ctx context.Context, id, key string, sk *sessionKey, rec *sessionRecord, rev uint64,
	cleanStart bool) (*broker.SessionState, []broker.Message, error) {
	var st *broker.SessionState
	var since uint64
	if rec != nil && !cleanStart {
		st, since = rec.State, rec.Since
	}
	var held []broker.Message
	if st != nil && rec.Held > 0 {
		var err error
		if held, err = s.readQueue(ctx, key, rec.Queue); err != nil {
			return nil, nil, err
		}
	}
	filters := plainFilters(st)
	for _, f := range filters {
		s.o.Router.subscribed(f)
	}
	holding := true
	defer func() {
		if holding {
			for _, f := range filters {
				s.o.Router.unsubscribed(f)
			}
		}
	}()
	if len(filters) > 0 {
		if err := s.o.Conn.FlushWithContext(ctx); err != nil {
			return nil, nil, fmt.Errorf("subscribe to the session's subjects: %w", err)
		}
	}
	last, err := s.last.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	var replay []broker.Message
	if st != nil && last > since {
		if replay, err = s.replay(ctx, id, filters, since, last); err != nil {
			return nil, nil, err
		}
	}
	// A resumed session keeps the record's since and held messages until
	// this node's release: should this node die before its client
	// acknowledged what the claim hands it, the next claim hands it all
	// again (duplicates, never loss).
	nr := &sessionRecord{Node: s.o.Node, Online: true, Since: last, State: st}
	if st != nil {
		nr.Since, nr.Queue, nr.Held, nr.Expiry = since, rec.Queue, rec.Held, st.Session.SessionExpiry
	}
	if _, err := s.put(ctx, key, rev, nr); err != nil {
		if conflict(err) {
			return nil, nil, err
		}
		if !refused(err) { // no answer: it may land yet
			return nil, nil, fmt.Errorf("write %s record: %w (%w)", SessionsBucket, err, errMayHaveLanded)
		}
		return nil, nil, fmt.Errorf("write %s record: %w", SessionsBucket, err)
	}
	if rec != nil && nr.Queue != rec.Queue {
		// A clean start (or a record with no state): the held messages
		// are nobody's now.
		if err := s.purgeHeld(ctx, key, rec); err != nil {
			s.o.Log.Warn("replicated session: held messages of the session a clean start replaced not purged", "client", id, "error", err)
		}
	}
	if len(filters) > 0 {
		holding = false
		s.hold(id, key, sk, filters, last)
	}
	if st == nil {
		return nil, nil, nil
	}
	return st, append(held, replay...), nil
}

// plainFilters returns the filters of st's subscriptions other than
// shared ones (a shared group's messages went to its other members).
func plainFilters(st *broker.SessionState) []string {
	if st == nil {
		return nil
	}
	var out []string
	for _, sub := range st.Subscriptions {
		if strings.HasPrefix(sub.Filter, "$share/") {
			continue
		}
		out = append(out, sub.Filter)
	}
	return out
}

// hold keeps the claim's references on the subjects of filters until
// Connected (catchUp) or claimHold. sk.mu is held.
func (s *sessions) hold(id, key string, sk *sessionKey, filters []string, after uint64) {
	if old := sk.catch; old != nil { // taken from sk.catch: ours (see connected)
		old.timer.Stop()
		s.dropHold(old)
		s.done(key, sk)
	}
	c := &catchUp{id: id, filters: filters, after: after}
	s.mu.Lock()
	sk.users++ // kept while the catch-up is pending
	s.mu.Unlock()
	sk.catch = c
	c.timer = time.AfterFunc(claimHold, func() {
		sk.mu.Lock()
		mine := sk.catch == c
		if mine {
			sk.catch = nil
		}
		sk.mu.Unlock()
		if mine {
			s.dropHold(c)
			s.done(key, sk)
		}
	})
}

// dropHold releases the references of c.
func (s *sessions) dropHold(c *catchUp) {
	for _, f := range c.filters {
		s.o.Router.unsubscribed(f)
	}
}

// connected runs at Connected: a claimed session queues the messages of
// (claim's sequence, now] matching its filters, which reached this node
// before the broker imported the session, then the claim's references go.
func (s *sessions) connected(id string) {
	key, err := clientKey(id)
	if err != nil {
		return
	}
	s.mu.Lock()
	sk := s.keys[key]
	s.mu.Unlock()
	if sk == nil {
		return
	}
	sk.mu.Lock()
	sk.gen++
	c := sk.catch
	sk.catch = nil
	sk.mu.Unlock()
	if c == nil {
		return
	}
	// Taken from sk.catch: ours, whether or not the timer fired since
	// (it then finds sk.catch changed and leaves c alone).
	c.timer.Stop()
	s.spawn(key, sk, func() {
		defer s.dropHold(c)
		ctx, cancel := context.WithTimeout(context.Background(), sessionOpTimeout)
		defer cancel()
		last, err := s.last.read(ctx)
		if err == nil && last > c.after {
			var msgs []broker.Message
			if msgs, err = s.replay(ctx, id, c.filters, c.after, last); err == nil && len(msgs) > 0 {
				_, err = s.o.Broker.QueueSessionMessages(id, msgs)
			}
		}
		if err != nil {
			s.o.Log.Warn("replicated session: messages stored during the claim not queued", "client", id, "error", err)
		}
	})
}

// readQueue reads the held messages of key of generation gen, in order.
func (s *sessions) readQueue(ctx context.Context, key, gen string) ([]broker.Message, error) {
	// Unbounded: what one node held for the session, at most its queue
	// and in-flight limits.
	msgs, _, err := s.read(ctx, s.queues, []string{queueSubject(key, gen)}, 0, 0, 0, "")
	if err != nil {
		return nil, fmt.Errorf("read the session's held messages from %s: %w", QueuesStream, err)
	}
	return msgs, nil
}

// replay reads the messages of PROPOLIS_MESSAGES in (after, upTo] on the
// subjects of filters for the session of id: the newest MaxReplay of
// them (the broker's queue limit would drop the rest), the number
// dropped logged with the client id.
func (s *sessions) replay(ctx context.Context, id string, filters []string, after, upTo uint64) ([]broker.Message, error) {
	subjects := coverSubjects(filters, s.o.Levels)
	if len(subjects) == 0 {
		return nil, nil
	}
	st, err := s.messages(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", MessagesStream, err)
	}
	msgs, dropped, err := s.read(ctx, st, subjects, after+1, upTo, s.o.MaxReplay, "")
	if err != nil {
		return nil, fmt.Errorf("replay %s from %d to %d: %w", MessagesStream, after+1, upTo, err)
	}
	if dropped > 0 {
		s.o.Log.Warn("replicated session: replay longer than its bound; the oldest messages dropped",
			"client", id, "dropped", dropped, "kept", len(msgs), "from", after+1, "to", upTo)
	}
	return msgs, nil
}

// messages returns the handle of MessagesStream, looked up once (a
// stream info request) and kept: claims after a node died would each
// ask again otherwise.
func (s *sessions) messages(ctx context.Context) (jetstream.Stream, error) {
	s.msgsMu.Lock()
	st := s.msgs
	s.msgsMu.Unlock()
	if st != nil {
		return st, nil
	}
	// Looked up outside the lock: a caller waits for its own deadline,
	// not another's lookup.
	if err := retry(ctx, func(ctx context.Context) (err error) {
		st, err = s.o.JS.Stream(ctx, MessagesStream)
		return err
	}); err != nil {
		return nil, err
	}
	s.msgsMu.Lock()
	if s.msgs == nil {
		s.msgs = st
	}
	st = s.msgs
	s.msgsMu.Unlock()
	return st, nil
}

// read returns the messages of st on subjects from sequence from (0: the
// first) up to upTo (0: the last now), decoded, with the expiry they have
// left; expired and undecodable ones are left out (the latter logged).
// It reads through an ephemeral consumer without acks, deleted after, a
// page of readBatch at a time. With limit above 0 it keeps the newest
// limit messages in a ring (memory bounded whatever the stream holds) and
// returns how many older ones it dropped. Messages whose Pm-Origin is
// skipOrigin (when not "") are left out: the node's own (catchup.go).
// A read that failed transiently (a consumer placed on a node that just
// died answers nothing) starts again with a new consumer while ctx lasts.
func (s *sessions) read(ctx context.Context, st jetstream.Stream, subjects []string, from, upTo uint64,
	limit int, skipOrigin string) (msgs []broker.Message, dropped int, err error) {
	// No deadline per try: a long read is not a hung request.
	err = retryWhile(ctx, 0, transient, func(ctx context.Context) (err error) {
		msgs, dropped, err = s.readOnce(ctx, st, subjects, from, upTo, limit, skipOrigin)
		return err
	})
	return msgs, dropped, err
}

// readOnce is one try of read.
func (s *sessions) readOnce(ctx context.Context, st jetstream.Stream, subjects []string, from, upTo uint64,
	limit int, skipOrigin string) ([]broker.Message, int, error) {
	cfg := jetstream.ConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: claimHold, MemoryStorage: true}
	if from > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cctx, ccancel := context.WithTimeout(ctx, requestTimeout)
	c, err := st.CreateConsumer(cctx, cfg)
	ccancel()
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		// Not waited for: a claim's deadline does not wait on a delete
		// (the consumer's InactiveThreshold removes it anyway).
		go func(name string) {
			dctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
			_ = st.DeleteConsumer(dctx, name)
			cancel()
		}(c.CachedInfo().Name)
	}()
	var ring msgRing
	ring.limit = limit
	now := time.Now()
	var unanswered time.Time // since when the consumer has not answered
	for pending := c.CachedInfo().NumPending; pending > 0; {
		batch, err := c.FetchNoWait(readBatch)
		if err != nil {
			return nil, 0, err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return nil, 0, err
			}
			pending = meta.NumPending
			if upTo > 0 && meta.Sequence.Stream > upTo {
				pending = 0
				break
			}
			m, publisher, err := decode(&nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
			if skipOrigin != "" && msg.Headers().Get(headerOrigin) == skipOrigin {
				// the node's own message: its subscribers had it
			} else if err != nil {
				s.o.Log.Warn("replicated session: stored message not delivered", "subject", msg.Subject(), "error", err)
			} else if remainingExpiry(&m, meta.Timestamp, now) {
				m.Origin = publisher
				ring.add(m)
			}
			if upTo > 0 && meta.Sequence.Stream >= upTo {
				pending = 0
			}
		}
		err = batch.Error()
		switch {
		case got > 0:
		case errors.Is(err, jetstream.ErrNoMessages):
			pending = 0 // the server says there is nothing (left)
		case err == nil || errors.Is(err, nats.ErrNoResponders):
			// No answer while messages are pending: a consumer just
			// created in a clustered stream may not serve pulls yet, or
			// it sits on a node that died. Ask again, for requestTimeout
			// (then read tries a new consumer).
			if unanswered.IsZero() {
				unanswered = time.Now()
			} else if time.Since(unanswered) > requestTimeout {
				if err == nil {
					err = nats.ErrTimeout
				}
				return nil, 0, fmt.Errorf("consumer %s of %s answered no pull for %s with %d messages pending: %w",
					c.CachedInfo().Name, st.CachedInfo().Config.Name, requestTimeout, pending, err)
			}
			select {
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("%w (the consumer did not answer: %v)", ctx.Err(), err)
			case <-time.After(recordPoll):
			}
			continue
		default:
			return nil, 0, err
		}
		unanswered = time.Time{}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
	}
	return ring.messages(), ring.dropped, nil
}

// msgRing keeps the newest limit messages added (all with limit 0), and
// counts the older ones it dropped.
type msgRing struct {
	limit   int
	msgs    []broker.Message
	next    int // where the next one goes once full: the oldest
	dropped int
}

func (r *msgRing) add(m broker.Message) {
	if r.limit <= 0 || len(r.msgs) < r.limit {
		r.msgs = append(r.msgs, m)
		return
	}
	r.msgs[r.next] = m
	r.next = (r.next + 1) % r.limit
	r.dropped++
}

// messages returns the messages kept, oldest first.
func (r *msgRing) messages() []broker.Message {
	if r.next == 0 {
		return r.msgs
	}
	return append(slices.Clone(r.msgs[r.next:]), r.msgs[:r.next]...)
}

// readBatch is how many stored messages one fetch of read asks for.
const readBatch = 256

// coverSubjects returns the subjects of filters, without one that
// another covers (a consumer's filter subjects must not overlap), sorted.
func coverSubjects(filters []string, levels int) []string {
	var subs []string
	for _, f := range filters {
		subs = append(subs, filterSubject(f, levels))
	}
	return coverSubjectList(subs)
}

// coverSubjectList returns subs without one that another covers, sorted
// (subs is sorted in place).
func coverSubjectList(subs []string) []string {
	slices.Sort(subs)
	subs = slices.Compact(subs)
	var out []string
	for i, a := range subs {
		covered := false
		for j, b := range subs {
			if i != j && subjectCovers(b, a) && (!subjectCovers(a, b) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, a)
		}
	}
	return out
}

// subjectCovers reports whether every subject matching b matches a
// (NATS wildcards: '*' one token, '>' one or more at the end).
func subjectCovers(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, t := range at {
		if t == ">" {
			return len(bt) > i
		}
		if i >= len(bt) {
			return false
		}
		if bt[i] == ">" {
			return false
		}
		if t != "*" && t != bt[i] {
			return false
		}
	}
	return len(at) == len(bt)
}

// --- 3. release ---

// disconnected runs at Disconnected: it reads the stream's last sequence,
// waits the grace and releases the session unless its client came back.
func (s *sessions) disconnected(id string) {
	key, err := clientKey(id)
	if err != nil {
		return
	}
	sk := s.key(key)
	sk.mu.Lock()
	gen := sk.gen
	sk.mu.Unlock()
	s.spawn(key, sk, func() {
		ctx, cancel := context.WithTimeout(context.Background(), sessionOpTimeout)
		since, err := s.last.read(ctx)
		cancel()
		if err != nil {
			s.o.Log.Warn("replicated session not released: the message stream's last sequence is unknown; the session stays here",
				"client", id, "error", err)
			return
		}
		select {
		case <-s.stop:
			return
		case <-time.After(s.o.Grace):
		}
		s.release(id, key, sk, gen, since)
	})
}

// release exports the session of id to JetStream (see the top of this
// file), unless the client came back since generation gen (gen 0: any).
// since is the stream's sequence at the disconnect (0: keep the record's).
// It holds the client id's CONNECT turn throughout (see the lock order at
// the top of this file): a CONNECT of the id here waits, then claims what
// the release stored.
func (s *sessions) release(id, key string, sk *sessionKey, gen, since uint64) {
	give := s.o.Broker.HoldConnectTurn(id)
	defer give()
	ctx, cancel := context.WithTimeout(context.Background(), sessionOpTimeout)
	defer cancel()
	if err := s.acquire(ctx); err != nil {
		s.o.Log.Warn("replicated session not released; it stays here", "client", id, "error", err)
		return
	}
	defer s.release1()
	sk.mu.Lock()
	if gen != 0 && sk.gen != gen || sk.releasing {
		sk.mu.Unlock()
		return // claimed again or reconnected here, or released already
	}
	sk.releasing = true
	sk.mu.Unlock()
	defer func() {
		sk.mu.Lock()
		sk.releasing = false
		sk.mu.Unlock()
	}()
	if info, ok := s.o.Broker.Client(id); ok && info.Connected {
		return
	}
	if err := s.handOver(ctx, id, key, since); err != nil {
		s.o.Log.Warn("replicated session not released; it stays here", "client", id, "error", err)
	}
}

// handOver is release once decided, sk.releasing set and the client id's
// CONNECT turn held.
func (s *sessions) handOver(ctx context.Context, id, key string, since uint64) error {
	rec, rev, err := s.get(ctx, key)
	if err != nil {
		return err
	}
	if rec != nil && (rec.Node != s.o.Node || !rec.Online) {
		// Another node claimed it since (this node was cut off, or the
		// record is older than a restart): the record is the truth.
		if s.dropHeld(id) {
			s.o.Log.Info("replicated session dropped here: another node has it", "client", id, "node", rec.Node)
		}
		return nil
	}
	st, held, err := s.o.Broker.ExportSessionHeld(id)
	switch {
	case errors.Is(err, broker.ErrNoSession):
		if rec != nil { // a session that ended with its connection
			if _, err := s.put(ctx, key, rev, s.tombstone(time.Now())); err != nil {
				if conflict(err) {
					return nil
				}
				return fmt.Errorf("write the tombstone of %s record %s: %w", SessionsBucket, key, err)
			}
			return s.purgeHeld(ctx, key, rec)
		}
		return nil
	case errors.Is(err, broker.ErrConnected):
		return nil
	case err != nil:
		return err
	}
	if since == 0 && rec != nil {
		since = rec.Since
	}
	// The held messages go under a new generation; the record names it
	// once they are all stored; the generation it named before (the
	// claim's, which this session received and may not all have had
	// acknowledged) goes only then.
	nr := &sessionRecord{Node: s.o.Node, Since: since, State: &st, Expiry: st.Session.SessionExpiry,
		DisconnectedAt: time.Now().Unix(), Queue: newQueueGen(), Held: len(held)}
	if err := s.publishHeld(ctx, key, nr.Queue, held); err != nil {
		_ = s.purgeHeld(ctx, key, nr) // named by no record
		return s.putBack(id, st, held, err)
	}
	_, err = s.put(ctx, key, rev, nr)
	switch {
	case err == nil:
	case conflict(err):
		// The record changed since it was read: another node's claim (a
		// clean start, or a resuming one that found this node dead and
		// resumed from the record as it was: its since and the held
		// messages it names, which are still there) or an invalidation
		// came first. The session is theirs, or gone: this node's copy
		// goes with the generation it just stored, which no record
		// names; nothing else is purged, nothing put back.
		if ferr := s.o.Broker.ForgetExportedHeld(id); ferr != nil {
			s.o.Log.Warn("replicated session: its local copy not deleted (a restart drops it)", "client", id, "error", ferr)
		}
		_ = s.purgeHeld(ctx, key, nr)
		node := "none"
		if cur, _, gerr := s.get(ctx, key); gerr == nil && cur != nil {
			node = cur.Node
		}
		s.o.Log.Info("replicated session dropped here: its record changed during the release", "client", id, "node", node)
		return nil
	default:
		// No answer (no quorum, time out): the write may have landed all
		// the same, and the record then names the generation stored.
		rctx, rcancel := context.WithTimeout(context.Background(), publishTimeout)
		cur, _, gerr := s.get(rctx, key)
		rcancel()
		if gerr != nil || cur == nil || cur.Queue != nr.Queue {
			// Not released: the session goes back into the broker; the
			// generation stored stays (the write may still land), for
			// the sweep or an invalidation to purge otherwise.
			return s.putBack(id, st, held, err)
		}
	}
	if ferr := s.o.Broker.ForgetExportedHeld(id); ferr != nil {
		s.o.Log.Warn("replicated session: its local copy not deleted (a restart drops it)", "client", id, "error", ferr)
	}
	if rec != nil {
		if perr := s.purgeHeld(ctx, key, rec); perr != nil {
			s.o.Log.Warn("replicated session: held messages of the previous release not purged", "client", id, "error", perr)
		}
	}
	return nil
}

// putBack puts id's exported session and its held messages back into the
// broker after a release that failed with err, and returns err.
func (s *sessions) putBack(id string, st broker.SessionState, held []broker.Message, err error) error {
	if ierr := s.o.Broker.ImportSession(st); ierr != nil {
		return fmt.Errorf("%w; and the session could not be put back: %v (lost)", err, ierr)
	}
	if _, qerr := s.o.Broker.QueueSessionMessages(id, held); qerr != nil {
		return fmt.Errorf("%w; and its messages could not be put back: %v", err, qerr)
	}
	return err
}

// dropEnded removes this node's offline copy of id's session, whose
// record is a tombstone, from the CONNECT path (the client id's CONNECT
// turn held: the broker's InvalidateSession needs none). A connected
// copy is left to the take-over.
func (s *sessions) dropEnded(id string) {
	if info, ok := s.o.Broker.Client(id); !ok || info.Connected {
		return
	}
	if err := s.o.Broker.InvalidateSession(id); err != nil && !errors.Is(err, broker.ErrNoSession) {
		s.o.Log.Warn("replicated session: local copy of an ended session not dropped", "client", id, "error", err)
		return
	}
	s.o.Log.Info("replicated session dropped here: it ended in the cluster", "client", id)
}

// dropLocal removes this node's copy of id's session, which the cluster's
// record gives to another node (or keeps offline), with its stored
// records; it reports whether there was one. It takes the client id's
// CONNECT turn: a caller holding it calls dropHeld.
func (s *sessions) dropLocal(id string) bool {
	give := s.o.Broker.HoldConnectTurn(id)
	defer give()
	return s.dropHeld(id)
}

// dropHeld is dropLocal for a caller holding the client id's CONNECT turn.
func (s *sessions) dropHeld(id string) bool {
	if _, _, err := s.o.Broker.ExportSessionHeld(id); err != nil {
		return false
	}
	if err := s.o.Broker.ForgetExportedHeld(id); err != nil {
		s.o.Log.Warn("replicated session: its local copy not deleted (a restart drops it)", "client", id, "error", err)
	}
	return true
}

// publishHeld stores msgs under pq.<key>.<gen>, in order, waiting for
// each acknowledgement.
func (s *sessions) publishHeld(ctx context.Context, key, gen string, msgs []broker.Message) error {
	subject := queueSubject(key, gen)
	for i := range msgs {
		m := &msgs[i]
		msg := encode(m, m.Origin, s.o.Node, subject)
		// A try that timed out may have landed: the id makes the stream
		// drop the second copy (its duplicate window, 2 min).
		id := jetstream.WithMsgID(subject + "." + strconv.Itoa(i))
		if err := retry(ctx, func(ctx context.Context) error {
			_, err := s.o.JS.PublishMsg(ctx, msg, id)
			return err
		}); err != nil {
			return fmt.Errorf("store held message %d of %d in %s: %w", i+1, len(msgs), QueuesStream, err)
		}
	}
	return nil
}

// releaseAsked handles a release request (psr.<key>): a client connected
// here is disconnected (its Disconnected releases the session); an
// offline session held here, or a record saying online here with nothing
// here, is released at once. It answers whatever this node's protocol
// gate reads (sessionsOn): the asking node reads it on, and only this
// node can let the session go (unanswered, its claim would wait its 10 s
// and refuse the CONNECT).
func (s *sessions) releaseAsked(msg *nats.Msg) {
	key := strings.TrimPrefix(msg.Subject, releasePrefix+".")
	id, ok := unescapeToken(key)
	if !ok {
		return
	}
	if info, ok := s.o.Broker.Client(id); ok && info.Connected {
		_ = s.o.Broker.TakeOver(id) // gone meanwhile: its Disconnected releases
		return
	}
	sk := s.key(key)
	s.spawn(key, sk, func() {
		s.release(id, key, sk, 0, 0)
	})
}

// --- 4. expiry ---

// sweeps runs sweepTick every SweepEvery until close.
func (s *sessions) sweeps() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if n, swept, err := s.sweepTick(time.Now()); swept && err != nil {
			s.o.Log.Warn("replicated sessions: expiry sweep", "expired", n, "error", err)
		}
	}
}

// sweepTick sweeps at now if replicated sessions are on and this node is
// the sweeper (the alive node with the lowest name): one node reads every
// record, not all of them. Should two nodes each see themselves the
// lowest (a registry update on its way), both sweep, and the
// revision-conditioned deletes keep that correct. swept reports whether
// it swept.
func (s *sessions) sweepTick(now time.Time) (n int, swept bool, err error) {
	if !s.o.On() || !s.o.Sweeper() {
		return 0, false, nil
	}
	n, err = s.sweep(now)
	return n, true, err
}

// sweep goes over every record at now: an offline record past its
// expiry becomes a tombstone (by revision: of nodes sweeping at once, the
// one whose write lands purges its held messages and attributes); a
// tombstone past its time is deleted (by revision); a record online on a
// node not registered at this sweep and the previous one, unchanged
// since, is marked offline with DisconnectedAt = now (by revision), so
// that its expiry counts from then. A record that cannot be read is
// logged with its key, once until its error changes. It returns how many
// sessions expired.
func (s *sessions) sweep(now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sweepInterval)
	defer cancel()
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("list %s keys: %w", SessionsBucket, err)
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	orphans, unreadable := map[string]uint64{}, map[string]string{}
	n := 0
	var upTo uint64 // QueuesStream's last sequence, read at the first expired record
	upToRead := false
	var errs []error
	for key := range keys.Keys() {
		rec, rev, err := s.get(ctx, key)
		if err != nil {
			if ctx.Err() != nil {
				errs = append(errs, err)
				break
			}
			unreadable[key] = err.Error()
			if s.unreadable[key] != err.Error() {
				s.o.Log.Warn("replicated sessions: record unreadable; the sweep leaves it", "key", key, "error", err)
			}
			continue
		}
		switch {
		case rec == nil:
		case rec.Online && !s.o.Registered(rec.Node):
			if s.orphans[key] != rev {
				orphans[key] = rev // marked at the next sweep if still so
				continue
			}
			nr := *rec
			nr.Online, nr.DisconnectedAt = false, now.Unix()
			if _, err := s.put(ctx, key, rev, &nr); err != nil && !conflict(err) {
				errs = append(errs, fmt.Errorf("mark %s record %s offline (node %s not alive): %w", SessionsBucket, key, rec.Node, err))
			} else if err == nil {
				s.o.Log.Info("replicated session marked offline: its node is not alive", "key", key, "node", rec.Node)
			}
		case !rec.expired(now):
		case rec.Tombstone:
			if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil && !conflict(err) {
				errs = append(errs, fmt.Errorf("delete the tombstone %s record %s: %w", SessionsBucket, key, err))
			}
		default:
			if !upToRead {
				// Read once, before the sweep's first tombstone: any
				// read before a key's tombstone bounds its purge
				// (purgeQueue).
				if upTo, err = s.queuesLast(ctx); err != nil {
					errs = append(errs, err)
					break
				}
				upToRead = true
			}
			if _, err := s.put(ctx, key, rev, s.tombstone(now)); err != nil {
				if !conflict(err) {
					errs = append(errs, fmt.Errorf("write the tombstone of expired %s record %s: %w", SessionsBucket, key, err))
				}
				continue
			}
			if err := s.purgeQueue(ctx, key, upTo); err != nil {
				errs = append(errs, err)
			}
			if id, ok := unescapeToken(key); ok && s.o.Attributes != nil {
				if err := s.o.Attributes.AttributeDeleteAll(id); err != nil {
					errs = append(errs, fmt.Errorf("delete the attributes of %q: %w", id, err))
				}
			}
			n++
		}
	}
	s.orphans, s.unreadable = orphans, unreadable
	return n, errors.Join(errs...)
}

// --- 5. invalidation ---

// invalidate replaces the record of id by a tombstone, purges its held
// messages, invalidates the local session, then tells the other nodes to
// invalidate theirs (psi.<key>, naming this node, which ignores its own).
// found reports whether there was a record (not a tombstone); err is the
// broker's (broker.ErrNoSession when there was no local session) or
// JetStream's.
func (s *sessions) invalidate(id string) (found bool, err error) {
	key, err := clientKey(id)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessionOpTimeout)
	defer cancel()
	sk := s.key(key)
	defer s.done(key, sk)
	sk.mu.Lock()
	sk.gen++ // a release pending here does not run
	rec, _, err := s.get(ctx, key)
	var upTo uint64
	if err == nil {
		upTo, err = s.queuesLast(ctx)
	}
	if err == nil {
		// A tombstone, not a delete: a node that misses psi below (or
		// is down) drops its copy when it meets the tombstone.
		if err = s.putAny(ctx, key, s.tombstone(time.Now())); err != nil {
			err = fmt.Errorf("write the tombstone of %s record %s: %w", SessionsBucket, key, err)
		}
	}
	if err == nil {
		err = s.purgeQueue(ctx, key, upTo)
	}
	sk.mu.Unlock()
	if err != nil {
		return false, err
	}
	found = rec != nil && !rec.Tombstone
	lerr := s.o.Broker.InvalidateSession(id)
	if err := s.o.Conn.Publish(invalidatePrefix+"."+key, []byte(s.o.Node)); err != nil {
		return found, fmt.Errorf("tell the other nodes: %w", err)
	}
	return found, lerr
}

// invalidated handles psi.<key>: the local session of the client id is
// invalidated (none here is fine).
func (s *sessions) invalidated(msg *nats.Msg) {
	key := strings.TrimPrefix(msg.Subject, invalidatePrefix+".")
	id, ok := unescapeToken(key)
	if !ok || string(msg.Data) == s.o.Node {
		return
	}
	if err := s.o.Broker.InvalidateSession(id); err != nil && !errors.Is(err, broker.ErrNoSession) {
		s.o.Log.Warn("replicated session not invalidated here", "client", id, "error", err)
	}
}

// --- 6. restart ---

// reconcile applies the records to the sessions the broker restored from
// its store: one whose record names another node or is offline is
// dropped here (a tombstone is offline); one whose record says online
// here (this node stopped with its client connected) is released; one
// without a record stays. A record that cannot be read leaves its session
// here and the others are still checked; err names each such client id.
func (s *sessions) reconcile(ctx context.Context) (dropped, released int, err error) {
	after := ""
	var errs []error
	for {
		page, err := s.o.Broker.ListClients(broker.ClientQuery{State: broker.ClientsOffline, After: after, Limit: broker.MaxPageLimit})
		if err != nil {
			return dropped, released, errors.Join(append(errs, fmt.Errorf("list the restored sessions: %w", err))...)
		}
		for _, c := range page.Clients {
			key, err := clientKey(c.ClientID)
			if err != nil {
				continue
			}
			rec, _, err := s.get(ctx, key)
			switch {
			case err != nil && ctx.Err() != nil:
				return dropped, released, errors.Join(append(errs, fmt.Errorf("client %q: %w", c.ClientID, err))...)
			case err != nil: // this one stays here; the others are checked
				errs = append(errs, fmt.Errorf("client %q: %w", c.ClientID, err))
			case rec == nil:
			case rec.Node != s.o.Node || !rec.Online:
				if s.dropLocal(c.ClientID) {
					dropped++
				}
			default:
				sk := s.key(key)
				s.release(c.ClientID, key, sk, 0, 0)
				s.done(key, sk)
				released++
			}
		}
		if page.Next == "" {
			return dropped, released, errors.Join(errs...)
		}
		after = page.Next
	}
}

// --- the stream's last sequence ---

// lastSeq reads the last sequence of PROPOLIS_MESSAGES, one request at a
// time: a caller arriving while a request is in flight waits for the
// next one (whose answer is later than its call), so that 10,000
// disconnects at once make a few requests, not 10,000.
type lastSeq struct {
	js jetstream.JetStream

	mu      sync.Mutex
	running bool
	waiters []chan lastAnswer // for the next request
}

type lastAnswer struct {
	seq uint64
	err error
}

// read returns the stream's last sequence, read after the call began.
func (l *lastSeq) read(ctx context.Context) (uint64, error) {
	ch := make(chan lastAnswer, 1)
	l.mu.Lock()
	l.waiters = append(l.waiters, ch)
	if !l.running {
		l.running = true
		go l.run()
	}
	l.mu.Unlock()
	select {
	case a := <-ch:
		return a.seq, a.err
	case <-ctx.Done():
		return 0, fmt.Errorf("read the last sequence of %s: %w", MessagesStream, ctx.Err())
	}
}

// run answers the waiters, a request per batch, until none is left.
func (l *lastSeq) run() {
	for {
		l.mu.Lock()
		ws := l.waiters
		l.waiters = nil
		if len(ws) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		var a lastAnswer
		// Stream asks for the stream's info: one round trip, its
		// answer read after the waiters' calls (each waiter gives up at
		// its own deadline).
		err := retry(ctx, func(ctx context.Context) error {
			st, err := l.js.Stream(ctx, MessagesStream)
			if err == nil {
				a.seq = st.CachedInfo().State.LastSeq
			}
			return err
		})
		cancel()
		if err != nil {
			a.err = fmt.Errorf("read the last sequence of %s: %w", MessagesStream, err)
		}
		for _, w := range ws {
			w <- a
		}
	}
}
