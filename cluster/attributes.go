package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/store"
)

// Session attributes across nodes (docs/cluster.md, "Session attributes
// across nodes").
//
// Bucket AttributesBucket holds one key per attribute:
// "<clientKey>.<escapeToken(attribute key)>", both tokens from owner.go's
// encoding (injective, without '.'), so a client's attributes are exactly
// the keys under "<clientKey>.>". A value is the attribute's time and
// bytes (encodeAttribute). Reads ask the stream's leader (get): a KV Get
// is a direct get, which a replica behind the leader may answer with an
// older value, or nobody yet right after the bucket is made.
// put_if_newer reads the key, compares the times and writes with a
// compare-and-set on the revision it read (Create when there is none,
// Update(revision) otherwise, a delete marker's revision included); a
// conflict means another
// writer came between, so it reads and compares again, at most
// attributeTries times. Of two nodes writing at once, the later time thus
// wins whatever the order in which the writes reach the stream, and the
// previous value a caller gets back is the one its write replaced (or,
// when it did not write, the newer one that won).
//
// The bucket is created on first use, with the replicas in force then,
// and only while the gate is open (protocol 2 on every alive node): a
// cluster of protocol-1 nodes never sees it.

// AttributesBucket is the KV bucket of session attributes.
const AttributesBucket = "PROPOLIS_ATTRIBUTES"

const (
	// attributeTries bounds put_if_newer's read-compare-write rounds
	// against concurrent writers of the same key.
	attributeTries = 16
	// attributeTimeout bounds one store call (every round of it), after
	// the bucket is bound.
	attributeTimeout = 5 * time.Second
	// attributeBind bounds the binding (or creation) of the bucket.
	attributeBind = 15 * time.Second
	// attributeBackoff bounds the random pause before a put_if_newer
	// round after a conflict: a replicated stream also refuses a
	// compare-and-set while another write of the key is being
	// replicated, so an immediate retry would mostly conflict again.
	attributeBackoff = 20 * time.Millisecond
	// attributeVersion is the first byte of an encoded value.
	attributeVersion = 1
)

// attrKVPrefix starts the subject of every key of AttributesBucket.
const attrKVPrefix = "$KV." + AttributesBucket + "."

// attributes is the cluster's broker.AttributeStore on AttributesBucket.
// Its methods are safe for concurrent use.
type attributes struct {
	js       jetstream.JetStream
	replicas func() int  // the replication factor in force, for the creation
	on       func() bool // the gate; nil: always open

	mu     sync.Mutex
	kv     jetstream.KeyValue    // nil until first bound
	stream jetstream.Stream      // the bucket's stream, bound with kv
	leader nats.JetStreamContext // for leader reads (get), bound with kv
}

var (
	_ broker.AttributeStore = (*attributes)(nil)
	_ broker.AttributeGate  = (*attributes)(nil)
)

// newAttributes returns the store on js; the bucket is bound on first
// use. replicas gives the replicas the bucket is created with; on is the
// gate (nil: always open).
func newAttributes(js jetstream.JetStream, replicas func() int, on func() bool) *attributes {
	return &attributes{js: js, replicas: replicas, on: on}
}

// Attributes returns this node's store of session attributes, for
// broker.Options.Attributes: AttributesBucket, shared by every node. Its
// gate (AttributesOn) is open while every alive node speaks protocol 2
// (the replicated-sessions feature), asked at each call, so a rolling
// upgrade switches it on once the last old node is gone; while it is
// closed the broker keeps attributes in its own store, as a single node
// does. `propolis serve` passes it when the configuration has a cluster
// section. Every call returns the same store, which the node's session
// sweep also uses to delete the attributes of the sessions it expires.
func (n *Node) Attributes() broker.AttributeStore { return n.attributeStore() }

// attributeStore returns the node's one store of session attributes.
func (n *Node) attributeStore() *attributes {
	n.attrsOnce.Do(func() { n.attrs = newAttributes(n.jsx, n.Replicas, n.attributesOn) })
	return n.attrs
}

// attributesOn reports whether session attributes go to the cluster: the
// replicated-sessions feature, protocol 2, on every alive node.
func (n *Node) attributesOn() bool { return n.FeatureOn(FeatureSessions) }

// AttributesOn implements broker.AttributeGate.
func (a *attributes) AttributesOn() bool { return a.on == nil || a.on() }

// bucket returns the bucket, binding (creating) it when create is set;
// without create it returns nil when the bucket was never bound here.
// Binding costs a few JetStream requests, once, within attributeBind
// (nodes creating the bucket at the same moment take seconds: see
// ensure.go); the calls arriving meanwhile wait for it.
func (a *attributes) bucket(create bool) (jetstream.KeyValue, error) {
	kv, _, err := a.bind(create)
	return kv, err
}

// bind is bucket, also returning the bucket's stream (for purges).
func (a *attributes) bind(create bool) (jetstream.KeyValue, jetstream.Stream, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kv != nil || !create {
		return a.kv, a.stream, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), attributeBind)
	defer cancel()
	kv, _, err := ensureBucket(ctx, a.js, jetstream.KeyValueConfig{
		Bucket:      AttributesBucket,
		Description: "Propolis: session attributes, per client id and key",
		History:     1,
		Replicas:    max(a.replicas(), 1),
	})
	if err != nil {
		return nil, nil, err
	}
	// Another node may have just created it: this node's view of the
	// stream may lag the bucket's (retried as the creation is).
	var st jetstream.Stream
	err = ensure(ctx, "stream "+kvStreamPrefix+AttributesBucket, func(ctx context.Context) (err error) {
		st, err = a.js.Stream(ctx, kvStreamPrefix+AttributesBucket)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	leader, err := a.js.Conn().JetStream()
	if err != nil {
		return nil, nil, err
	}
	a.kv, a.stream, a.leader = kv, st, leader
	return kv, st, nil
}

// attributeKey is the bucket key of attribute key of clientID; an error
// names both when the key is empty or too long for NATS (ErrTooLong).
func attributeKey(clientID, key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("attribute of %q: empty key", clientID)
	}
	ck := escapeToken(clientID)
	k := ck + "." + escapeToken(key)
	if err := fits(fmt.Sprintf("attribute %q of %q", key, clientID), attrKVPrefix, k); err != nil {
		return "", err
	}
	return k, nil
}

// clientAttributes is the filter of every key of clientID's attributes.
func clientAttributes(clientID string) (string, error) {
	f := escapeToken(clientID) + ".>"
	if err := fits(fmt.Sprintf("attributes of %q", clientID), attrKVPrefix, f); err != nil {
		return "", err
	}
	return f, nil
}

// encodeAttribute is the bucket value of a: the version byte, the time
// (Unix nanoseconds, 8 bytes big-endian), the key's length (uvarint) and
// bytes, then the value.
func encodeAttribute(a store.Attribute) []byte {
	b := make([]byte, 0, 1+8+binary.MaxVarintLen64+len(a.Key)+len(a.Value))
	b = append(b, attributeVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Time))
	b = binary.AppendUvarint(b, uint64(len(a.Key)))
	b = append(b, a.Key...)
	return append(b, a.Value...)
}

// decodeAttribute is encodeAttribute's inverse; the error says what is
// wrong with b (the caller names the client and key).
func decodeAttribute(b []byte) (store.Attribute, error) {
	if len(b) < 1+8+1 {
		return store.Attribute{}, fmt.Errorf("value of %d bytes, at least 10 expected", len(b))
	}
	if b[0] != attributeVersion {
		return store.Attribute{}, fmt.Errorf("value version %d, this node reads %d", b[0], attributeVersion)
	}
	t := int64(binary.BigEndian.Uint64(b[1:9]))
	n, w := binary.Uvarint(b[9:])
	if w <= 0 || uint64(len(b)-9-w) < n {
		return store.Attribute{}, errors.New("value with a bad key length")
	}
	rest := b[9+w:]
	return store.Attribute{Key: string(rest[:n]), Value: append([]byte{}, rest[n:]...), Time: t}, nil
}

// AttributeGet implements broker.AttributeStore.
func (a *attributes) AttributeGet(clientID, key string) (store.Attribute, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), attributeTimeout)
	defer cancel()
	at, _, found, err := a.get(ctx, clientID, key)
	if err != nil {
		return store.Attribute{}, false, fmt.Errorf("get attribute %q of %q: %w", key, clientID, err)
	}
	return at, found, nil
}

// get reads one attribute from the stream's leader. rev is the revision
// of the key's last message (0 when it has none), found is false when
// there is none or it is a delete marker.
func (a *attributes) get(ctx context.Context, clientID, key string) (at store.Attribute, rev uint64, found bool, err error) {
	k, err := attributeKey(clientID, key)
	if err != nil {
		return at, 0, false, err
	}
	if _, err := a.bucket(true); err != nil {
		return at, 0, false, err
	}
	a.mu.Lock()
	leader := a.leader
	a.mu.Unlock()
	m, err := leader.GetLastMsg(kvStreamPrefix+AttributesBucket, attrKVPrefix+k, nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) {
		return at, 0, false, nil
	}
	if err != nil {
		return at, 0, false, fmt.Errorf("%s %s: %w", AttributesBucket, k, err)
	}
	if op := m.Header.Get(kvOperation); op == "DEL" || op == "PURGE" {
		return at, m.Sequence, false, nil
	}
	at, err = decodeAttribute(m.Data)
	if err != nil {
		return at, 0, false, fmt.Errorf("%s %s revision %d: %w", AttributesBucket, k, m.Sequence, err)
	}
	return at, m.Sequence, true, nil
}

// kvOperation is the header JetStream's KV puts on a delete or purge
// marker ("DEL", "PURGE").
const kvOperation = "KV-Operation"

// AttributePut implements broker.AttributeStore: the value replaces the
// earlier one whatever its time (durable is JetStream's: a write
// returns once stored on a quorum of the replicas).
func (a *attributes) AttributePut(clientID string, at store.Attribute, durable bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), attributeTimeout)
	defer cancel()
	if err := a.put(ctx, clientID, at); err != nil {
		return fmt.Errorf("put attribute %q of %q: %w", at.Key, clientID, err)
	}
	return nil
}

// put writes at unconditionally.
func (a *attributes) put(ctx context.Context, clientID string, at store.Attribute) error {
	k, err := attributeKey(clientID, at.Key)
	if err != nil {
		return err
	}
	kv, err := a.bucket(true)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, k, encodeAttribute(at)); err != nil {
		return fmt.Errorf("%s %s: %w", AttributesBucket, k, err)
	}
	return nil
}

// errAttributeContended is wrapped by put_if_newer's error when every one
// of its attributeTries rounds met another writer.
var errAttributeContended = errors.New("other writers changed it at each attempt")

// AttributePutIfNewer implements broker.AttributeStore, by compare-and-set
// on the key's revision (see the top of this file).
func (a *attributes) AttributePutIfNewer(clientID string, at store.Attribute, orEqual, durable bool) (prev store.Attribute, had, replaced bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), attributeTimeout)
	defer cancel()
	prev, had, replaced, err = a.putIfNewer(ctx, clientID, at, orEqual)
	if err != nil {
		return store.Attribute{}, false, false, fmt.Errorf("put attribute %q of %q if newer: %w", at.Key, clientID, err)
	}
	return prev, had, replaced, nil
}

// putIfNewer is AttributePutIfNewer's loop.
func (a *attributes) putIfNewer(ctx context.Context, clientID string, at store.Attribute, orEqual bool) (prev store.Attribute, had, replaced bool, err error) {
	k, err := attributeKey(clientID, at.Key)
	if err != nil {
		return prev, false, false, err
	}
	kv, err := a.bucket(true)
	if err != nil {
		return prev, false, false, err
	}
	value := encodeAttribute(at)
	for try := range attributeTries {
		if try > 0 {
			select {
			case <-time.After(rand.N(attributeBackoff) + time.Millisecond):
			case <-ctx.Done():
				return store.Attribute{}, false, false, fmt.Errorf("%s %s: %w", AttributesBucket, k, ctx.Err())
			}
		}
		var rev uint64
		prev, rev, had, err = a.get(ctx, clientID, at.Key)
		if err != nil {
			return store.Attribute{}, false, false, err
		}
		if had && (at.Time < prev.Time || (at.Time == prev.Time && !orEqual)) {
			return prev, true, false, nil
		}
		if rev > 0 {
			_, err = kv.Update(ctx, k, value, rev)
		} else {
			_, err = kv.Create(ctx, k, value)
		}
		switch {
		case err == nil:
			return prev, had, true, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another writer came between the read and the write
		default:
			return store.Attribute{}, false, false, fmt.Errorf("%s %s: %w", AttributesBucket, k, err)
		}
	}
	return store.Attribute{}, false, false, fmt.Errorf("%s %s: %w (%d attempts)", AttributesBucket, k, errAttributeContended, attributeTries)
}

// AttributeDelete implements broker.AttributeStore.
func (a *attributes) AttributeDelete(clientID, key string, durable bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), attributeTimeout)
	defer cancel()
	k, err := attributeKey(clientID, key)
	if err == nil {
		var kv jetstream.KeyValue
		if kv, err = a.bucket(true); err == nil {
			if err = kv.Purge(ctx, k); err != nil {
				err = fmt.Errorf("%s %s: %w", AttributesBucket, k, err)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("delete attribute %q of %q: %w", key, clientID, err)
	}
	return nil
}

// AttributeList implements broker.AttributeStore: every attribute of
// clientID, sorted by key (nil when there is none). It reads the last
// value of each key with an ordered consumer on the client's keys.
func (a *attributes) AttributeList(clientID string) ([]store.Attribute, error) {
	ctx, cancel := context.WithTimeout(context.Background(), attributeTimeout)
	defer cancel()
	list, err := a.list(ctx, clientID)
	if err != nil {
		return nil, fmt.Errorf("list attributes of %q: %w", clientID, err)
	}
	return list, nil
}

// list is AttributeList's reading.
func (a *attributes) list(ctx context.Context, clientID string) ([]store.Attribute, error) {
	filter, err := clientAttributes(clientID)
	if err != nil {
		return nil, err
	}
	kv, err := a.bucket(true)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", AttributesBucket, filter, err)
	}
	defer func() { _ = w.Stop() }()
	var out []store.Attribute
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("%s %s: watch closed", AttributesBucket, filter)
			}
			if e == nil { // the initial values are all in
				sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
				return out, nil
			}
			at, err := decodeAttribute(e.Value())
			if err != nil {
				return nil, fmt.Errorf("%s %s revision %d: %w", AttributesBucket, e.Key(), e.Revision(), err)
			}
			if want := escapeToken(clientID) + "." + escapeToken(at.Key); want != e.Key() {
				return nil, fmt.Errorf("%s %s revision %d: value names key %q, stored under another", AttributesBucket, e.Key(), e.Revision(), at.Key)
			}
			out = append(out, at)
		case <-ctx.Done():
			return nil, fmt.Errorf("%s %s: %w", AttributesBucket, filter, ctx.Err())
		}
	}
}

// AttributeDeleteAll implements broker.AttributeStore: one purge of the
// client's keys from the bucket's stream. It asks nothing of JetStream
// while the gate is closed and the bucket was never used by this node
// (nothing of the session can be there from here), so a cluster of
// protocol-1 nodes pays nothing for it.
func (a *attributes) AttributeDeleteAll(clientID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), attributeTimeout)
	defer cancel()
	filter, err := clientAttributes(clientID)
	if err == nil {
		err = a.purge(ctx, filter)
	}
	if err != nil {
		return fmt.Errorf("delete attributes of %q: %w", clientID, err)
	}
	return nil
}

// purge removes every message of the bucket's stream under filter.
func (a *attributes) purge(ctx context.Context, filter string) error {
	_, s, err := a.bind(a.AttributesOn())
	if err != nil || s == nil {
		return err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(attrKVPrefix+filter)); err != nil {
		return fmt.Errorf("%s %s: %w", AttributesBucket, filter, err)
	}
	return nil
}
