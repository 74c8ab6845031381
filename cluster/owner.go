package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Take-over of a client id across nodes.
//
// Bucket ClientsBucket holds one key per client id connected somewhere in
// the cluster (clientKey), its value the node that last took the id
// (ownerEntry). A node puts its entry when a local session is established
// (owners.connected) and deletes it when its last local connection of the
// id ends, only if the entry is still its own (a delete conditioned on the
// revision of its put). Every node watches the bucket: an entry naming
// another node, of a later revision than this node's own put for a client
// id it holds a connection of, makes it disconnect that connection
// (ownerBroker.TakeOver). So of two nodes taking one client id at once, the
// later KV revision wins on both; an entry of this node never disconnects
// its own client, whatever its age.

// ClientsBucket is the KV bucket recording the node of each connected
// client id.
const ClientsBucket = "PROPOLIS_CLIENTS"

// ownerEntry is the JSON value of a client id's key in ClientsBucket.
type ownerEntry struct {
	Node  string    `json:"node"`  // the node that took the client id last
	Since time.Time `json:"since"` // when that node's session was established
}

// ownerBroker is what owners asks of the local broker (*broker.Server).
type ownerBroker interface {
	// TakeOver disconnects the local connection of clientID, which
	// another node took over (MQTT 5 reason 0x8E).
	TakeOver(clientID string) error
	// ClaimedElsewhere tells the broker that another node took
	// clientID while this node holds no connection of it: a delayed will
	// pending for it here is not published.
	ClaimedElsewhere(clientID string)
}

// ownerOptions are the dependencies of newOwners.
type ownerOptions struct {
	JS       jetstream.JetStream // the node's JetStream
	Node     string              // this node's name
	Replicas int                 // replicas of ClientsBucket (the replication factor in force)
	Broker   ownerBroker
	Log      *slog.Logger
	// Timeout bounds each KV operation; 0 means defaultOwnerTimeout.
	Timeout time.Duration
	// Ready reports whether JetStream can answer now (the node is
	// current with the meta group); while it is false, puts and deletes
	// are skipped instead of waiting for Timeout. Nil means always ready.
	Ready func() bool
	// Drain bounds how long Close waits for the queued puts and deletes;
	// 0 means defaultOwnerDrain.
	Drain time.Duration
}

const (
	// defaultOwnerTimeout bounds a KV operation of owners by default.
	defaultOwnerTimeout = 10 * time.Second
	// defaultOwnerDrain bounds Close's wait for the queued operations by
	// default: Node.Close runs after the broker's Close, which may itself
	// take its 5 s budget, so the whole stop stays short.
	defaultOwnerDrain = 3 * time.Second
	// ownerWorkers is the number of goroutines putting and deleting
	// entries; a client id always goes to the same one (ownerShard), so
	// its operations run in order.
	ownerWorkers = 4
)

// errNoJetStream is the error of a put or delete skipped while
// ownerOptions.Ready reports false.
var errNoJetStream = errors.New("jetstream not current (no quorum): skipped")

// owners records this node's client ids in ClientsBucket and disconnects
// those another node took over. Its methods are safe for concurrent use.
//
// connected and disconnected only update the local state and queue the
// client id; ownerWorkers goroutines do the KV puts and deletes, so a
// client's goroutine never waits for a Raft round trip. Each worker has
// a FIFO of client ids, each id at most once in it (localOwner.queued):
// a burst of connections and disconnections of one id while its
// operation waits collapses into what its state is when the worker takes
// it (the latest put supersedes the older ones; a put whose connection
// has already ended is not made). The queues thus never hold more than
// one entry per client id known here.
type owners struct {
	o      ownerOptions
	kv     jetstream.KeyValue
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch loop ends
	// seenRev is the revision of the last entry the watch handled.
	seenRev atomic.Uint64
	// workCtx bounds the workers' KV operations; Close cancels it once
	// the drain budget is spent.
	workCtx    context.Context
	workCancel context.CancelFunc
	workers    sync.WaitGroup
	skipped    atomic.Uint64 // operations skipped without JetStream
	wake       [ownerWorkers]chan struct{}
	watchOnce  sync.Once
	closeOnce  sync.Once

	mu       sync.Mutex
	local    map[string]*localOwner // clientKey -> this node's connections of the id
	queues   [ownerWorkers][]string // client keys waiting for their worker
	draining bool                   // Close called: workers end when their queue is empty
	skipping bool                   // the last operation was skipped (logged once per outage)
}

// localOwner is what owners knows of one client id connected here.
type localOwner struct {
	id      string
	conns   int    // local connections established and not ended
	rev     uint64 // revision of this node's latest put (0: none succeeded)
	puts    int    // connections established whose put is queued or in flight
	queued  bool   // the id is in its worker's queue
	foreign uint64 // latest revision naming another node seen while puts were pending
	// since is when the latest local connection's session was
	// established (connected), the Since of this node's puts;
	// foreignSince is the Since of the foreign entry of revision foreign.
	// The later connection wins a take-over, whichever put landed last
	// (newerThan): puts leave on workers, so their order in the bucket
	// need not be the order of the connections.
	since, foreignSince time.Time
	foreignNode         string
	// kicked is set once a take-over of the current connections is
	// decided, so that they are disconnected once (a second Disconnect
	// of a client ending would race with mochi clearing its will); a new
	// connection clears it.
	kicked bool
}

// newOwners creates or binds ClientsBucket, starts watching it and starts
// the workers. Close stops them.
func newOwners(o ownerOptions) (*owners, error) {
	switch {
	case o.JS == nil:
		return nil, errors.New("client owners: no JetStream")
	case o.Node == "":
		return nil, errors.New("client owners: no node name")
	case o.Broker == nil:
		return nil, errors.New("client owners: no broker")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultOwnerTimeout
	}
	if o.Drain <= 0 {
		o.Drain = defaultOwnerDrain
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	kv, _, err := ensureBucket(ctx, o.JS, jetstream.KeyValueConfig{
		Bucket:      ClientsBucket,
		Description: "Propolis: the node of each connected client id",
		History:     1,
		Replicas:    max(o.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("client owners: %w", err)
	}
	w := &owners{o: o, kv: kv, done: make(chan struct{}), local: map[string]*localOwner{}}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.workCtx, w.workCancel = context.WithCancel(context.Background())
	for i := range w.wake {
		w.wake[i] = make(chan struct{}, 1)
		w.workers.Add(1)
		go w.work(i)
	}
	go w.watch()
	return w, nil
}

// stopWatch stops the watch and waits for it to end: no take-over is
// decided after it (Node.StopReceiving, before the broker closes).
func (w *owners) stopWatch() {
	w.watchOnce.Do(func() {
		w.cancel()
		<-w.done
	})
}

// Close stops the watch, then lets the workers finish the queued puts and
// deletes for up to ownerOptions.Drain (the deletes of the clients the
// broker's Close disconnected, mostly) and abandons the rest. Entries
// not deleted stay in the bucket until another node's put overwrites them.
func (w *owners) Close() {
	w.stopWatch()
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.draining = true
		w.mu.Unlock()
		for _, c := range w.wake {
			select {
			case c <- struct{}{}:
			default:
			}
		}
		ended := make(chan struct{})
		go func() { w.workers.Wait(); close(ended) }()
		select {
		case <-ended:
		case <-time.After(w.o.Drain):
			w.mu.Lock()
			left := 0
			for _, q := range w.queues {
				left += len(q)
			}
			w.mu.Unlock()
			w.o.Log.Warn("client owners not all recorded at shutdown", "bucket", ClientsBucket, "abandoned", left,
				"waited", w.o.Drain)
			w.workCancel()
			<-ended
		}
		w.workCancel()
	})
}

// connected records that clientID has a new local session and queues the
// put of this node's entry; the worker disconnects the client at once if
// another node's entry of a later revision was seen before the put
// returned. Called on the client's goroutine (Cluster.Connected); it
// never waits for JetStream.
func (w *owners) connected(clientID string) {
	key, err := clientKey(clientID)
	if err != nil { // refused at CONNECT (CheckClientID); never sent to NATS
		w.o.Log.Warn("client owner not recorded", "client", clientID, "error", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lo := w.local[key]
	if lo == nil {
		lo = &localOwner{id: clientID}
		w.local[key] = lo
	}
	lo.conns++
	lo.since = time.Now().UTC()
	lo.puts++
	lo.kicked = false
	w.enqueue(key, lo)
}

// disconnected records the end of a local connection of clientID; at the
// last one it queues the delete of the client id's entry, which the
// worker makes only if the entry is still the one this node put. Called
// on the client's goroutine (Cluster.Disconnected); it never waits for
// JetStream.
func (w *owners) disconnected(clientID string) {
	key, err := clientKey(clientID)
	if err != nil {
		return // never recorded (connected)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lo := w.local[key]
	if lo == nil {
		return
	}
	lo.conns--
	if lo.conns == 0 {
		w.enqueue(key, lo)
	}
}

// enqueue puts key in its worker's queue unless it is there already.
// w.mu is held.
func (w *owners) enqueue(key string, lo *localOwner) {
	if lo.queued || w.draining && w.workCtx.Err() != nil {
		return
	}
	lo.queued = true
	i := ownerShard(key)
	w.queues[i] = append(w.queues[i], key)
	select {
	case w.wake[i] <- struct{}{}:
	default:
	}
}

// ownerShard is the worker of a client key.
func ownerShard(key string) int {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % ownerWorkers)
}

// work is worker i: it takes client keys from its queue, in order, until
// Close (once its queue is empty, or at once when the drain budget is
// spent).
func (w *owners) work(i int) {
	defer w.workers.Done()
	for {
		w.mu.Lock()
		for len(w.queues[i]) == 0 {
			draining := w.draining
			w.mu.Unlock()
			if draining {
				return
			}
			select {
			case <-w.wake[i]:
			case <-w.workCtx.Done():
				return
			}
			w.mu.Lock()
		}
		if w.workCtx.Err() != nil {
			w.mu.Unlock()
			return
		}
		key := w.queues[i][0]
		w.queues[i][0] = ""
		w.queues[i] = w.queues[i][1:]
		if len(w.queues[i]) == 0 {
			w.queues[i] = nil // let the backing array go after a burst
		}
		w.handle(key) // unlocks w.mu
	}
}

// handle brings key's entry in line with the local state: a put while a
// connection waits for one, a delete once the last connection ended.
// Called with w.mu held; it unlocks it.
func (w *owners) handle(key string) {
	lo := w.local[key]
	if lo == nil {
		w.mu.Unlock()
		return
	}
	lo.queued = false
	switch {
	case lo.conns > 0 && lo.puts > 0:
		n, since := lo.puts, lo.since
		w.mu.Unlock()
		rev, err := w.put(key, since)
		w.mu.Lock()
		lo.puts -= n
		if err == nil && rev > lo.rev {
			lo.rev = rev
		}
		later := lo.puts == 0 && lo.conns > 0 && lo.foreign > lo.rev && !lo.kicked
		kick := later && newerThan(lo.foreignSince, lo.foreignNode, lo.since, w.o.Node)
		if later && !kick {
			// The other node's entry landed last but its connection is
			// the older one: put ours again, so that it sees a later
			// revision naming a newer connection and lets its client go.
			lo.puts++
		}
		lo.kicked = lo.kicked || kick
		if lo.puts == 0 || later {
			lo.foreign, lo.foreignSince, lo.foreignNode = 0, time.Time{}, ""
		}
		if lo.puts > 0 || lo.conns == 0 {
			w.enqueue(key, lo) // connected or disconnected again meanwhile
		}
		w.mu.Unlock()
		if err != nil {
			w.failed("client owner not recorded", lo.id, err)
		}
		if kick {
			w.takeOver(lo)
		}
	case lo.conns <= 0:
		// The last connection ended; a put still pending for it is
		// superseded.
		delete(w.local, key)
		rev := lo.rev
		w.mu.Unlock()
		if rev == 0 {
			return
		}
		err := w.ready()
		if err == nil {
			ctx, cancel := context.WithTimeout(w.workCtx, w.o.Timeout)
			err = w.kv.Delete(ctx, key, jetstream.LastRevision(rev))
			cancel()
		}
		// A revision mismatch: the entry is no longer ours (another node
		// took the id): it is that node's to delete.
		if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			w.failed("client owner not removed", lo.id, err)
		}
	default:
		w.mu.Unlock()
	}
}

// put writes this node's entry for key.
func (w *owners) put(key string, since time.Time) (uint64, error) {
	if err := w.ready(); err != nil {
		return 0, err
	}
	val, _ := json.Marshal(ownerEntry{Node: w.o.Node, Since: since}) // cannot fail
	ctx, cancel := context.WithTimeout(w.workCtx, w.o.Timeout)
	defer cancel()
	return w.kv.Put(ctx, key, val)
}

// ready returns errNoJetStream while ownerOptions.Ready reports false,
// logging the first skip of an outage; nil otherwise.
func (w *owners) ready() error {
	ok := w.o.Ready == nil || w.o.Ready()
	w.mu.Lock()
	first := !ok && !w.skipping
	w.skipping = !ok
	w.mu.Unlock()
	if ok {
		return nil
	}
	w.skipped.Add(1)
	if first {
		w.o.Log.Warn("client owners not recorded while jetstream is not current: take-over across nodes is off until it is",
			"bucket", ClientsBucket)
	}
	return errNoJetStream
}

// failed logs a put or delete that failed; skipped ones were logged by
// ready.
func (w *owners) failed(msg, clientID string, err error) {
	if errors.Is(err, errNoJetStream) || w.workCtx.Err() != nil {
		return
	}
	w.o.Log.Warn(msg, "client", clientID, "bucket", ClientsBucket, "error", err)
}

// watch follows ClientsBucket until Close, watching again (with the
// current entries first) whenever its watcher ends. A NATS reconnect does
// not end it: the watcher's ordered consumer resumes after the last
// revision it delivered.
func (w *owners) watch() {
	defer close(w.done)
	for {
		kw, err := w.kv.WatchAll(w.ctx)
		if err == nil {
			w.follow(kw)
			_ = kw.Stop()
		} else if w.ctx.Err() == nil {
			w.o.Log.Warn("client owners not watched", "bucket", ClientsBucket, "error", err)
		}
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(time.Second): // a NATS server that is going away
		}
	}
}

// follow handles kw's entries until kw ends or Close.
func (w *owners) follow(kw jetstream.KeyWatcher) {
	for {
		select {
		case <-w.ctx.Done():
			return
		case e, ok := <-kw.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue // the end of the current entries
			}
			if e.Operation() == jetstream.KeyValuePut {
				w.seen(e)
			}
			w.seenRev.Store(e.Revision())
		}
	}
}

// seen handles one entry of ClientsBucket: an entry naming another node,
// later than this node's own for a client id connected here, disconnects
// the local client (or does once this node's put in flight returns, if
// it is earlier).
func (w *owners) seen(e jetstream.KeyValueEntry) {
	var v ownerEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		w.o.Log.Warn("bad client owner entry", "bucket", ClientsBucket, "key", e.Key(), "revision", e.Revision(), "error", err)
		return
	}
	if v.Node == w.o.Node {
		return
	}
	w.mu.Lock()
	lo := w.local[e.Key()]
	kick := false
	switch {
	case lo == nil || lo.conns == 0:
		w.mu.Unlock()
		if id, ok := unescapeToken(e.Key()); ok {
			w.o.Broker.ClaimedElsewhere(id)
		}
		return
	case lo.kicked:
	case lo.puts > 0:
		if e.Revision() > lo.foreign {
			lo.foreign, lo.foreignSince, lo.foreignNode = e.Revision(), v.Since, v.Node
		}
	case e.Revision() <= lo.rev:
	case newerThan(v.Since, v.Node, lo.since, w.o.Node):
		kick, lo.kicked = true, true
	default:
		// A later revision for an older connection (its put left late):
		// ours is put again, and the other node lets its client go.
		lo.puts++
		w.enqueue(e.Key(), lo)
	}
	w.mu.Unlock()
	if kick {
		w.o.Log.Info("client taken over by another node", "client", lo.id, "by", v.Node)
		w.takeOver(lo)
	}
}

// newerThan reports whether the connection established at a on node an is
// later than the one established at b on node bn: the later wins a
// take-over. Equal times are ordered by node name, so that both nodes
// decide alike. Connections on different machines are ordered by their
// clocks: a skew larger than the time between two connections of one
// client id can let the older win (docs/cluster.md).
func newerThan(a time.Time, an string, b time.Time, bn string) bool {
	if !a.Equal(b) {
		return a.After(b)
	}
	return an > bn
}

// takeOver disconnects the local client of lo, unless a newer local
// connection came since the decision.
func (w *owners) takeOver(lo *localOwner) {
	// A connection established since the decision cleared kicked: it is
	// newer than the other node's and stays. (A connection replacing the
	// kicked one between this check and the Disconnect is still
	// disconnected: the broker disconnects by client id; it reconnects.)
	w.mu.Lock()
	still := lo.kicked
	w.mu.Unlock()
	if !still {
		return
	}
	if err := w.o.Broker.TakeOver(lo.id); err != nil {
		w.o.Log.Debug("client taken over not disconnected", "client", lo.id, "error", err)
	}
}

// clientKey encodes a client id as a ClientsBucket key, injectively and
// readably: the bytes A-Z, a-z, 0-9, '_' and '-' stay, every other byte
// becomes '=' and its two hex digits (upper case). Keys never contain
// '.', so a client id is one subject token. A key whose subject does not
// fit a NATS protocol line (fits) is an error wrapping ErrTooLong.
func clientKey(id string) (string, error) {
	key := escapeToken(id)
	if err := fits("client id", kvPrefix, key); err != nil {
		return "", err
	}
	return key, nil
}

// kvPrefix starts the subject of every key of ClientsBucket and
// SessionsBucket, both keyed by clientKey: the longer bucket name of the
// two, so that a client id that fits one fits both.
const kvPrefix = "$KV." + SessionsBucket + "."

// unescapeToken reverses escapeToken; ok is false for a string
// escapeToken cannot have made.
func unescapeToken(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), escapeToken(b.String()) == s
}

// escapeToken is clientKey's encoding, also used for queue group names
// (queueName): its output is made of [A-Za-z0-9_=-] only.
func escapeToken(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
