package broker

import (
	"log/slog"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
)

// Persistence is where the broker keeps what must outlive a restart:
// persistent sessions with their subscriptions and queued (in-flight)
// messages, retained messages, and pending publishes (acknowledged to their
// publisher, not yet queued for every subscriber). The hook and restore use
// nothing else; *store.Store (Pebble, one data folder) is the default, and a
// second implementation (a cluster's) can sit beside it through
// Options.Persistence. Record types are the store's.
//
// # Durable writes
//
// Every write takes a durable flag. durable=true asks that the write survive
// a crash of the machine once the call returns: the broker sets it where it
// has promised, or is about to promise, something to a client (a pending
// publish before its PUBACK/PUBREC, a subscription before its SUBACK, a
// session once it is established) and at restore. durable=false may be lost by a power loss or an
// operating-system crash, never by a clean Close. How strong "survive" is
// belongs to the implementation: *store.Store fsyncs durable writes only in
// its sync mode (concurrent durable writes share one fsync), and syncs
// periodically or not at all in the other modes.
//
// # Calls
//
// An implementation must be safe for concurrent use: the broker calls it from
// many goroutines at once, on the hot path of QoS 1/2 messages, and waits for
// each call. A write that returned must be seen by a later Load of the same
// data, and writes to one record apply in the order they were made. Deleting
// a missing record is not an error. An error is logged once by the broker,
// which carries on (a failed PutPending also refuses the PUBLISH); during
// restore an error fails New.
//
// An implementation that runs out of room returns an error wrapping
// store.ErrDiskFull, having written nothing: the broker then refuses the
// PUBLISH with 0x97 (quota exceeded) rather than 0x80, refuses a
// SUBSCRIBE's filter, logs the refusal at Debug only, and keeps the
// pending record of a message whose new copy PutInflight refused. If it
// also has a method Space() store.Space, Server.StoreHealth reports it.
//
// Who calls what, on which goroutine:
//
//   - Load: once, from New on the caller's goroutine, before any client can
//     connect (restore).
//   - PutSession: on the client's goroutine when a persistent session is
//     established and when its connection ends (DisconnectedAt set); from New
//     when a crash will is recorded as sent; from any goroutine when a
//     session that ends with its connection gets its first attribute
//     (SessionAttributes).
//   - DeleteSession: on the client's goroutine at a clean start or when a
//     session ends with its connection; on mochi's event loop when a session
//     expires; from New for a session that expired while the broker was down;
//     from any goroutine through Clients.InvalidateSession.
//     It removes the session's subscriptions, in-flight messages and
//     attributes too, atomically with respect to the Attribute* writes.
//   - PutSubscription: on the subscribing client's goroutine, before the SUBACK.
//   - DeleteSubscription: on the client's goroutine (UNSUBSCRIBE, or a
//     subscription of a resumed session its new owner may not have).
//   - PutInflight: on the goroutine that queues a message for a persistent
//     session: the publisher's during fan-out, the subscriber's on a resend.
//   - DeleteInflight: on the subscriber's goroutine at its PUBACK/PUBCOMP or
//     when a resumed session loses a subscription; on mochi's event loop
//     when a queued message expires.
//   - PutRetained: on the publisher's goroutine.
//   - DeleteRetained: on the publisher's goroutine (an empty retained
//     message), on mochi's event loop (expiry), from New (expired at restore).
//   - PutPending: on the publisher's goroutine, durable, before the
//     PUBACK/PUBREC; seq is the message's ordering key (Created).
//   - DeletePending: on the publisher's goroutine once the message is queued
//     for every subscriber; from New after re-publishing it.
//   - AttributeGet, AttributePut, AttributePutIfNewer, AttributeDelete,
//     AttributeList: from any goroutine (the SessionAttributes service). A
//     write for a client id without a session record fails with
//     store.ErrNoSession; PutIfNewer compares and writes atomically.
//     Not called while Options.Attributes is in force (AttributeStore).
//   - ExtensionGet, ExtensionPut, ExtensionDelete, ExtensionKeysAfter: from
//     any goroutine (the ExtensionStore service), each extension id in its
//     own key range.
//   - Dir: names where the records live, for log lines and errors; it must
//     work after Close.
//   - Close: once, from Server.Close after every client's session was saved
//     (or after five seconds), or from New when it fails. Later calls to
//     the other methods may fail.
type Persistence interface {
	Load() (*store.Snapshot, error)
	PutSession(sess *store.Session, durable bool) error
	DeleteSession(clientID string, durable bool) error
	PutSubscription(sub *store.Subscription, durable bool) error
	DeleteSubscription(clientID, filter string, durable bool) error
	PutInflight(m *store.Message, durable bool) error
	DeleteInflight(clientID string, packetID uint16, durable bool) error
	PutRetained(m *store.Message, durable bool) error
	DeleteRetained(topic string, durable bool) error
	PutPending(seq uint64, m *store.Message, durable bool) error
	DeletePending(seq uint64, durable bool) error
	AttributeGet(clientID, key string) (store.Attribute, bool, error)
	AttributePut(clientID string, a store.Attribute, durable bool) error
	AttributePutIfNewer(clientID string, a store.Attribute, orEqual, durable bool) (prev store.Attribute, had, replaced bool, err error)
	AttributeDelete(clientID, key string, durable bool) error
	AttributeList(clientID string) ([]store.Attribute, error)
	ExtensionGet(ext, key string) ([]byte, bool, error)
	ExtensionPut(ext, key string, value []byte, durable bool) error
	ExtensionDelete(ext, key string, durable bool) error
	ExtensionKeysAfter(ext, prefix, after string, limit int) ([]string, bool, error)
	Dir() string
	Close() error
}

// The Pebble store is the default Persistence.
var _ Persistence = (*store.Store)(nil)

// openStore opens the Pebble store the configuration names (data_dir,
// durability, store.min_free_space: 0 there turns the guard off),
// repairing a damaged write-ahead log when repair is set. New calls it
// when Options.Persistence is nil; a migration of an older data folder
// happens here. timings receives the store's write and fsync durations.
func openStore(cfg *config.Config, repair bool, log *slog.Logger, timings store.Timings) (*store.Store, error) {
	mode, err := store.ParseDurability(cfg.Durability.Mode)
	if err != nil {
		return nil, err
	}
	minFree := int64(cfg.Store.MinFreeSpace)
	if minFree == 0 {
		minFree = -1
	}
	return store.Open(store.Options{
		Dir:           cfg.DataDir,
		Durability:    mode,
		FlushInterval: time.Duration(cfg.Durability.FlushInterval),
		Logger:        log,
		Repair:        repair,
		MinFreeSpace:  minFree,
		Timings:       timings,
	})
}

// AttributeStore keeps session attributes apart from Persistence: a
// cluster's store, shared by every node, so that a session's attributes
// and its put_if_newer hold cluster-wide (Options.Attributes). Its first
// five methods are Persistence's attribute methods, with their rules
// (safe for concurrent use, called from any goroutine, PutIfNewer compares
// and writes atomically: of two writers at once, an older time never
// replaces a newer one), except that it keeps no session records: the
// broker checks that the session exists before each call (the
// SessionAttributes service) and ends its attributes with the session
// (AttributeDeleteAll), so a write never fails with store.ErrNoSession.
// Errors name the operation, the client id and the key.
//
// Who calls what, on which goroutine:
//
//   - AttributeGet, AttributePut, AttributePutIfNewer, AttributeDelete,
//     AttributeList: from any goroutine (the SessionAttributes service),
//     only while AttributeGate reports true if the store implements it.
//   - AttributeDeleteAll: whenever a session of clientID ends or a new one
//     starts, whatever AttributeGate reports (attributes written while it
//     was true must not outlive their session): on the client's goroutine
//     at a clean start (every CONNECT that starts a new session, whether
//     or not this node held one) and when a session ends with its
//     connection; on mochi's event loop when a session expires; from New
//     for a session that expired while the broker was down; from any
//     goroutine through Clients.InvalidateSession. It blocks that goroutine
//     for one round trip to the store.
type AttributeStore interface {
	AttributeGet(clientID, key string) (store.Attribute, bool, error)
	AttributePut(clientID string, a store.Attribute, durable bool) error
	AttributePutIfNewer(clientID string, a store.Attribute, orEqual, durable bool) (prev store.Attribute, had, replaced bool, err error)
	AttributeDelete(clientID, key string, durable bool) error
	AttributeList(clientID string) ([]store.Attribute, error)
	// AttributeDeleteAll removes every attribute of clientID; none is
	// not an error.
	AttributeDeleteAll(clientID string) error
}

// AttributeGate is the optional method of an AttributeStore that is in
// force only at times: a cluster's, while every node speaks the cluster
// protocol that carries it. The broker asks it before each read or write
// of the SessionAttributes service: false sends the call to Persistence,
// exactly as without Options.Attributes. Attributes written on one side
// are not seen from the other: when the gate opens, attributes a live
// session had in Persistence stay there (and end with the session) but
// are no longer read. It is called often and must not block.
type AttributeGate interface {
	AttributesOn() bool
}

// localAttributes is Persistence as an AttributeStore: where attributes
// live without Options.Attributes, or while its gate is closed.
type localAttributes struct{ Persistence }

var _ AttributeStore = localAttributes{}

// AttributeDeleteAll deletes each attribute of clientID. The broker never
// calls it on Persistence, whose DeleteSession removes the attributes
// with the session; it is here to make localAttributes an AttributeStore.
func (l localAttributes) AttributeDeleteAll(clientID string) error {
	list, err := l.AttributeList(clientID)
	if err != nil {
		return err
	}
	for _, a := range list {
		if err := l.AttributeDelete(clientID, a.Key, true); err != nil {
			return err
		}
	}
	return nil
}
