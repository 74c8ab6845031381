package store

// UserProperty is one MQTT 5 user property, a key/value pair of UTF-8
// strings, as kept in sessions and message properties. Keys may repeat;
// the store keeps their order exactly.
type UserProperty struct {
	Key   string
	Value string
}

// MessageProperties holds the MQTT 5 properties of a publish or will that the
// broker must keep across restarts. The store keeps every field verbatim,
// including the difference between a nil and an empty CorrelationData,
// SubscriptionIDs or User slice.
type MessageProperties struct {
	PayloadFormat    byte
	PayloadFormatSet bool
	MessageExpiry    uint32
	ContentType      string
	ResponseTopic    string
	CorrelationData  []byte
	SubscriptionIDs  []int
	User             []UserProperty
}

// Will is the last-will message of a session, kept inside its Session
// record (Session.Will), so it is written and read with the session.
type Will struct {
	Topic        string
	Payload      []byte
	QoS          byte
	Retain       bool
	DelaySeconds uint32
	Properties   MessageProperties
}

// Session is the persistent part of one client's session. The broker writes
// it with PutSession on CONNECT and DISCONNECT and reads it back from Load at
// start-up.
type Session struct {
	ClientID          string
	Username          []byte // nil when the CONNECT had no username
	Listener          string
	Remote            string
	ProtocolVersion   byte
	Clean             bool
	SessionExpiry     uint32 // seconds, as negotiated
	SessionExpirySet  bool   // MQTT 5 session-expiry property was present
	ReceiveMaximum    uint16
	TopicAliasMaximum uint16
	MaximumPacketSize uint32
	UserProperties    []UserProperty
	Will              *Will // nil when no will
	ConnectedAt       int64 // unix seconds of the last CONNECT
	DisconnectedAt    int64 // unix seconds; 0 while connected (or when the broker died with the client connected)
}

// Subscription is one topic filter a client subscribed to, with its MQTT 5
// subscription options. The broker writes it with PutSubscription and gets
// it back from Load.
type Subscription struct {
	ClientID          string
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	Identifier        int
}

// Message is an in-flight/queued message of one client, a retained message,
// or a pending publish; the broker writes it with PutInflight, PutRetained
// or PutPending. Which fields matter depends on the use; the store keeps all
// of them verbatim whatever the use.
type Message struct {
	ClientID   string // owner (in-flight); origin client for retained/pending
	PacketID   uint16 // in-flight only
	Type       byte   // MQTT packet type: 3 publish, 4 puback, 5 pubrec, 6 pubrel, 7 pubcomp
	QoS        byte
	Retain     bool
	Dup        bool
	Topic      string
	Payload    []byte
	Origin     string
	Created    int64 // ordering key (the broker stores a strictly increasing number here; kept verbatim)
	Expiry     int64 // unix seconds when it expires, 0 = never
	Sent       int64
	Properties MessageProperties
}

// PendingMessage is a publish that was acknowledged to its sender but not yet
// fanned out to subscribers, with the sequence number that orders it.
type PendingMessage struct {
	Seq     uint64
	Message Message
}

// Snapshot is everything the broker restores at start-up, as returned by
// Load. Its slices are the caller's own; nil means no records of a kind.
type Snapshot struct {
	Sessions      []Session        // sorted by ClientID
	Subscriptions []Subscription   // sorted by ClientID, then Filter
	Inflight      []Message        // sorted by ClientID, then Created ascending
	Retained      []Message        // sorted by Topic
	Pending       []PendingMessage // sorted by Seq ascending
}
