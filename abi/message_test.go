package abi

import (
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"
)

// readHexFile reads an annotated hex file: hex digits and spaces, "#"
// comments to the end of the line.
func readHexFile(t *testing.T, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(text), "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var sampleMessage = Message{QoS: 1, Flags: MessageRetain, PayloadFormat: 1, MessageExpiry: 60, Topic: "lights/1", Payload: []byte("on"),
	UserProperties: []UserProperty{{"room", "kitchen"}}, ContentType: "text/plain", ResponseTopic: "reply/1", CorrelationData: []byte{1, 2}}

// TestMessageVector: the hand-written vector decodes to the sample, and the
// sample encodes to the vector.
func TestMessageVector(t *testing.T) {
	b := readHexFile(t, "testdata/args/message.hex")
	m, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, sampleMessage) {
		t.Errorf("decoded %+v\nwant    %+v", m, sampleMessage)
	}
	if got := sampleMessage.Encode(nil); string(got) != string(b) {
		t.Errorf("encoded % x\nwant    % x", got, b)
	}
}

func TestDecodeMessage(t *testing.T) {
	valid := sampleMessage.Encode(nil)
	short := (&Message{Topic: "a", Payload: []byte("p")}).Encode(nil)
	tests := []struct {
		name string
		b    []byte
		want *Message // nil: refused
	}{
		{"sample", valid, &sampleMessage},
		{"fields after the payload left out", short[:8+4+1+4+1], &Message{Topic: "a", Payload: []byte("p")}},
		{"only the fixed part and topic", short[:8+4+1], &Message{Topic: "a"}},
		{"empty", nil, nil},
		{"fixed part cut", valid[:7], nil},
		{"qos 3", patch(valid, 0, 3), nil},
		{"qos 7", patch(valid, 0, 7), nil},
		{"unknown flag", patch(valid, 1, 2), nil},
		{"payload format 2", patch(valid, 2, 2), nil},
		{"reserved set", patch(valid, 3, 1), nil},
		{"topic cut", valid[:14], nil},
		{"bytes after the last field", append(append([]byte(nil), valid...), 0), nil},
		{"a property count beyond the bytes", patch(short[:8+4+1+4+1+4], 8+4+1+4+1, 0xff), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMessage(tt.b)
			switch {
			case tt.want == nil && err == nil:
				t.Errorf("accepted: %+v", m)
			case tt.want != nil && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != nil && !reflect.DeepEqual(m, *tt.want):
				t.Errorf("got %+v, want %+v", m, *tt.want)
			}
		})
	}
}

// patch returns a copy of b with b[i] = v.
func patch(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}
