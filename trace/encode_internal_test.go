package trace

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
)

// TestAppendLineIsJSONMarshal: appendLine writes exactly what json.Marshal
// writes for the same Line, for every packet type and field, tricky
// strings (escapes, HTML characters, invalid UTF-8, U+2028) and random
// ones.
func TestAppendLineIsJSONMarshal(t *testing.T) {
	tricky := []string{"", "plain", `q"uo\te`, "<a&b>", "ctl\x00\x01\x08\x0c\n\r\t\x1f", "bad\xff\xfeutf8", "line\u2028sep\u2029",
		"émoji 🐝", "\x7f", "\xed\xa0\x80"}
	at := time.Date(2026, 11, 30, 0, 45, 12, 123456789, time.UTC)
	var packets []broker.TracedPacket
	for i, s := range tricky {
		packets = append(packets,
			broker.TracedPacket{Time: at, ClientID: s, Inbound: true, Type: "CONNECT", TypeCode: 1, ProtocolVersion: 5, Username: s,
				PasswordSet: true, KeepAlive: 60, CleanStart: i%2 == 0, WillTopic: s, WillQoS: 2, WillRetain: true,
				Properties: map[string]any{"session_expiry_interval": uint32(3600), "receive_maximum": uint16(10), "authentication_data": []byte(s),
					"request_problem_information": byte(1), "authentication_method": s},
				UserProperties: []broker.UserProperty{{Key: s, Value: s}, {Key: "k", Value: ""}}},
			broker.TracedPacket{Time: at.Add(time.Duration(i)), ClientID: "c", Type: "CONNACK", TypeCode: 2, ProtocolVersion: 4, ReasonCode: byte(i),
				SessionPresent: i%2 == 1},
			broker.TracedPacket{Time: at, ClientID: "c", Inbound: i%2 == 0, Type: "PUBLISH", TypeCode: 3, ProtocolVersion: 5, PacketID: uint16(i),
				Topic: s, QoS: byte(i % 3), Retain: i%2 == 0, Dup: i%3 == 0, Payload: []byte(s),
				Properties: map[string]any{"content_type": s, "correlation_data": []byte{0, 1, 2}, "subscription_identifier": []int{1, 268435455},
					"message_expiry_interval": uint32(4294967295), "payload_format_indicator": byte(1)}},
			broker.TracedPacket{Time: at, ClientID: "c", Type: "PUBACK", TypeCode: 4, ProtocolVersion: 5, PacketID: 65535, ReasonCode: 0x97, ReasonString: s},
			broker.TracedPacket{Time: at, ClientID: "c", Type: "PUBACK", TypeCode: 4, ProtocolVersion: 4, PacketID: 1},
			broker.TracedPacket{Time: at, ClientID: "c", Inbound: true, Type: "SUBSCRIBE", TypeCode: 8, ProtocolVersion: 5, PacketID: 3,
				Filters: []broker.SubscriptionInfo{{Filter: s, QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, Identifier: 77}, {Filter: "a/#"}}},
			broker.TracedPacket{Time: at, ClientID: "c", Type: "SUBACK", TypeCode: 9, ProtocolVersion: 5, PacketID: 3, ReasonCodes: []byte{0, 1, 2, 0x80}},
			broker.TracedPacket{Time: at, ClientID: "c", Inbound: true, Type: "UNSUBSCRIBE", TypeCode: 10, ProtocolVersion: 5, PacketID: 4,
				Filters: []broker.SubscriptionInfo{{Filter: s}}},
			broker.TracedPacket{Time: at, ClientID: "c", Inbound: true, Type: "PINGREQ", TypeCode: 12, ProtocolVersion: 4},
			broker.TracedPacket{Time: at.In(time.FixedZone("x", 3600)), ClientID: "c", Inbound: true, Type: "DISCONNECT", TypeCode: 14, ProtocolVersion: 5,
				ReasonCode: 4, Properties: map[string]any{"server_reference": s}},
		)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune{'a', '"', '\\', '<', '>', '&', 0, 0x1f, '\n', 0x2028, 0x2029, 'é', '🐝', 0x7f, 0xfffd}
	for range 500 {
		s := make([]byte, 0, 16)
		for range rng.IntN(12) {
			if rng.IntN(8) == 0 {
				s = append(s, byte(0x80+rng.IntN(0x80))) // a stray byte, invalid UTF-8
				continue
			}
			s = append(s, string(alphabet[rng.IntN(len(alphabet))])...)
		}
		packets = append(packets, broker.TracedPacket{Time: at, ClientID: string(s), Type: "PUBLISH", TypeCode: 3, ProtocolVersion: 5,
			Topic: string(s), Payload: s, ReasonString: string(s), UserProperties: []broker.UserProperty{{Key: string(s), Value: string(s)}}})
	}
	for i := range packets {
		l := lineOf(&packets[i])
		want, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		got := appendLine(nil, &l)
		if !bytes.Equal(got, want) {
			t.Fatalf("packet %d:\nappendLine   %s\njson.Marshal %s", i, got, want)
		}
		line, err := encodeLine(&packets[i])
		if err != nil || !bytes.Equal(line, append(want, '\n')) {
			t.Fatalf("encodeLine(packet %d) = %s, %v", i, line, err)
		}
	}
	if _, err := encodeLine(&broker.TracedPacket{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("a time past year 9999 encoded")
	}
}
