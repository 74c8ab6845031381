package propolis

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// vectorDir holds the shared byte vectors of ABI.md records.
const vectorDir = "../../abi/testdata"

// readHex reads an annotated hex file: hex digits, whitespace, and comments
// from '#' to the end of the line.
func readHex(t testing.TB, path string) []byte {
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
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// The expected values of the vectors, named as ABI.md names the fields.
type (
	jsonStart struct {
		ExtensionID      string `json:"extension_id"`
		ExtensionVersion string `json:"extension_version"`
		BrokerVersion    string `json:"broker_version"`
		PreviousVersion  string `json:"previous_version"`
		Config           string `json:"config"`
		Instance         uint32 `json:"instance"`
	}
	jsonPair    struct{ Key, Value string }
	jsonConnect struct {
		ProtocolVersion uint8      `json:"protocol_version"`
		Flags           uint8      `json:"flags"`
		WillQoS         uint8      `json:"will_qos"`
		Keepalive       uint16     `json:"keepalive"`
		SessionExpiry   uint32     `json:"session_expiry"`
		ClientID        string     `json:"client_id"`
		Username        string     `json:"username"`
		Password        []byte     `json:"password"`
		RemoteAddr      string     `json:"remote_addr"`
		Listener        string     `json:"listener"`
		TLSSubject      string     `json:"tls_subject"`
		TLSSANs         []string   `json:"tls_sans"`
		WillTopic       string     `json:"will_topic"`
		WillPayload     []byte     `json:"will_payload"`
		UserProperties  []jsonPair `json:"user_properties"`
		ReceiveMaximum  uint16     `json:"receive_maximum"`
		WillDelay       uint32     `json:"will_delay"`
	}
	jsonConnack struct {
		ReasonCode      uint8      `json:"reason_code"`
		Flags           uint8      `json:"flags"`
		ProtocolVersion uint8      `json:"protocol_version"`
		ClientID        string     `json:"client_id"`
		Username        string     `json:"username"`
		ReasonString    string     `json:"reason_string"`
		UserProperties  []jsonPair `json:"user_properties"`
	}
	jsonMessage struct {
		Direction       uint8      `json:"direction"`
		ProtocolVersion uint8      `json:"protocol_version"`
		ClientID        string     `json:"client_id"`
		Username        string     `json:"username"`
		Publisher       string     `json:"publisher"`
		QoS             uint8      `json:"qos"`
		Flags           uint8      `json:"flags"`
		PayloadFormat   uint8      `json:"payload_format"`
		MessageExpiry   uint32     `json:"message_expiry"`
		Topic           string     `json:"topic"`
		Payload         []byte     `json:"payload"`
		UserProperties  []jsonPair `json:"user_properties"`
		ContentType     string     `json:"content_type"`
		ResponseTopic   string     `json:"response_topic"`
		CorrelationData []byte     `json:"correlation_data"`
	}
	jsonSubscription struct {
		QoS             uint8      `json:"qos"`
		Options         uint8      `json:"options"`
		ProtocolVersion uint8      `json:"protocol_version"`
		Flags           uint8      `json:"flags"`
		Identifier      uint32     `json:"identifier"`
		ClientID        string     `json:"client_id"`
		Username        string     `json:"username"`
		Filter          string     `json:"filter"`
		UserProperties  []jsonPair `json:"user_properties"`
	}
	jsonDisconnect struct {
		Direction       uint8      `json:"direction"`
		ReasonCode      uint8      `json:"reason_code"`
		ProtocolVersion uint8      `json:"protocol_version"`
		ClientID        string     `json:"client_id"`
		Username        string     `json:"username"`
		ReasonString    string     `json:"reason_string"`
		UserProperties  []jsonPair `json:"user_properties"`
	}
	jsonPublish struct {
		QoS      uint8  `json:"qos"`
		Flags    uint8  `json:"flags"`
		ClientID string `json:"client_id"`
		Username string `json:"username"`
		Topic    string `json:"topic"`
		Payload  []byte `json:"payload"`
	}
	jsonSubscribe struct {
		QoS      uint8  `json:"qos"`
		Flags    uint8  `json:"flags"`
		ClientID string `json:"client_id"`
		Username string `json:"username"`
		Filter   string `json:"filter"`
	}
	jsonEvent struct {
		Event           uint8  `json:"event"`
		DisconnectKind  uint8  `json:"disconnect_kind"`
		ReasonCode      uint8  `json:"reason_code"`
		ProtocolVersion uint8  `json:"protocol_version"`
		Time            uint64 `json:"time"`
		ClientID        string `json:"client_id"`
		Username        string `json:"username"`
		Listener        string `json:"listener"`
		RemoteAddr      string `json:"remote_addr"`
		ReasonString    string `json:"reason_string"`
		Filters         []struct {
			Filter string `json:"filter"`
			QoS    uint8  `json:"qos"`
			Code   uint8  `json:"code"`
		} `json:"filters"`
	}
)

// wantFromJSON converts a vector's JSON values into what the SDK's decoder
// must produce for a record of kind.
func wantFromJSON(t *testing.T, kind uint16, data []byte) any {
	t.Helper()
	dec := func(v any) {
		d := json.NewDecoder(strings.NewReader(string(data)))
		d.DisallowUnknownFields() // a field the SDK does not know fails loudly
		if err := d.Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	switch kind {
	case kindStart:
		var j jsonStart
		dec(&j)
		s := StartInfo{ID: j.ExtensionID, Version: j.ExtensionVersion, BrokerVersion: j.BrokerVersion, PreviousVersion: j.PreviousVersion, Instance: j.Instance}
		if j.Config != "" {
			s.Config = []byte(j.Config)
		}
		return s
	case kindConnect:
		var j jsonConnect
		dec(&j)
		c := &Connect{
			ProtocolVersion: j.ProtocolVersion,
			CleanStart:      j.Flags&1 != 0,
			HasUsername:     j.Flags&2 != 0,
			HasPassword:     j.Flags&4 != 0,
			TLS:             j.Flags&32 != 0,
			Keepalive:       j.Keepalive,
			SessionExpiry:   j.SessionExpiry,
			ClientID:        j.ClientID,
			Username:        j.Username,
			Password:        j.Password,
			RemoteAddr:      j.RemoteAddr,
			Listener:        j.Listener,
			TLSSubject:      j.TLSSubject,
			TLSSANs:         j.TLSSANs,
			ReceiveMaximum:  j.ReceiveMaximum,
		}
		if j.Flags&8 != 0 {
			c.Will = &Will{Topic: j.WillTopic, Payload: j.WillPayload, QoS: j.WillQoS, Retain: j.Flags&16 != 0, Delay: j.WillDelay}
		}
		for _, p := range j.UserProperties {
			c.UserProperties = append(c.UserProperties, UserProperty{Key: p.Key, Value: p.Value})
		}
		return c
	case kindPublish:
		var j jsonPublish
		dec(&j)
		return &Publish{QoS: j.QoS, Retain: j.Flags&1 != 0, Will: j.Flags&2 != 0, ClientID: j.ClientID, Username: j.Username, Topic: j.Topic, Payload: j.Payload}
	case kindSubscribe:
		var j jsonSubscribe
		dec(&j)
		return &Subscribe{QoS: j.QoS, Shared: j.Flags&1 != 0, ClientID: j.ClientID, Username: j.Username, Filter: j.Filter}
	case kindEvent:
		var j jsonEvent
		dec(&j)
		e := &Event{
			Kind:            EventKind(j.Event),
			DisconnectKind:  DisconnectKind(j.DisconnectKind),
			ReasonCode:      j.ReasonCode,
			ProtocolVersion: j.ProtocolVersion,
			Time:            time.Unix(0, int64(j.Time)),
			ClientID:        j.ClientID,
			Username:        j.Username,
			Listener:        j.Listener,
			RemoteAddr:      j.RemoteAddr,
			ReasonString:    j.ReasonString,
		}
		for _, f := range j.Filters {
			e.Filters = append(e.Filters, FilterResult{Filter: f.Filter, QoS: f.QoS, ReasonCode: f.Code})
		}
		return e
	case kindConnack:
		var j jsonConnack
		dec(&j)
		return &ConnackPacket{ReasonCode: j.ReasonCode, SessionPresent: j.Flags&1 != 0, ProtocolVersion: j.ProtocolVersion,
			ClientID: j.ClientID, Username: j.Username, ReasonString: j.ReasonString, UserProperties: pairs(j.UserProperties)}
	case kindMessage:
		var j jsonMessage
		dec(&j)
		return &PublishPacket{Outbound: j.Direction == 2, ProtocolVersion: j.ProtocolVersion, ClientID: j.ClientID,
			Username: j.Username, Publisher: j.Publisher, QoS: j.QoS, Retain: j.Flags&1 != 0, PayloadFormat: j.PayloadFormat,
			MessageExpiry: j.MessageExpiry, Topic: j.Topic, Payload: nilIfEmpty(j.Payload), UserProperties: pairs(j.UserProperties),
			ContentType: j.ContentType, ResponseTopic: j.ResponseTopic, CorrelationData: nilIfEmpty(j.CorrelationData)}
	case kindSubscription:
		var j jsonSubscription
		dec(&j)
		return &SubscriptionPacket{QoS: j.QoS, NoLocal: j.Options&1 != 0, RetainAsPublished: j.Options&2 != 0,
			RetainHandling: j.Options >> 2 & 3, ProtocolVersion: j.ProtocolVersion, Shared: j.Flags&1 != 0,
			Identifier: j.Identifier, ClientID: j.ClientID, Username: j.Username, Filter: j.Filter, UserProperties: pairs(j.UserProperties)}
	case kindDisconnect:
		var j jsonDisconnect
		dec(&j)
		return &DisconnectPacket{Outbound: j.Direction == 2, ReasonCode: j.ReasonCode, ProtocolVersion: j.ProtocolVersion,
			ClientID: j.ClientID, Username: j.Username, ReasonString: j.ReasonString, UserProperties: pairs(j.UserProperties)}
	}
	t.Fatalf("vector of unknown kind %d", kind)
	return nil
}

// decodeAny decodes a record of any kind with the SDK's decoders.
func decodeAny(rec []byte) (any, error) {
	if len(rec) < headerSize {
		return nil, errTruncated
	}
	switch binary.LittleEndian.Uint16(rec[4:]) {
	case kindStart:
		return decodeStart(rec)
	case kindConnect:
		var c Connect
		return &c, decodeConnect(rec, &c)
	case kindPublish:
		var p Publish
		return &p, decodePublish(rec, &p)
	case kindSubscribe:
		var s Subscribe
		return &s, decodeSubscribe(rec, &s)
	case kindEvent:
		return decodeEvent(rec)
	case kindConnack:
		var a ConnackPacket
		return &a, decodeConnack(rec, &a)
	case kindMessage:
		var p PublishPacket
		return &p, decodeMessageRecord(rec, &p)
	case kindSubscription:
		var s SubscriptionPacket
		return &s, decodeSubscription(rec, &s)
	case kindDisconnect:
		var d DisconnectPacket
		return &d, decodeDisconnect(rec, &d)
	}
	return nil, errKind
}

// pairs converts a vector's user properties (nil when none).
func pairs(ps []jsonPair) []UserProperty {
	var out []UserProperty
	for _, p := range ps {
		out = append(out, UserProperty{Key: p.Key, Value: p.Value})
	}
	return out
}

// nilIfEmpty maps an empty byte slice to nil, as the decoders' views are.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func TestVectors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no vectors in %s", vectorDir)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".hex")
		t.Run(name, func(t *testing.T) {
			rec := readHex(t, file)
			if got := binary.LittleEndian.Uint32(rec); int(got) != len(rec) {
				t.Fatalf("header length %d, record has %d bytes", got, len(rec))
			}
			data, err := os.ReadFile(strings.TrimSuffix(file, ".hex") + ".json")
			if err != nil {
				t.Fatal(err)
			}
			kind := binary.LittleEndian.Uint16(rec[4:])
			want := wantFromJSON(t, kind, data)
			got, err := decodeAny(rec)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
			}

			// A later minor version appends fields: they are ignored.
			longer := append(append([]byte(nil), rec...), 1, 2, 3, 4, 5, 6, 7, 8, 9)
			binary.LittleEndian.PutUint32(longer, uint32(len(longer)))
			if got, err := decodeAny(longer); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("with appended fields: %+v, %v", got, err)
			}
			// Bytes beyond the header's length are not part of the record.
			if got, err := decodeAny(append(append([]byte(nil), rec...), 0xff, 0xff)); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("with trailing bytes: %+v, %v", got, err)
			}
			// Any shorter header length decodes or fails cleanly.
			for n := headerSize; n < len(rec); n++ {
				cut := append([]byte(nil), rec[:n]...)
				binary.LittleEndian.PutUint32(cut, uint32(n))
				decodeAny(cut)
			}
			// A header length beyond the bytes given is refused.
			if _, err := decodeAny(rec[:len(rec)-1]); err == nil {
				t.Error("record shorter than its header length decoded")
			}
		})
	}
}

// makeRecord builds a record of kind from field bytes.
func makeRecord(kind uint16, fields ...[]byte) []byte {
	rec := make([]byte, headerSize)
	binary.LittleEndian.PutUint16(rec[4:], kind)
	for _, f := range fields {
		rec = append(rec, f...)
	}
	binary.LittleEndian.PutUint32(rec, uint32(len(rec)))
	return rec
}

// str encodes a str field.
func str(s string) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(s))), s...)
}

func TestDecodeOlderMinor(t *testing.T) {
	// A record that ends early (written for an older minor) decodes with
	// zero values for the missing fields.
	var p Publish
	rec := makeRecord(kindPublish, []byte{1, 1, 0, 0}, str("c1"), str("u"))
	if err := decodePublish(rec, &p); err != nil {
		t.Fatal(err)
	}
	want := Publish{QoS: 1, Retain: true, ClientID: "c1", Username: "u"}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v, want %+v", p, want)
	}

	// A START from an ABI 1.0 host has no instance field: instance 0.
	info, err := decodeStart(makeRecord(kindStart, str("acl"), str("1.0.0"), str("b"), str(""), str("{}")))
	if err != nil || info.Instance != 0 || info.ID != "acl" || string(info.Config) != "{}" {
		t.Errorf("START of ABI 1.0: %+v, %v", info, err)
	}

	e, err := decodeEvent(makeRecord(kindEvent, []byte{2, 0, 0, 5}))
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != EventAuthSucceeded || e.ProtocolVersion != 5 || !e.Time.IsZero() || e.Filters != nil {
		t.Errorf("got %+v", e)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		rec  []byte
	}{
		{"empty", nil},
		{"short header", []byte{8, 0, 0, 0, 3, 0}},
		{"length below header", []byte{4, 0, 0, 0, 3, 0, 0, 0}},
		{"wrong kind", makeRecord(kindSubscribe, []byte{0, 0, 0, 0})},
		{"str cut short", makeRecord(kindPublish, []byte{0, 0, 0, 0}, str("client")[:7])},
		{"length cut short", makeRecord(kindPublish, []byte{0, 0, 0, 0}, []byte{1, 0})},
	}
	for _, tt := range tests {
		var p Publish
		if err := decodePublish(tt.rec, &p); err == nil {
			t.Errorf("%s: decoded %+v", tt.name, p)
		}
	}
	// A huge list count in a small record fails without allocating it.
	rec := makeRecord(kindEvent, make([]byte, 12), str(""), str(""), str(""), str(""), str(""), []byte{0xff, 0xff, 0xff, 0x7f})
	if _, err := decodeEvent(rec); err == nil {
		t.Error("event with an impossible filter count decoded")
	}
}

func TestStartDecodeConfig(t *testing.T) {
	info, err := decodeStart(readHex(t, filepath.Join(vectorDir, "start.hex")))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ Prefix string }
	if err := info.DecodeConfig(&cfg); err != nil || cfg.Prefix != "devices" {
		t.Errorf("DecodeConfig: %+v, %v", cfg, err)
	}
	cfg.Prefix = "default"
	if err := (StartInfo{}).DecodeConfig(&cfg); err != nil || cfg.Prefix != "default" {
		t.Errorf("DecodeConfig of empty config: %+v, %v", cfg, err)
	}
	if err := (StartInfo{Config: []byte(`{"prefix": 3}`)}).DecodeConfig(&cfg); err == nil {
		t.Error("DecodeConfig of a mistyped config succeeded")
	}
}

// TestConnectCloneOutlivesTheRecord decodes a CONNECT, clones it, then
// overwrites the record and decodes another: the clone keeps the first
// client's values while the views follow the memory.
func TestConnectCloneOutlivesTheRecord(t *testing.T) {
	rec := readHex(t, filepath.Join(vectorDir, "connect.hex"))
	var c Connect
	if err := decodeConnect(rec, &c); err != nil {
		t.Fatal(err)
	}
	want := c.Clone()
	if !reflect.DeepEqual(want, &c) {
		t.Fatalf("clone %+v differs from %+v", want, &c)
	}
	for i := headerSize; i < len(rec); i++ {
		rec[i] = 'x' // the host writes the next record over this one
	}
	if reflect.DeepEqual(want, &c) {
		t.Fatal("views did not follow the record's memory (test proves nothing)")
	}
	if want.ClientID != "sensor-1" || want.Will == nil || want.Will.Topic != "devices/sensor-1/status" {
		t.Fatalf("clone changed with the record: %+v", want)
	}
}
