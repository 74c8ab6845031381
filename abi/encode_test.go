package abi

import (
	"bytes"
	"testing"
)

// perMessage are records of the per-message callbacks, as the host builds
// them, with and without their optional parts.
var perMessage = []record{
	&PublishRecord{QoS: 1, ClientID: "sensor-1", Username: "u", Topic: "devices/sensor-1/temperature", Payload: []byte(`{"t":21.5}`)},
	&PublishRecord{},
	&MessageRecord{Direction: Inbound, ProtocolVersion: 4, ClientID: "sensor-1", Username: "u", Publisher: "sensor-1",
		Message: Message{Topic: "devices/sensor-1/temperature", Payload: []byte(`{"t":21.5}`)}},
	&MessageRecord{Direction: Outbound, ProtocolVersion: 5, ClientID: "sub", Publisher: "pub", Message: Message{QoS: 2,
		Flags: MessageRetain, PayloadFormat: 1, MessageExpiry: 60, Topic: "a/b", Payload: []byte("x"),
		UserProperties: []Pair{{"k", "v"}, {"", "w"}}, ContentType: "text/plain", ResponseTopic: "r/1", CorrelationData: []byte("c")}},
	&MessageRecord{},
}

type record interface{ Encode([]byte) []byte }

// TestEncodeInPlace: a record encodes alike into a buffer with room
// (where the host writes it, guest memory) and into one without, which it
// leaves alone; and what it writes is what Writer's appends write.
func TestEncodeInPlace(t *testing.T) {
	for i, r := range perMessage {
		want := appended(r)
		room := make([]byte, 3, len(want)+5)
		got := r.Encode(room)
		if !bytes.Equal(got, want) {
			t.Errorf("record %d: encoded\n% x\nwant\n% x", i, got, want)
		}
		if &got[0] != &room[:1][0] {
			t.Errorf("record %d: not encoded in the buffer it had room in", i)
		}
		small := make([]byte, 0, len(want)-1)
		if got := r.Encode(small); !bytes.Equal(got, want) || len(small) != 0 {
			t.Errorf("record %d into a small buffer: % x", i, got)
		}
		if got := r.Encode(nil); !bytes.Equal(got, want) {
			t.Errorf("record %d into nil: % x", i, got)
		}
	}
}

// appended encodes r with Writer's appends, as every record was before
// the per-message ones were written by offset.
func appended(r record) []byte {
	var w Writer
	switch r := r.(type) {
	case *PublishRecord:
		w.Begin(nil, KindPublish)
		w.U8(r.QoS)
		w.U8(r.Flags)
		w.U16(0)
		w.Str(r.ClientID)
		w.Str(r.Username)
		w.Str(r.Topic)
		w.Bytes(r.Payload)
	case *MessageRecord:
		w.Begin(nil, KindMessage)
		w.U8(r.Direction)
		w.U8(r.ProtocolVersion)
		w.U16(0)
		w.Str(r.ClientID)
		w.Str(r.Username)
		w.Str(r.Publisher)
		w.message(&r.Message)
	}
	return w.End()
}

func BenchmarkEncode(b *testing.B) {
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		rec  record
	}{{"publish", perMessage[0]}, {"message", perMessage[2]}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				tc.rec.Encode(buf)
			}
		})
	}
}
