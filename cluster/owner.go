package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
}

// defaultOwnerTimeout bounds a KV operation of owners by default.
const defaultOwnerTimeout = 10 * time.Second

// owners records this node's client ids in ClientsBucket and disconnects
// those another node took over. Its methods are safe for concurrent use.
type owners struct {
	o      ownerOptions
	kv     jetstream.KeyValue
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the watch loop ends
	// seenRev is the revision of the last entry the watch handled.
	seenRev atomic.Uint64

	mu    sync.Mutex
	local map[string]*localOwner // clientKey -> this node's connections of the id
}

// localOwner is what owners knows of one client id connected here.
type localOwner struct {
	id      string
	conns   int    // local connections established and not ended
	rev     uint64 // revision of this node's latest put (0: none succeeded)
	puts    int    // puts in flight
	foreign uint64 // latest revision naming another node seen while puts were in flight
	// kicked is set once a take-over of the current connections is
	// decided, so that they are disconnected once (a second Disconnect
	// of a client ending would race with mochi clearing its will); a new
	// connection clears it.
	kicked bool
}

// newOwners creates or binds ClientsBucket and starts watching it. Close
// stops the watch.
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
	go w.watch()
	return w, nil
}

// Close stops the watch and waits for it to end. Entries of clients still
// connected here stay in the bucket.
func (w *owners) Close() {
	w.cancel()
	<-w.done
}

// connected records that clientID has a new local session: this node puts
// its entry, and disconnects the client at once if another node's entry
// of a later revision was seen while the put was in flight. Called on the
// client's goroutine (Cluster.Connected); it blocks for one KV put.
func (w *owners) connected(clientID string) {
	key, err := clientKey(clientID)
	if err != nil { // refused at CONNECT (CheckClientID); never sent to NATS
		w.o.Log.Warn("client owner not recorded", "client", clientID, "error", err)
		return
	}
	w.mu.Lock()
	lo := w.local[key]
	if lo == nil {
		lo = &localOwner{id: clientID}
		w.local[key] = lo
	}
	lo.conns++
	lo.puts++
	lo.kicked = false
	w.mu.Unlock()

	val, _ := json.Marshal(ownerEntry{Node: w.o.Node, Since: time.Now().UTC()}) // cannot fail
	ctx, cancel := context.WithTimeout(w.ctx, w.o.Timeout)
	rev, err := w.kv.Put(ctx, key, val)
	cancel()
	if err != nil {
		w.o.Log.Warn("client owner not recorded", "client", clientID, "bucket", ClientsBucket, "error", err)
	}

	w.mu.Lock()
	lo.puts--
	if err == nil && rev > lo.rev {
		lo.rev = rev
	}
	kick := lo.puts == 0 && lo.conns > 0 && lo.foreign > lo.rev && !lo.kicked
	lo.kicked = lo.kicked || kick
	if lo.puts == 0 {
		lo.foreign = 0
	}
	w.mu.Unlock()
	if kick {
		w.takeOver(clientID)
	}
}

// disconnected records the end of a local connection of clientID; at the
// last one the node deletes the client id's entry if it is still the one
// this node put. Called on the client's goroutine (Cluster.Disconnected);
// it blocks for one KV delete.
func (w *owners) disconnected(clientID string) {
	key, err := clientKey(clientID)
	if err != nil {
		return // never recorded (connected)
	}
	w.mu.Lock()
	lo := w.local[key]
	if lo == nil {
		w.mu.Unlock()
		return
	}
	lo.conns--
	if lo.conns > 0 || lo.puts > 0 {
		w.mu.Unlock()
		return
	}
	delete(w.local, key)
	rev := lo.rev
	w.mu.Unlock()
	if rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, w.o.Timeout)
	defer cancel()
	err = w.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// A revision mismatch: the entry is no longer ours (another node took
		// the id): it is that node's to delete.
		w.o.Log.Warn("client owner not removed", "client", clientID, "bucket", ClientsBucket, "error", err)
	}
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
	case lo == nil || lo.conns == 0 || lo.kicked:
	case lo.puts > 0:
		lo.foreign = max(lo.foreign, e.Revision())
	default:
		kick = e.Revision() > lo.rev
		lo.kicked = kick
	}
	w.mu.Unlock()
	if kick {
		w.o.Log.Info("client taken over by another node", "client", lo.id, "node", v.Node)
		w.takeOver(lo.id)
	}
}

// takeOver disconnects the local client of clientID.
func (w *owners) takeOver(clientID string) {
	if err := w.o.Broker.TakeOver(clientID); err != nil {
		w.o.Log.Debug("client taken over not disconnected", "client", clientID, "error", err)
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

// kvPrefix starts the subject of every key of ClientsBucket.
const kvPrefix = "$KV." + ClientsBucket + "."

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
