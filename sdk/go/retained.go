package propolis

// Retained messages (ABI.md section 5, service "retained"): read, set and
// remove the retained message of a topic. A message set here reaches later
// subscribers like any retained message and survives restarts; current
// subscribers are not sent it.

// Message is an MQTT message: a retained message read back, or one to keep
// as retained. Its fields are ABI.md's message fields.
type Message struct {
	// Topic is a topic name (no wildcards), valid UTF-8.
	Topic   string
	Payload []byte
	// QoS is 0, 1 or 2.
	QoS byte
	// Retain is set on a message read back with RetainedMessage;
	// PutRetainedMessage ignores it.
	Retain bool
	// MessageExpiry is the message's expiry interval in seconds (0: none
	// beyond the broker's mqtt.max_message_expiry). Read back, it is what
	// remains.
	MessageExpiry uint32
	// PayloadFormat is the MQTT 5 payload format indicator: 0 bytes, 1
	// UTF-8.
	PayloadFormat   byte
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	UserProperties  []UserProperty
}

// appendMessage encodes m as ABI.md's message fields.
func appendMessage(b []byte, m *Message) []byte {
	b = appendBytes(b, []byte(m.Topic))
	b = appendBytes(b, m.Payload)
	var flags byte
	if m.Retain {
		flags = 1
	}
	b = append(b, m.QoS, flags)
	b = appendU32(b, m.MessageExpiry)
	b = append(b, m.PayloadFormat)
	b = appendBytes(b, []byte(m.ContentType))
	b = appendBytes(b, []byte(m.ResponseTopic))
	b = appendBytes(b, m.CorrelationData)
	b = appendU32(b, uint32(len(m.UserProperties)))
	for _, p := range m.UserProperties {
		b = appendBytes(b, []byte(p.Key))
		b = appendBytes(b, []byte(p.Value))
	}
	return b
}

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func appendBytes(b, v []byte) []byte { return append(appendU32(b, uint32(len(v))), v...) }

// readMessage decodes ABI.md's message fields.
func readMessage(r *reader) Message {
	m := Message{Topic: r.str(), Payload: r.bytes(), QoS: r.u8()}
	m.Retain = r.u8()&1 != 0
	m.MessageExpiry = r.u32()
	m.PayloadFormat = r.u8()
	m.ContentType, m.ResponseTopic, m.CorrelationData = r.str(), r.str(), r.bytes()
	if n := r.count(8); n > 0 {
		m.UserProperties = make([]UserProperty, n)
		for i := range m.UserProperties {
			m.UserProperties[i] = UserProperty{Key: r.str(), Value: r.str()}
		}
	}
	return m
}

// RetainedMessage returns the retained message of topic. ErrNotFound: none
// (or it expired); ErrInvalidArgument: topic is not a topic name (empty, a
// wildcard, not UTF-8).
func RetainedMessage(topic string) (Message, error) {
	res, err := withResult(func(out []byte) int32 { return svcRetainedGet(topic, out) })
	if err != nil {
		return Message{}, err
	}
	r := resultReader(res)
	m := readMessage(&r)
	if r.err != nil {
		return Message{}, ErrInternal
	}
	return m, nil
}

// PutRetainedMessage makes m the retained message of m.Topic, replacing
// any, and returns once it is stored. ErrInvalidArgument: not a topic name,
// QoS above 2, payload format above 1, an empty payload (use
// RemoveRetainedMessage), a string MQTT cannot carry.
func PutRetainedMessage(m Message) error {
	return statusErr(svcRetainedPut(appendMessage(nil, &m)))
}

// RemoveRetainedMessage removes the retained message of topic; none is not
// an error. ErrInvalidArgument: topic is not a topic name.
func RemoveRetainedMessage(topic string) error {
	return statusErr(svcRetainedRemove(topic))
}
