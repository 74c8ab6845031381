package propolis

// The publish service (ABI.md section 5, service "publish"): publish
// messages as the broker. No authorizer is asked for them: in particular
// no AuthorizePublish handler, so a handler may publish to the very topic
// it is authorizing without being called again.

// Message is an MQTT message: one the extension publishes or retains, or
// a retained message read back (RetainedMessage). Its fields are ABI.md's
// message argument.
type Message struct {
	// Topic is a topic name: no wildcards, valid UTF-8.
	Topic   string
	Payload []byte
	// QoS is 0, 1 or 2.
	QoS byte
	// Retain also keeps the message as the topic's retained message (an
	// empty payload removes it). Not for PublishToClient; ignored by
	// PutRetainedMessage; set on a message read back with RetainedMessage.
	Retain bool
	// MessageExpiry is the expiry interval in seconds; 0 for none (the
	// broker's maximum caps it either way). Read back, it is what remains.
	MessageExpiry uint32
	// PayloadFormat is the MQTT 5 payload format indicator: 0 bytes, 1
	// UTF-8.
	PayloadFormat   byte
	UserProperties  []UserProperty
	ContentType     string
	ResponseTopic   string // a topic name, or "" for none
	CorrelationData []byte
}

// encode writes m as the message argument of publish and
// publish_to_client.
func (m *Message) encode() []byte {
	n := 8 + 4 + len(m.Topic) + 4 + len(m.Payload) + 4 + 4 + len(m.ContentType) + 4 + len(m.ResponseTopic) + 4 + len(m.CorrelationData)
	for _, u := range m.UserProperties {
		n += 8 + len(u.Key) + len(u.Value)
	}
	b := make([]byte, 0, n)
	var flags byte
	if m.Retain {
		flags = 1
	}
	b = append(b, m.QoS, flags, m.PayloadFormat, 0)
	b = appendU32(b, m.MessageExpiry)
	b = appendStr(b, m.Topic)
	b = appendStr(b, string(m.Payload))
	b = appendU32(b, uint32(len(m.UserProperties)))
	for _, u := range m.UserProperties {
		b = appendStr(b, u.Key)
		b = appendStr(b, u.Value)
	}
	b = appendStr(b, m.ContentType)
	b = appendStr(b, m.ResponseTopic)
	return appendStr(b, string(m.CorrelationData))
}

// decodeMessage reads a message in the layout encode writes; false when it
// is malformed.
func decodeMessage(b []byte) (Message, bool) {
	if len(b) < 8 {
		return Message{}, false
	}
	m := Message{QoS: b[0], Retain: b[1]&1 != 0, PayloadFormat: b[2],
		MessageExpiry: uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24}
	r := resultReader(b[8:])
	m.Topic, m.Payload = r.str(), r.bytes()
	if n := r.count(8); n > 0 {
		m.UserProperties = make([]UserProperty, n)
		for i := range m.UserProperties {
			m.UserProperties[i] = UserProperty{Key: r.str(), Value: r.str()}
		}
	}
	m.ContentType, m.ResponseTopic, m.CorrelationData = r.str(), r.str(), r.bytes()
	return m, r.err == nil
}

// PublishMessage publishes m as the broker to every matching subscription,
// and returns once every subscriber has been handed a copy. Subscribers get
// it at the lower of m.QoS and their subscription's QoS; persistent
// sessions queue it. ErrInvalidArgument: a QoS above 2, a topic that is
// empty, has a wildcard or is not UTF-8, and the like; ErrTooLarge: a
// message above 16 MiB.
func PublishMessage(m Message) error {
	return statusErr(svcPublish(m.encode()))
}

// PublishToClient publishes m as the broker to clientID only, and only
// when one of its subscriptions matches m.Topic: it reports whether the
// client was handed the message (false: no subscription matches, nothing
// sent). An offline persistent session queues a QoS 1/2 message.
// ErrNotFound: no session; ErrInvalidArgument: as PublishMessage, and
// m.Retain.
func PublishToClient(clientID string, m Message) (bool, error) {
	n := svcPublishToClient(clientID, m.encode())
	if n < 0 {
		return false, statusErr(n)
	}
	return n == 1, nil
}
