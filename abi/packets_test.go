package abi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func TestPropertiesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		ps   []Pair
	}{
		{"none", []Pair{}},
		{"one", []Pair{{"source", "edge"}}},
		{"empty key and value", []Pair{{"", ""}}},
		{"repeated key, order kept", []Pair{{"k", "2"}, {"k", "1"}, {"a", "ü€"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := EncodeProperties(nil, tc.ps)
			got, err := DecodeProperties(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.ps) {
				t.Fatalf("got %q, want %q", got, tc.ps)
			}
			// Every shorter argument is malformed: the count promises more.
			for n := 0; n < len(b); n++ {
				if _, err := DecodeProperties(b[:n]); !errors.Is(err, ErrMessage) {
					t.Fatalf("cut at %d of %d bytes: err %v, want ErrMessage", n, len(b), err)
				}
			}
		})
	}
}

// TestPropertiesEncoding pins the bytes: ABI.md's packet_set example.
func TestPropertiesEncoding(t *testing.T) {
	want := []byte("\x01\x00\x00\x00\x06\x00\x00\x00source\x04\x00\x00\x00edge")
	if got := EncodeProperties(nil, []Pair{{"source", "edge"}}); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if len(want) != 22 {
		t.Fatalf("ABI.md's example passes 22 bytes, the encoding has %d", len(want))
	}
	// The buffer passed in is reused from its start.
	if got := EncodeProperties([]byte("stale bytes"), []Pair{{"source", "edge"}}); !bytes.Equal(got, want) {
		t.Fatalf("with a used buffer: got %q, want %q", got, want)
	}
}

func TestDecodePropertiesMalformed(t *testing.T) {
	le := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"count cut", []byte{1, 0, 0}},
		{"count without pairs", le(1)},
		{"huge count", le(0xffffffff)},
		{"count larger than the pairs", cat(le(2), le(1), []byte("k"), le(1), []byte("v"))},
		{"key longer than the argument", cat(le(1), le(100), []byte("k"), le(0))},
		{"value cut", cat(le(1), le(1), []byte("k"), le(3), []byte("v"))},
		{"value length cut", cat(le(1), le(1), []byte("k"), []byte{1, 0})},
		{"bytes after the list", cat(le(1), le(1), []byte("k"), le(1), []byte("v"), []byte{0})},
		{"bytes after an empty list", cat(le(0), le(0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ps, err := DecodeProperties(tc.in); !errors.Is(err, ErrMessage) {
				t.Fatalf("got %q, %v; want ErrMessage", ps, err)
			}
		})
	}
}

// TestConnectRecordAcrossMinors: the CONNECT record of 1.2 appends
// receive_maximum and will_delay. A record of a 1.1 host (cut after
// user_properties) reads them as 0; a reader that stops after
// user_properties, as a 1.0 or 1.1 module does, reads a 1.2 record's other
// fields unchanged.
func TestConnectRecordAcrossMinors(t *testing.T) {
	c := &ConnectRecord{ProtocolVersion: 5, Flags: ConnectHasWill, WillQoS: 1, Keepalive: 30, SessionExpiry: 60, ClientID: "c1",
		WillTopic: "w", WillPayload: []byte("bye"), UserProperties: []Pair{{"k", "v"}}, ReceiveMaximum: 10, WillDelay: 5}
	rec := c.Encode(nil)
	old := append([]byte(nil), rec[:len(rec)-8]...)
	binary.LittleEndian.PutUint32(old, uint32(len(old)))
	binary.LittleEndian.PutUint16(old[6:], 1)
	got, err := DecodeConnect(old)
	if err != nil {
		t.Fatal(err)
	}
	want := *c
	want.ReceiveMaximum, want.WillDelay = 0, 0
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("1.1 record read as %+v, want %+v", got, want)
	}

	// The 1.1 reader: the fields up to user_properties, then stop.
	r, err := NewReader(rec)
	if err != nil {
		t.Fatal(err)
	}
	if v, f, q := r.U8(), r.U8(), r.U8(); v != 5 || f != ConnectHasWill || q != 1 {
		t.Fatalf("head %d %d %d", v, f, q)
	}
	r.U8()
	if ka := r.U16(); ka != 30 {
		t.Fatalf("keepalive %d", ka)
	}
	r.U16()
	r.U32()
	for i := 0; i < 6; i++ {
		r.Str()
	}
	r.U32() // no TLS names
	if topic, payload := r.Str(), r.Str(); topic != "w" || payload != "bye" {
		t.Fatalf("will %q %q", topic, payload)
	}
	if n := r.U32(); n != 1 || r.Str() != "k" || r.Str() != "v" || r.Err != nil {
		t.Fatalf("user properties: %d, %v", n, r.Err)
	}
}

// TestInterceptorRecordsCut: every interceptor record cut anywhere decodes
// without panic; cut inside a field it fails, cut between fields the rest
// reads as zero (a host of an older minor version).
func TestInterceptorRecordsCut(t *testing.T) {
	for _, v := range vectors {
		rec := v.record.Encode(nil)
		kind := binary.LittleEndian.Uint16(rec[4:])
		if kind < KindConnack {
			continue
		}
		for n := HeaderSize; n < len(rec); n++ {
			cut := append([]byte(nil), rec[:n]...)
			binary.LittleEndian.PutUint32(cut, uint32(n))
			switch kind {
			case KindConnack:
				DecodeConnack(cut)
			case KindMessage:
				DecodeMessageRecord(cut)
			case KindSubscription:
				DecodeSubscription(cut)
			case KindDisconnect:
				DecodeDisconnect(cut)
			}
		}
		if _, err := DecodeConnack(rec); kind != KindConnack && err == nil {
			t.Errorf("%s: decoded as a CONNACK record", v.name)
		}
	}
}

// TestPropertiesVector: the hand-written vector decodes to the sample, and
// the sample encodes to the vector.
func TestPropertiesVector(t *testing.T) {
	b := readHexFile(t, "testdata/args/properties.hex")
	want := []Pair{{"source", "edge"}, {"unit", "°C"}}
	got, err := DecodeProperties(b)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %q, %v; want %q", got, err, want)
	}
	if enc := EncodeProperties(nil, want); !bytes.Equal(enc, b) {
		t.Fatalf("encoded % x\nwant    % x", enc, b)
	}
}

// FuzzDecodeProperties: whatever DecodeProperties accepts encodes back to
// the same bytes (the encoding is canonical: nothing is skipped), and it
// never panics.
func FuzzDecodeProperties(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeProperties(nil, []Pair{{"k", "v"}, {"", ""}}))
	f.Add([]byte{1, 0, 0, 0, 1, 0, 0, 0, 'k'})
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodeProperties(b)
		if err != nil {
			return
		}
		if enc := EncodeProperties(nil, ps); !bytes.Equal(enc, b) {
			t.Fatalf("% x decoded to %q, which encodes to % x", b, ps, enc)
		}
	})
}
