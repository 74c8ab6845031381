package broker

import (
	"errors"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
)

// This file declares the services the broker offers to the extension host
// (host services of ABI minor versions to come): one small interface per
// job, all implemented by *Server (svc_*.go) and gathered in Services.
// cmd/propolis hands the Server to the host once both exist.
//
// Every method is safe for concurrent use from any goroutine once New has
// returned, including extension callbacks, which run on client goroutines
// (a client may act on itself: Disconnect its own id, Publish to a topic it
// subscribes to). No method holds a broker lock while it waits on the
// network or the disk. Calls after Close are not supported: they fail or
// act on memory that is no longer saved.
//
// A client id names one session: the connected client of that id, or the
// offline persistent session the broker keeps for it (restored at start-up
// or left by a disconnect). A call racing a reconnect of the same id may act
// on the session before or after the take-over.

// Errors of the services. Each method wraps them with what it was doing;
// test with errors.Is.
var (
	// ErrNoSession: no connected client and no stored session has this
	// client id.
	ErrNoSession = errors.New("no session")
	// ErrNotConnected: the session exists but its client is offline.
	ErrNotConnected = errors.New("client not connected")
	// ErrInvalidArgument: a topic, filter, QoS, reason code, key or value
	// the method refuses; the wrapping message says which and why.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTooLarge: a write beyond a documented size limit (the wrapping
	// message says which); nothing changed.
	ErrTooLarge = errors.New("too large")
	// ErrNotSubscribed: PublishTo found no subscription of the client that
	// matches the message's topic; nothing was sent.
	ErrNotSubscribed = errors.New("client not subscribed to the topic")
)

// Services is everything the broker offers the extension host. *Server
// implements it.
type Services interface {
	Clients
	Subscriptions
	RetainedMessages
	Publisher
	SessionAttributes
	ConnectionAttributes
	ExtensionStore
}

var _ Services = (*Server)(nil)

// ClientInfo describes one session, connected or offline.
type ClientInfo struct {
	ClientID string
	Username string
	// Connected is true while the client's network connection is open.
	Connected bool
	// ConnectedSince is when the connection was accepted (CONNECT
	// authenticated); zero while offline.
	ConnectedSince time.Time
	// ProtocolVersion is 3 (3.1), 4 (3.1.1) or 5. A session restored at
	// start-up reads 5 until its client reconnects: the broker holds
	// restored sessions as MQTT 5 sessions.
	ProtocolVersion byte
	// Listener is the name of the listener the client connected through;
	// RemoteAddr its address (the last one, for an offline session).
	Listener   string
	RemoteAddr string
	// SessionExpiry is how long, in seconds, the session outlives its
	// connection: 0 for one that ends with it. A 3.1.1 persistent session
	// has mqtt.max_session_expiry unless its expiry was set
	// (SetSessionExpiry, the authenticator's ClientSettings.SessionExpiry);
	// an offline session counts it from when it went offline, a restored
	// one too (before the restart).
	SessionExpiry uint32
	// ExpiresAt is when an offline session will be removed; zero while
	// connected.
	ExpiresAt time.Time
	// ReceiveMaximum is how many QoS 1/2 PUBLISH packets the client may
	// have unacknowledged towards the broker (mqtt.receive_maximum, or the
	// authenticator's ClientSettings.ReceiveMaximum).
	ReceiveMaximum uint16
	// InflightWindow is how many QoS 1/2 messages the broker sends the
	// client before waiting for acknowledgements: the client's own Receive
	// Maximum; 0 means no limit (MQTT 3.1.1).
	InflightWindow uint16
	// Queued is how many QoS 1/2 messages the session holds, in flight or
	// waiting; MaxQueued is its cap (mqtt.max_queued_messages, or the
	// authenticator's ClientSettings.MaxQueued), beyond which new messages
	// for it are dropped.
	Queued    int
	MaxQueued int
	// KeepAlive is the keepalive in effect, in seconds, as granted at the
	// CONNECT (the client's, or the authenticator's, capped by
	// mqtt.max_keepalive); for an offline session, its last connection's;
	// 0 for a session restored at start-up until its client reconnects
	// (Restored: the store keeps no keepalive).
	KeepAlive uint16
	// Restored says that the session was restored at start-up and its
	// client has not connected since: KeepAlive and AuthenticatedBy are
	// unknown (zero), as the store does not keep them.
	Restored bool
	// OfflineSince is when the session went offline (for a session
	// restored at start-up, the time stored with it); zero while connected.
	OfflineSince time.Time
	// QueueFullPolicy says what happens to a QoS 1/2 message for the
	// session when Queued has reached MaxQueued: mqtt.queue_full_policy
	// ("drop-new": the new message is dropped).
	QueueFullPolicy string
	// AuthenticatedBy is the id of the extension whose decision accepted
	// the session's last CONNECT (AuthResult.DecidedBy); "" for a session
	// restored at start-up until its client reconnects, or when the
	// authenticator named none.
	AuthenticatedBy string
}

// Clients looks sessions up and ends them. Safe for concurrent use from any
// goroutine (see the top of this file). Implemented in svc_clients.go.
type Clients interface {
	// Client describes the session of clientID; false when there is none.
	// It reads memory only and does not block.
	Client(clientID string) (ClientInfo, bool)

	// Disconnect closes the connection of clientID with reason code code (a
	// DISCONNECT reason code a server may send, 0x80 or above: 0x80, 0x81,
	// 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x93, 0x94, 0x95, 0x96,
	// 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1 or
	// 0xA2). An MQTT 5 client is sent a DISCONNECT with the code and reason
	// (at most 65,535 bytes of UTF-8); a 3.1.1 client, which has no such
	// packet, is just disconnected. With preventWill the client's will is
	// not published; without, it is, as after any disconnection by the
	// server. The session stays, offline or ended by its expiry as usual,
	// and the EventListener hears a server disconnect with the code (for an
	// MQTT 5 client that closes its side the instant the DISCONNECT
	// arrives, rarely a lost connection: mochi writes the packet before it
	// records why the connection stops).
	//
	// It blocks until the DISCONNECT is written (at most 5 seconds: a
	// client that does not read is cut off) and the connection closed; the
	// client's goroutine then ends the connection (will, lifecycle event,
	// session saved or removed). Errors: ErrNoSession, ErrNotConnected (an offline
	// session), ErrInvalidArgument (code or reason).
	Disconnect(clientID string, code byte, reason string, preventWill bool) error

	// InvalidateSession ends the session of clientID now: a connected
	// client is disconnected (MQTT 5: reason 0x98, administrative action;
	// its will is published as after any disconnection by the server), and
	// the session is removed from memory and from the store with everything
	// it owns (subscriptions, queued messages, session attributes). A new
	// connection that resumes the session while it is being removed is
	// disconnected and loses it too, as if it had connected first; one
	// that starts a new session keeps it. It blocks for the DISCONNECT
	// write (as Disconnect) and one store write (an fsync in sync mode)
	// per connection it ends. Errors: ErrNoSession; a store error, after
	// the session is gone from memory (the store may then bring it back at
	// the next start); an error when new connections resumed the session
	// at each of 8 attempts.
	InvalidateSession(clientID string) error

	// SetSessionExpiry sets how long, in seconds, the session of clientID
	// outlives its connection, capped by mqtt.max_session_expiry, and
	// returns the value in effect. It replaces what the client asked for in
	// its CONNECT; an MQTT 5 client may still change it in its DISCONNECT,
	// as the protocol allows. It takes effect on the live session:
	//   - connected: when the connection ends, 0 ends the session with it
	//     and any other value keeps it offline that long (an MQTT 3.1.1
	//     client's clean-session flag follows: 0 is a clean session);
	//   - offline: the expiry counts from when the client went offline; a
	//     session whose new expiry has already run out (0 included) is
	//     removed at once, as if it had expired, with everything it owns.
	// A stored session record is rewritten, so that a restart honours the
	// new value; a connected session that becomes persistent is stored at
	// once with its subscriptions. It blocks for the store writes (one
	// fsync in sync mode). Errors:
	// ErrNoSession; a store error, with the new expiry in effect in memory.
	SetSessionExpiry(clientID string, seconds uint32) (uint32, error)

	// SetInflightWindow sets how many QoS 1 and 2 messages the broker
	// sends the connected client clientID before it waits for
	// acknowledgements, from 1 to 65,535, capped by the Receive Maximum the
	// client announced in its CONNECT (MQTT 5: sending more would break the
	// protocol); it returns the window in effect. It applies to the live
	// connection at once: deliveries beyond the new window are held until
	// the client acknowledges earlier ones, and held deliveries that a
	// larger window allows go out at once. Deliveries already unacknowledged
	// when a connection that had no window gets one are not counted against
	// it. It ends with the connection: the client's next CONNECT announces
	// its own. It does not block. Errors: ErrNoSession, ErrNotConnected (an
	// offline session has no window), ErrInvalidArgument (n is 0).
	SetInflightWindow(clientID string, n uint16) (uint16, error)
}

// SubscriptionInfo is one subscription of a session.
type SubscriptionInfo struct {
	// Filter is a topic filter, or $share/<group>/<filter>.
	Filter string
	QoS    byte
	// NoLocal, RetainAsPublished and RetainHandling are the MQTT 5
	// subscription options. RetainHandling is kept and reported; Subscribe
	// sends no retained messages whatever its value.
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	// Identifier is the MQTT 5 subscription identifier (1 to 268,435,455),
	// 0 for none.
	Identifier int
}

// Subscriptions reads and changes the subscriptions of a session, online
// or offline. Safe for concurrent use from any goroutine. Implemented in
// svc_subscriptions.go.
type Subscriptions interface {
	// Subscriptions lists the subscriptions of clientID, sorted by filter.
	// It reads memory only. Errors: ErrNoSession.
	Subscriptions(clientID string) ([]SubscriptionInfo, error)

	// Subscribe adds sub to the session of clientID, or replaces the
	// subscription with the same filter, as if the client had subscribed:
	// matching messages reach it from then on (queued while it is offline,
	// for QoS 1/2), and a persistent session keeps it across restarts. It
	// does not ask the client's authorizer (the caller decides; a later
	// reconnect checks it against the new connection's authorizer like any
	// subscription of a resumed session), sends no SUBACK and no retained
	// message. It blocks for one store write (an fsync in sync mode) for a
	// persistent session. Errors: ErrNoSession; ErrInvalidArgument (filter,
	// QoS above 2, RetainHandling above 2, identifier out of range, NoLocal
	// on a shared subscription); ErrTooLarge when the session holds
	// client_limits.max_subscriptions already and sub's filter is not one
	// of them; a store error, with the subscription in place in memory.
	Subscribe(clientID string, sub SubscriptionInfo) error

	// Unsubscribe removes the subscription of clientID to filter (spelled
	// exactly as subscribed); a filter the session does not hold is not an
	// error. It blocks for one store write. Errors: ErrNoSession; a store
	// error, with the subscription gone from memory.
	Unsubscribe(clientID, filter string) error
}

// Message is a message the broker publishes or retains itself, or a
// retained message read back.
type Message struct {
	// Topic is a topic name: valid UTF-8 without NUL, wildcards ('+', '#'),
	// 1 to 65,535 bytes.
	Topic   string
	Payload []byte
	QoS     byte // 0, 1 or 2
	// Retain also keeps a published message as the topic's retained
	// message (an empty payload removes it). PutRetained ignores it;
	// Retained sets it.
	Retain bool
	// MessageExpiry is the message's expiry interval in seconds, capped by
	// mqtt.max_message_expiry (0: only that cap applies). Read back from
	// Retained, it is what remains.
	MessageExpiry uint32
	// PayloadFormat is the MQTT 5 payload format indicator: 0 bytes, 1 UTF-8.
	PayloadFormat   byte
	ContentType     string
	ResponseTopic   string // a topic name, or "" for none
	CorrelationData []byte
	UserProperties  []UserProperty
	// Origin is the client id of the message's publisher ("" for the
	// broker's own), which a subscription with No Local does not receive.
	// Only the sessions moving between nodes carry it (ExportSession sets
	// it, QueueSessionMessages reads it); the services ignore it.
	Origin string
}

// RetainedMessages reads and changes the retained messages. Safe for
// concurrent use from any goroutine; two calls on one topic are
// serialised. Implemented in svc_retained.go.
type RetainedMessages interface {
	// Retained returns the retained message of topic (a topic name, not a
	// filter), false when there is none or it expired. It reads memory
	// only.
	Retained(topic string) (Message, bool)

	// PutRetained makes m the retained message of m.Topic, replacing any,
	// without delivering it to current subscribers; later subscribers get
	// it like any retained message, and it survives restarts. It blocks for
	// one store write (an fsync in sync mode). Errors: ErrInvalidArgument
	// (as for Publish, and an empty payload: use DeleteRetained); a store
	// error, and then nothing changed.
	PutRetained(m Message) error

	// DeleteRetained removes the retained message of topic; none is not an
	// error. It blocks for one store write. Errors: ErrInvalidArgument (not
	// a topic name); a store error, and then nothing changed.
	DeleteRetained(topic string) error
}

// Publisher publishes messages as the broker. Safe for concurrent use from
// any goroutine, a subscriber's own included. Implemented in svc_publish.go.
type Publisher interface {
	// Publish sends m to every matching subscription, as the broker's own
	// client: no authorizer is asked, subscribers receive it at the lower
	// of m.QoS and their subscription's QoS, persistent sessions queue it
	// like any message (and keep it across restarts), and with m.Retain it
	// becomes the topic's retained message. It returns once mochi has
	// handed the message to every subscriber: delivery to connected clients
	// goes on in the background. It blocks while the message is queued: a
	// QoS 1/2 copy waits for the subscriber's lock, which mochi holds while
	// it writes to that subscriber's socket, so a subscriber that stopped
	// reading holds Publish as long as that write blocks (mochi sets no
	// write deadline of its own). Errors: ErrInvalidArgument (topic, QoS
	// above 2, payload format above 1, response topic, a string MQTT
	// cannot carry); mochi's error.
	Publish(m Message) error

	// PublishTo sends m to the session of clientID only, and only when one
	// of its subscriptions matches m.Topic (shared subscriptions of the
	// client included, whatever the other members of the group): at the
	// lower of m.QoS and the highest matching subscription's QoS, with
	// their subscription identifiers, as the broker's own message (no
	// authorizer of the publisher is asked; the client's read permissions
	// are, as for any delivery). A connected client gets it at once; an
	// offline persistent session queues a QoS 1/2 copy (kept across
	// restarts) and drops a QoS 0 one, as for any message. It is not
	// retained and reaches no other client. It blocks for the write to the
	// client's connection (buffered, see mqtt.max_outbound_buffer) and,
	// for a persistent session, one store write. Errors: ErrNoSession;
	// ErrNotSubscribed (no matching subscription: nothing sent);
	// ErrInvalidArgument (as Publish, and m.Retain set); mochi's error
	// when the session has no packet id free or the write to the
	// connection fails. A QoS 1/2 copy for a session whose queue is full
	// (mqtt.max_queued_messages, or the client's own limit) is dropped and
	// counted as any dropped delivery, and PublishTo returns nil, as it
	// does when the client may not read the topic.
	PublishTo(clientID string, m Message) error
}

// Limits of session attributes.
const (
	// MaxAttributeKeyLen is the longest attribute key, in bytes; keys are
	// non-empty UTF-8.
	MaxAttributeKeyLen = abi.MaxAttributeKey
	// MaxAttributeValueLen is the largest attribute value, in bytes.
	MaxAttributeValueLen = abi.MaxAttributeValue
)

// Attribute is one session attribute with the time it was written with.
type Attribute struct {
	Key   string
	Value []byte
	Time  time.Time
}

// SessionAttributes keeps small values per session for extensions, in the
// store: they survive restarts with their session and are removed with it
// (a clean start or any new session of the client id, a session that ends
// with its connection, expiry, InvalidateSession). A session that ends with its connection has its
// attributes stored too, under a session record that restore discards.
// Safe for concurrent use from any goroutine. Implemented in
// svc_attributes.go.
//
// Every method fails with ErrNoSession when clientID has no session, and
// with the store's error (wrapped) when it fails. Writes are durable: they block
// for one store write and, in sync mode, its fsync (concurrent writers
// share one).
type SessionAttributes interface {
	// Attribute returns the value of key in the session of clientID, false
	// when there is none. One store read.
	Attribute(clientID, key string) ([]byte, bool, error)

	// PutAttribute sets key to value, with the current time. The first
	// attribute of a session that ends with its connection also writes its
	// session record. Errors also: ErrInvalidArgument (key empty, not
	// UTF-8 or longer than MaxAttributeKeyLen; value longer than
	// MaxAttributeValueLen).
	PutAttribute(clientID, key string, value []byte) error

	// PutAttributeIfNewer sets key to value only when ts is later than the
	// time of the stored value (or equal, with orEqual), or when there is
	// none. It returns the value stored before the call (nil when none, non-nil
	// when empty)
	// and whether value replaced it. Concurrent calls are serialised: the
	// latest ts wins whatever their order. Errors as PutAttribute, and
	// ErrInvalidArgument for a ts outside the years 1678 to 2262.
	PutAttributeIfNewer(clientID, key string, value []byte, ts time.Time, orEqual bool) (previous []byte, replaced bool, err error)

	// Attributes returns every attribute of the session of clientID, sorted
	// by key. One scan of the client's attributes.
	Attributes(clientID string) ([]Attribute, error)

	// DeleteAttribute removes key; a missing key is not an error.
	DeleteAttribute(clientID, key string) error
}

// Limits of the extension key-value storage.
const (
	// MaxStorageKeyLen is the longest storage key, in bytes; keys are
	// 1 to MaxStorageKeyLen bytes, any bytes.
	MaxStorageKeyLen = abi.MaxStorageKey
	// MaxStorageValueLen is the largest storage value, in bytes.
	MaxStorageValueLen = abi.MaxStorageValue
	// MaxStorageList is the most keys one StorageKeys call returns.
	MaxStorageList = abi.MaxStorageList
)

// ExtensionStore is a private key-value store per extension, in the
// broker's store: each extension id has its own namespace, which no other
// id can read or write, kept across restarts (in sync durability also a
// kill -9) and across reloads of the same id; removing an extension
// leaves its data in place for a later version. The caller (the host)
// passes the id of the extension it acts for; the broker trusts it. Safe
// for concurrent use from any goroutine; concurrent writes of one key are
// applied in some order, the last one wins. Implemented in svc_storage.go.
//
// Every method fails with ErrInvalidArgument for an empty extension id or
// one holding NUL, and with the store's error (wrapped) when it fails.
// What an extension may store in total is bounded by the store's
// free-space reserve (store.min_free_space), not by a quota per
// extension.
type ExtensionStore interface {
	// StorageGet returns the value of key in extension ext's namespace,
	// false when there is none. One store read.
	StorageGet(ext, key string) ([]byte, bool, error)

	// StoragePut sets key to value, replacing any value, and returns once
	// it is stored (in sync durability, on disk: concurrent writers share
	// one fsync). Errors also: ErrInvalidArgument (key empty or longer
	// than MaxStorageKeyLen, value longer than MaxStorageValueLen).
	StoragePut(ext, key string, value []byte) error

	// StorageDelete removes key; a missing key is not an error. Durable
	// like StoragePut.
	StorageDelete(ext, key string) error

	// StorageKeys returns, sorted, at most limit (1 to MaxStorageList)
	// keys of ext that start with prefix and sort after after ("" starts
	// at the first); more is true when further keys match: pass the last
	// key as the next after. One scan of at most limit+1 keys. Errors
	// also: ErrInvalidArgument (limit, or a prefix or after longer than
	// MaxStorageKeyLen).
	StorageKeys(ext, prefix, after string, limit int) (keys []string, more bool, err error)
}
