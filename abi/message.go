package abi

import "errors"

// This file is the message argument of publish and publish_to_client
// (ABI.md section 5, "The message argument"): a list of fields without a
// record header, written by the guest.

// UserProperty is an MQTT 5 user property of a Message: a Pair, as in the
// records.
type UserProperty = Pair

// Message is the argument of publish and publish_to_client.
type Message struct {
	QoS uint8 `json:"qos"`
	// Flags: MessageRetain; other bits are refused.
	Flags uint8 `json:"flags"`
	// PayloadFormat is the MQTT 5 payload format indicator: 0 bytes, 1 UTF-8.
	PayloadFormat uint8 `json:"payload_format"`
	// MessageExpiry is the expiry interval in seconds; 0: the broker's cap
	// only.
	MessageExpiry   uint32         `json:"message_expiry"`
	Topic           string         `json:"topic"`
	Payload         []byte         `json:"payload"`
	UserProperties  []UserProperty `json:"user_properties"`
	ContentType     string         `json:"content_type"`
	ResponseTopic   string         `json:"response_topic"`
	CorrelationData []byte         `json:"correlation_data"`
}

// ErrMessage is returned by DecodeMessage for a malformed message argument.
var ErrMessage = errors.New("malformed message")

// Encode appends the message's bytes to buf.
func (m *Message) Encode(buf []byte) []byte {
	var w Writer
	w.Reset(buf)
	w.message(m)
	return w.Fields()
}

// message appends m's fields: the message argument, and the tail of a
// MESSAGE record.
func (w *Writer) message(m *Message) {
	w.U8(m.QoS)
	w.U8(m.Flags)
	w.U8(m.PayloadFormat)
	w.U8(0)
	w.U32(m.MessageExpiry)
	w.Str(m.Topic)
	w.Bytes(m.Payload)
	w.pairs(m.UserProperties)
	w.Str(m.ContentType)
	w.Str(m.ResponseTopic)
	w.Bytes(m.CorrelationData)
}

// message reads the fields message writes, without checking them. Byte
// strings are views.
func (r *Reader) message() Message {
	m := Message{QoS: r.U8(), Flags: r.U8(), PayloadFormat: r.U8()}
	r.U8()
	m.MessageExpiry = r.U32()
	m.Topic, m.Payload = r.Str(), r.Bytes()
	m.UserProperties = r.pairs()
	m.ContentType, m.ResponseTopic, m.CorrelationData = r.Str(), r.Str(), r.Bytes()
	return m
}

// DecodeMessage parses a message argument. It checks the layout and the
// fixed fields (QoS 0 to 2, known flags, payload format 0 or 1, the
// reserved byte 0); the broker checks the strings (topic, properties).
// Fields after the payload may be left out: they read as empty. Bytes after
// the last field are refused. Byte strings are views into b.
func DecodeMessage(b []byte) (Message, error) {
	if len(b) < 12 || b[0] > 2 || b[1]&^MessageRetain != 0 || b[2] > 1 || b[3] != 0 {
		return Message{}, ErrMessage
	}
	r := NewFieldReader(b)
	m := r.message()
	if r.Err != nil || len(r.b) != 0 {
		return Message{}, ErrMessage
	}
	return m, nil
}
