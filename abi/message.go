package abi

import (
	"encoding/binary"
	"errors"
)

// This file is the message argument of publish and publish_to_client
// (ABI.md section 5, "The message argument"): a list of fields without a
// record header, written by the guest.

// UserProperty is an MQTT 5 user property of a Message.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

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
	w.U8(m.QoS)
	w.U8(m.Flags)
	w.U8(m.PayloadFormat)
	w.U8(0)
	w.U32(m.MessageExpiry)
	w.Str(m.Topic)
	w.Bytes(m.Payload)
	w.U32(uint32(len(m.UserProperties)))
	for _, u := range m.UserProperties {
		w.Str(u.Key)
		w.Str(u.Value)
	}
	w.Str(m.ContentType)
	w.Str(m.ResponseTopic)
	w.Bytes(m.CorrelationData)
	return w.Fields()
}

// DecodeMessage parses a message argument. It checks the layout and the
// fixed fields (QoS 0 to 2, known flags, payload format 0 or 1, the
// reserved byte 0); the broker checks the strings (topic, properties).
// Fields after the payload may be left out: they read as empty. Bytes after
// the last field are refused. Byte strings are views into b.
func DecodeMessage(b []byte) (Message, error) {
	if len(b) < 12 {
		return Message{}, ErrMessage
	}
	m := Message{QoS: b[0], Flags: b[1], PayloadFormat: b[2], MessageExpiry: binary.LittleEndian.Uint32(b[4:])}
	if m.QoS > 2 || m.Flags&^MessageRetain != 0 || m.PayloadFormat > 1 || b[3] != 0 {
		return Message{}, ErrMessage
	}
	r := NewFieldReader(b[8:])
	m.Topic = r.Str()
	m.Payload = r.Bytes()
	n := r.U32()
	if uint64(n)*8 > uint64(len(r.b)) { // each property takes at least 8 bytes
		return Message{}, ErrMessage
	}
	for i := uint32(0); i < n; i++ {
		m.UserProperties = append(m.UserProperties, UserProperty{Key: r.Str(), Value: r.Str()})
	}
	m.ContentType = r.Str()
	m.ResponseTopic = r.Str()
	m.CorrelationData = r.Bytes()
	if r.Err != nil || len(r.b) != 0 {
		return Message{}, ErrMessage
	}
	return m, nil
}
