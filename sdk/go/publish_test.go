package propolis

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestMessageEncode: Message.encode writes the shared vector of ABI.md's
// message argument (abi/testdata/args/message.hex, also read by the host's
// decoder tests).
func TestMessageEncode(t *testing.T) {
	want := readHex(t, filepath.Join(vectorDir, "args", "message.hex"))
	m := Message{QoS: 1, Retain: true, PayloadFormat: 1, MessageExpiry: 60, Topic: "lights/1", Payload: []byte("on"),
		UserProperties: []UserProperty{{Key: "room", Value: "kitchen"}}, ContentType: "text/plain", ResponseTopic: "reply/1",
		CorrelationData: []byte{1, 2}}
	if got := m.encode(); !bytes.Equal(got, want) {
		t.Errorf("encode:\n% x\nwant\n% x", got, want)
	}
	if got := m.encode(); cap(got) != len(got) {
		t.Errorf("encode sized its buffer %d for %d bytes", cap(got), len(got))
	}
}

// TestMessageDecode: decodeMessage reads the shared vector back into the
// message encode wrote it from (RetainedMessage's result has this layout).
func TestMessageDecode(t *testing.T) {
	b := readHex(t, filepath.Join(vectorDir, "args", "message.hex"))
	m, ok := decodeMessage(b)
	want := Message{QoS: 1, Retain: true, PayloadFormat: 1, MessageExpiry: 60, Topic: "lights/1", Payload: []byte("on"),
		UserProperties: []UserProperty{{Key: "room", Value: "kitchen"}}, ContentType: "text/plain", ResponseTopic: "reply/1",
		CorrelationData: []byte{1, 2}}
	if !ok || !bytes.Equal(m.encode(), b) || m.Topic != want.Topic || len(m.UserProperties) != 1 {
		t.Errorf("decodeMessage = %+v, %v; want %+v", m, ok, want)
	}
	if _, ok := decodeMessage(b[:len(b)-1]); ok {
		t.Error("a message cut short decoded")
	}
}
