package propolis

// Retained messages (ABI.md section 5, service "retained"): read, set and
// remove the retained message of a topic. A message set here reaches later
// subscribers like any retained message and survives restarts; current
// subscribers are not sent it.

// RetainedMessage returns the retained message of topic. ErrNotFound: none
// (or it expired); ErrInvalidArgument: topic is not a topic name (empty, a
// wildcard, not UTF-8).
func RetainedMessage(topic string) (Message, error) {
	res, err := withResult(func(out []byte) int32 { return svcRetainedGet(topic, out) })
	if err != nil {
		return Message{}, err
	}
	m, ok := decodeMessage(res)
	if !ok {
		return Message{}, ErrInternal
	}
	return m, nil
}

// PutRetainedMessage makes m the retained message of m.Topic, replacing
// any, and returns once it is stored. ErrInvalidArgument: not a topic name,
// QoS above 2, payload format above 1, an empty payload (use
// RemoveRetainedMessage), a string MQTT cannot carry.
func PutRetainedMessage(m Message) error {
	m.Retain = false // a retained message needs no flag to be kept
	return statusErr(svcRetainedPut(m.encode()))
}

// RemoveRetainedMessage removes the retained message of topic; none is not
// an error. ErrInvalidArgument: topic is not a topic name.
func RemoveRetainedMessage(topic string) error {
	return statusErr(svcRetainedRemove(topic))
}
