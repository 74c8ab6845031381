package abi

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.hex and *.json from the Go encoder")

// field is one field of a record layout, as ABI.md lists it.
type field struct{ name, typ string }

// layouts spells out ABI.md section 4 independently of the encoder, so the
// vectors cross-check it. Types: u8 u16 u32 u64 str strs (list<str>) pairs
// (list<str,str>) filters (list<str,u8,u8>).
var layouts = map[uint16][]field{
	KindStart: {{"extension_id", "str"}, {"extension_version", "str"}, {"broker_version", "str"}, {"previous_version", "str"}, {"config", "str"}, {"instance", "u32"}},
	KindConnect: {{"protocol_version", "u8"}, {"flags", "u8"}, {"will_qos", "u8"}, {"reserved", "u8"}, {"keepalive", "u16"}, {"reserved", "u16"},
		{"session_expiry", "u32"}, {"client_id", "str"}, {"username", "str"}, {"password", "str"}, {"remote_addr", "str"}, {"listener", "str"},
		{"tls_subject", "str"}, {"tls_sans", "strs"}, {"will_topic", "str"}, {"will_payload", "str"}, {"user_properties", "pairs"},
		{"receive_maximum", "u16"}, {"reserved", "u16"}, {"will_delay", "u32"}},
	KindPublish:   {{"qos", "u8"}, {"flags", "u8"}, {"reserved", "u16"}, {"client_id", "str"}, {"username", "str"}, {"topic", "str"}, {"payload", "str"}},
	KindSubscribe: {{"qos", "u8"}, {"flags", "u8"}, {"reserved", "u16"}, {"client_id", "str"}, {"username", "str"}, {"filter", "str"}},
	KindEvent: {{"event", "u8"}, {"disconnect_kind", "u8"}, {"reason_code", "u8"}, {"protocol_version", "u8"}, {"time", "u64"},
		{"client_id", "str"}, {"username", "str"}, {"listener", "str"}, {"remote_addr", "str"}, {"reason_string", "str"}, {"filters", "filters"}},
	KindConnack: {{"reason_code", "u8"}, {"flags", "u8"}, {"protocol_version", "u8"}, {"reserved", "u8"},
		{"client_id", "str"}, {"username", "str"}, {"reason_string", "str"}, {"user_properties", "pairs"}},
	KindMessage: {{"direction", "u8"}, {"protocol_version", "u8"}, {"reserved", "u16"}, {"client_id", "str"}, {"username", "str"},
		{"publisher", "str"}, {"qos", "u8"}, {"flags", "u8"}, {"payload_format", "u8"}, {"reserved", "u8"}, {"message_expiry", "u32"},
		{"topic", "str"}, {"payload", "str"}, {"user_properties", "pairs"}, {"content_type", "str"}, {"response_topic", "str"},
		{"correlation_data", "str"}},
	KindSubscription: {{"qos", "u8"}, {"options", "u8"}, {"protocol_version", "u8"}, {"flags", "u8"}, {"identifier", "u32"},
		{"client_id", "str"}, {"username", "str"}, {"filter", "str"}, {"user_properties", "pairs"}},
	KindDisconnect: {{"direction", "u8"}, {"reason_code", "u8"}, {"protocol_version", "u8"}, {"reserved", "u8"},
		{"client_id", "str"}, {"username", "str"}, {"reason_string", "str"}, {"user_properties", "pairs"}},
}

// vectors are the sample records shared with every SDK's tests.
var vectors = []struct {
	name   string
	record interface{ Encode([]byte) []byte }
}{
	{"start", &StartRecord{ExtensionID: "topic-acl", ExtensionVersion: "1.2.0", BrokerVersion: "0.1.0", PreviousVersion: "1.1.0", Config: `{"prefix":"devices"}`, Instance: 2}},
	{"connect", &ConnectRecord{ProtocolVersion: 5, Flags: ConnectCleanStart | ConnectHasUsername | ConnectHasPassword | ConnectHasWill | ConnectTLS,
		WillQoS: 1, Keepalive: 60, SessionExpiry: 3600, ClientID: "sensor-1", Username: "alice", Password: []byte{0x00, 's', 'e', 'c', 0xff},
		RemoteAddr: "127.0.0.1:50000", Listener: "tls", TLSSubject: "CN=sensor-1,O=acme", TLSSANs: []string{"sensor-1.acme.test", "10.0.0.1"},
		WillTopic: "devices/sensor-1/status", WillPayload: []byte("offline"), UserProperties: []Pair{{"site", "berlin"}, {"fw", "2.1"}},
		ReceiveMaximum: 20, WillDelay: 30}},
	{"connect_minimal", &ConnectRecord{ProtocolVersion: 4, ClientID: "c"}},
	{"publish", &PublishRecord{QoS: 2, Flags: PublishRetain, ClientID: "sensor-1", Username: "alice", Topic: "devices/sensor-1/temp", Payload: []byte{0x32, 0x31, 0x2e, 0x35}}},
	{"subscribe", &SubscribeRecord{QoS: 1, Flags: SubscribeShared, ClientID: "worker-3", Username: "bob", Filter: "$share/g/jobs/#"}},
	{"event", &EventRecord{Event: EventDisconnect, DisconnectKind: 2, ReasonCode: 0x8d, ProtocolVersion: 5, Time: 1763683200123456789,
		ClientID: "sensor-1", Username: "alice", Listener: "tcp", RemoteAddr: "127.0.0.1:50000", ReasonString: "keep alive timeout"}},
	{"event_subscribe", &EventRecord{Event: EventSubscribe, ProtocolVersion: 4, Time: 1, ClientID: "c", Listener: "tcp",
		Filters: []FilterResult{{"a/#", 1, 1}, {"secret/#", 2, 0x87}}}},
	{"connack", &ConnackRecord{ReasonCode: 0, Flags: ConnackSessionPresent, ProtocolVersion: 5, ClientID: "sensor-1", Username: "alice",
		ReasonString: "welcome", UserProperties: []Pair{{"node", "eu-1"}}}},
	{"message_inbound", &MessageRecord{Direction: Inbound, ProtocolVersion: 5, ClientID: "sensor-1", Username: "alice", Publisher: "sensor-1",
		Message: Message{QoS: 1, Flags: PublishRetain, PayloadFormat: 1, MessageExpiry: 3600, Topic: "legacy/sensor-1/temp", Payload: []byte("21.5"),
			UserProperties: []Pair{{"unit", "C"}}, ContentType: "text/plain", ResponseTopic: "replies/sensor-1", CorrelationData: []byte{0x01, 0x00, 0xff}}}},
	{"message_outbound", &MessageRecord{Direction: Outbound, ProtocolVersion: 4, ClientID: "dashboard", Publisher: "sensor-1",
		Message: Message{Topic: "sensors/sensor-1/temperature", Payload: []byte{0x00, 0x01}}}},
	{"subscription", &SubscriptionRecord{QoS: 2, Options: SubscriptionNoLocal | 2<<SubscriptionRetainHandlingShift, ProtocolVersion: 5,
		Identifier: 7, ClientID: "worker-3", Username: "bob", Filter: "jobs/+/new", UserProperties: []Pair{{"team", "blue"}}}},
	{"disconnect", &DisconnectRecord{Direction: Outbound, ReasonCode: 0x8b, ProtocolVersion: 5, ClientID: "sensor-1", Username: "alice",
		ReasonString: "shutting down"}},
}

// annotate renders rec as hex, one field per line, commented with the
// field's name and value.
func annotate(t *testing.T, rec []byte) string {
	var b strings.Builder
	kind := binary.LittleEndian.Uint16(rec[4:])
	fmt.Fprintf(&b, "%s # header.length = %d\n", hex.EncodeToString(rec[0:4]), binary.LittleEndian.Uint32(rec))
	fmt.Fprintf(&b, "%s # header.kind = %d\n", hex.EncodeToString(rec[4:6]), kind)
	fmt.Fprintf(&b, "%s # header.minor = %d\n", hex.EncodeToString(rec[6:8]), binary.LittleEndian.Uint16(rec[6:]))
	p := rec[8:]
	take := func(n int) []byte {
		if len(p) < n {
			t.Fatalf("record shorter than its layout")
		}
		v := p[:n]
		p = p[n:]
		return v
	}
	str := func(name string) {
		n := int(binary.LittleEndian.Uint32(take(4)))
		v := take(n)
		fmt.Fprintf(&b, "%s %s # %s = %q\n", hex.EncodeToString(rec[len(rec)-len(p)-n-4:len(rec)-len(p)-n]), hex.EncodeToString(v), name, v)
	}
	for _, f := range layouts[kind] {
		switch f.typ {
		case "u8":
			v := take(1)
			fmt.Fprintf(&b, "%s # %s = %d\n", hex.EncodeToString(v), f.name, v[0])
		case "u16":
			v := take(2)
			fmt.Fprintf(&b, "%s # %s = %d\n", hex.EncodeToString(v), f.name, binary.LittleEndian.Uint16(v))
		case "u32":
			v := take(4)
			fmt.Fprintf(&b, "%s # %s = %d\n", hex.EncodeToString(v), f.name, binary.LittleEndian.Uint32(v))
		case "u64":
			v := take(8)
			fmt.Fprintf(&b, "%s # %s = %d\n", hex.EncodeToString(v), f.name, binary.LittleEndian.Uint64(v))
		case "str":
			str(f.name)
		case "strs", "pairs", "filters":
			v := take(4)
			n := int(binary.LittleEndian.Uint32(v))
			fmt.Fprintf(&b, "%s # %s: %d entries\n", hex.EncodeToString(v), f.name, n)
			for i := 0; i < n; i++ {
				switch f.typ {
				case "strs":
					str(fmt.Sprintf("%s[%d]", f.name, i))
				case "pairs":
					str(fmt.Sprintf("%s[%d].key", f.name, i))
					str(fmt.Sprintf("%s[%d].value", f.name, i))
				case "filters":
					str(fmt.Sprintf("%s[%d].filter", f.name, i))
					q, c := take(1), take(1)
					fmt.Fprintf(&b, "%s # %s[%d].qos = %d\n", hex.EncodeToString(q), f.name, i, q[0])
					fmt.Fprintf(&b, "%s # %s[%d].code = %d\n", hex.EncodeToString(c), f.name, i, c[0])
				}
			}
		}
	}
	if len(p) != 0 {
		t.Fatalf("%d bytes after the last field of kind %d", len(p), kind)
	}
	return b.String()
}

// ParseHex reads an annotated vector: hex digits, with "#" comments.
func parseHex(t *testing.T, s string) []byte {
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors checks the encoder against the committed vectors (the
// contract every SDK's decoder is tested on) and the decoder against the
// values.
func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			rec := v.record.Encode(nil)
			hexFile := filepath.Join("testdata", v.name+".hex")
			jsonFile := filepath.Join("testdata", v.name+".json")
			if *update {
				js, _ := json.MarshalIndent(v.record, "", "  ")
				header := fmt.Sprintf("# %s record, ABI %s; values in %s.json. Regenerate: go test ./abi -run TestVectors -update\n", v.name, Version, v.name)
				if err := os.WriteFile(hexFile, []byte(header+annotate(t, rec)), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(jsonFile, append(js, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(hexFile)
			if err != nil {
				t.Fatal(err)
			}
			if got := parseHex(t, string(want)); !reflect.DeepEqual(got, rec) {
				t.Fatalf("encoder output differs from %s:\n got %x\nwant %x", hexFile, rec, got)
			}
			annotate(t, rec) // the layout table agrees with the encoder
			var decoded any
			switch v.record.(type) {
			case *StartRecord:
				decoded, err = DecodeStart(rec)
			case *ConnectRecord:
				decoded, err = DecodeConnect(rec)
			case *PublishRecord:
				decoded, err = DecodePublish(rec)
			case *SubscribeRecord:
				decoded, err = DecodeSubscribe(rec)
			case *EventRecord:
				decoded, err = DecodeEvent(rec)
			case *ConnackRecord:
				decoded, err = DecodeConnack(rec)
			case *MessageRecord:
				decoded, err = DecodeMessageRecord(rec)
			case *SubscriptionRecord:
				decoded, err = DecodeSubscription(rec)
			case *DisconnectRecord:
				decoded, err = DecodeDisconnect(rec)
			default:
				t.Fatalf("no decoder for %T", v.record)
			}
			if err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(decoded)
			b, _ := json.Marshal(v.record)
			if string(a) != string(b) {
				t.Fatalf("decoded %s\n   want %s", a, b)
			}
		})
	}
}

func TestShorterRecordReadsZeroes(t *testing.T) {
	rec := (&PublishRecord{QoS: 1, ClientID: "c", Username: "u", Topic: "t", Payload: []byte("p")}).Encode(nil)
	// Cut after username, as a host of an older minor version without the
	// later fields would send it.
	cut := append([]byte(nil), rec[:8+4+4+1+4+1]...)
	binary.LittleEndian.PutUint32(cut, uint32(len(cut)))
	p, err := DecodePublish(cut)
	if err != nil || p.Topic != "" || p.Payload != nil || p.Username != "u" {
		t.Fatalf("got %+v, %v", p, err)
	}
	half := append([]byte(nil), rec[:8+4+4+1+2]...)
	binary.LittleEndian.PutUint32(half, uint32(len(half)))
	if _, err := DecodePublish(half); err == nil {
		t.Fatal("a field cut in half decoded without error")
	}
}

func TestDecodeDecision(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   uint32
		d    Decision
		code byte
		ok   bool
	}{
		{"allow", 1, DecisionAllow, 0, true},
		{"next", 0, DecisionNext, 0, true},
		{"deny 0x86", 0x8602, DecisionDeny, 0x86, true},
		{"disconnect 0x98", 0x9803, DecisionDisconnect, 0x98, true},
		{"unknown decision", 4, 0, 0, false},
		{"high bits", 0x10001, 0, 0, false},
		{"success code on deny", 0x0502, 0, 0, false},
		{"garbage", 0xffffffff, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, code, ok := DecodeDecision(tc.in)
			if d != tc.d || code != tc.code || ok != tc.ok {
				t.Fatalf("DecodeDecision(%#x) = %d %#x %v", tc.in, d, code, ok)
			}
		})
	}
}

func TestPermissionRoundTrip(t *testing.T) {
	p := Permission{Decision: PermAllow, Activity: ActivityBoth, QoS: 3, Retain: RetainNotRetained, Filter: "devices/{clientid}/#"}
	got, err := DecodePermission(p.Encode(nil))
	if err != nil || got != p {
		t.Fatalf("got %+v, %v", got, err)
	}
	bad := p
	bad.Activity = 9
	if _, err := DecodePermission(bad.Encode(nil)); err == nil {
		t.Fatal("activity 9 accepted")
	}
	if _, err := DecodePermission([]byte{1, 1, 0}); err == nil {
		t.Fatal("short permission accepted")
	}
}
