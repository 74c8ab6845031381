// Command genv1 writes the format-1 data-folder fixture that the store's
// migration tests open: a pebble database in the layout of earlier
// propolis builds (JSON values under CL_, SUB_, IFM_ and RET_ keys) and a
// FORMAT file saying 1.
//
//	go run ./broker/store/internal/genv1 -out testdata/store/v1
//
// The JSON shapes below mirror the v1 types in broker/store/migrate_v1.go on
// purpose rather than sharing them: the fixture must stand for what an old
// build wrote, independently of the code that reads it. The records must
// match the expectations in broker/store/migrate_test.go.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cockroachdb/pebble"
)

type userProperty struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

type properties struct {
	PayloadFormat    byte           `json:"payload_format,omitempty"`
	PayloadFormatSet bool           `json:"payload_format_set,omitempty"`
	MessageExpiry    uint32         `json:"message_expiry,omitempty"`
	ContentType      string         `json:"content_type,omitempty"`
	ResponseTopic    string         `json:"response_topic,omitempty"`
	CorrelationData  []byte         `json:"correlation_data,omitempty"`
	SubscriptionIDs  []int          `json:"subscription_ids,omitempty"`
	User             []userProperty `json:"user,omitempty"`
}

type will struct {
	Topic      string      `json:"topic"`
	Payload    []byte      `json:"payload"`
	QoS        byte        `json:"qos"`
	Retain     bool        `json:"retain"`
	Delay      uint32      `json:"delay"`
	Properties *properties `json:"properties,omitempty"`
}

type session struct {
	ID                string         `json:"id"`
	Username          []byte         `json:"username"`
	Listener          string         `json:"listener"`
	Remote            string         `json:"remote"`
	ProtocolVersion   byte           `json:"protocol_version"`
	Clean             bool           `json:"clean"`
	SessionExpiry     uint32         `json:"session_expiry"`
	SessionExpirySet  bool           `json:"session_expiry_set,omitempty"`
	ReceiveMaximum    uint16         `json:"receive_maximum,omitempty"`
	TopicAliasMaximum uint16         `json:"topic_alias_maximum,omitempty"`
	MaximumPacketSize uint32         `json:"maximum_packet_size,omitempty"`
	UserProperties    []userProperty `json:"user_properties,omitempty"`
	Will              *will          `json:"will,omitempty"`
	ConnectedAt       int64          `json:"connected_at"`
	DisconnectedAt    int64          `json:"disconnected_at"`
}

type subscription struct {
	Client            string `json:"client"`
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local"`
	RetainAsPublished bool   `json:"retain_as_published"`
	RetainHandling    byte   `json:"retain_handling"`
	Identifier        int    `json:"identifier"`
}

type message struct {
	Client     string      `json:"client"`
	PacketID   uint16      `json:"packet_id"`
	Type       byte        `json:"type"`
	QoS        byte        `json:"qos"`
	Retain     bool        `json:"retain"`
	Dup        bool        `json:"dup,omitempty"`
	Topic      string      `json:"topic"`
	Payload    []byte      `json:"payload"`
	Origin     string      `json:"origin"`
	Created    int64       `json:"created"`
	Expiry     int64       `json:"expiry"`
	Sent       int64       `json:"sent,omitempty"`
	Properties *properties `json:"properties,omitempty"`
}

var sessions = []session{
	{ // MQTT 5, persistent for an hour, with a will.
		ID: "sensor-17", Username: []byte("alice"), Listener: "tcp1", Remote: "10.0.0.5:51234",
		ProtocolVersion: 5, SessionExpiry: 3600, SessionExpirySet: true,
		ReceiveMaximum: 32, TopicAliasMaximum: 10, MaximumPacketSize: 65536,
		Will: &will{
			Topic: "devices/sensor-17/status", Payload: []byte("offline"), QoS: 1, Retain: true, Delay: 30,
			Properties: &properties{MessageExpiry: 600, ContentType: "text/plain",
				User: []userProperty{{"reason", "will"}}},
		},
		ConnectedAt: 1700000000, DisconnectedAt: 1700003600,
	},
	{ // MQTT 3.1.1, persistent, no username; the broker died while it was connected.
		ID: "legacy-pump", Listener: "tcp1", Remote: "10.0.0.9:40000",
		ProtocolVersion: 4, ConnectedAt: 1699990000,
	},
	{ // MQTT 5 with user properties (a repeated key) and an id that needs care.
		ID: "dashboard ü/1", Username: []byte("bob"), Listener: "ws", Remote: "[2001:db8::7]:443",
		ProtocolVersion: 5, Clean: true,
		UserProperties: []userProperty{{"region", "eu-west"}, {"tier", "gold"}, {"region", "eu-central"}},
		ConnectedAt:    1700000500, DisconnectedAt: 1700000900,
	},
}

var subscriptions = []subscription{
	{Client: "sensor-17", Filter: "cmd/sensor-17/#", QoS: 1, NoLocal: true, Identifier: 7},
	{Client: "sensor-17", Filter: "config/+/sensor", QoS: 2, RetainAsPublished: true, RetainHandling: 1},
	{Client: "legacy-pump", Filter: "pumps/legacy-pump/set", QoS: 1},
	{Client: "legacy-pump", Filter: "broadcast", QoS: 0},
	{Client: "dashboard ü/1", Filter: "devices/+/status", QoS: 1, RetainHandling: 2, Identifier: 42},
}

var inflight = []message{
	{Client: "sensor-17", PacketID: 1, Type: 3, QoS: 1, Topic: "cmd/sensor-17/reboot",
		Payload: []byte("now"), Origin: "dashboard ü/1", Created: 1001, Sent: 1700000100,
		Properties: &properties{PayloadFormat: 1, PayloadFormatSet: true, SubscriptionIDs: []int{7}}},
	{Client: "sensor-17", PacketID: 2, Type: 6, QoS: 2, Topic: "cmd/sensor-17/fw",
		Payload: []byte{0x00, 0xff, 0x10, 0x80, 0x7f, 0x00}, Origin: "dashboard ü/1", Created: 1002, Sent: 1700000101},
	{Client: "legacy-pump", PacketID: 300, Type: 3, QoS: 2, Dup: true, Topic: "pumps/legacy-pump/set",
		Payload: []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01}, Origin: "sensor-17", Created: 1003, Expiry: 1700007200},
	{Client: "legacy-pump", PacketID: 65535, Type: 3, QoS: 1, Topic: "broadcast",
		Payload: []byte{}, Origin: "dashboard ü/1", Created: 999,
		Properties: &properties{ResponseTopic: "replies/dashboard", CorrelationData: []byte{0x01, 0x02}}},
}

var retained = []message{
	{Client: "sensor-17", Type: 3, QoS: 1, Retain: true, Topic: "devices/sensor-17/status",
		Payload: []byte("online"), Origin: "sensor-17", Created: 900,
		Properties: &properties{PayloadFormat: 1, PayloadFormatSet: true, ContentType: "text/plain"}},
	{Client: "legacy-pump", Type: 3, QoS: 0, Retain: true, Topic: "pumps/legacy-pump/rpm",
		Payload: []byte{0xaa, 0x05, 0x00, 0x00}, Origin: "legacy-pump", Created: 901, Expiry: 1800000000},
}

func main() {
	out := flag.String("out", "testdata/store/v1", "folder to write the fixture to (must not exist or be empty)")
	flag.Parse()
	if err := run(*out); err != nil {
		log.Fatal(err)
	}
}

func run(dir string) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("generate fixture %s: folder is not empty, remove it first", dir)
	}
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		return fmt.Errorf("generate fixture %s: %w", dir, err)
	}
	b := db.NewBatch()
	put := func(key string, v any) error {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		return b.Set([]byte(key), raw, nil)
	}
	for _, s := range sessions {
		if err := put("CL_"+s.ID, s); err != nil {
			return err
		}
	}
	for _, s := range subscriptions {
		if err := put("SUB_"+s.Client+":"+s.Filter, s); err != nil {
			return err
		}
	}
	for _, m := range inflight {
		if err := put("IFM_"+m.Client+"_"+strconv.Itoa(int(m.PacketID)), m); err != nil {
			return err
		}
	}
	for _, m := range retained {
		if err := put("RET_"+m.Topic, m); err != nil {
			return err
		}
	}
	if err := db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("generate fixture %s: %w", dir, err)
	}
	// Move everything into one table so the folder stays small and holds
	// no write-ahead log entries.
	if err := db.Flush(); err != nil {
		return fmt.Errorf("generate fixture %s: flush: %w", dir, err)
	}
	if err := db.Compact([]byte{0}, []byte{0xff}, false); err != nil {
		return fmt.Errorf("generate fixture %s: compact: %w", dir, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("generate fixture %s: close: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "FORMAT"), []byte("propolis-data 1\n"), 0o644); err != nil {
		return fmt.Errorf("generate fixture %s: %w", dir, err)
	}
	fmt.Printf("wrote %d sessions, %d subscriptions, %d in-flight and %d retained records to %s\n",
		len(sessions), len(subscriptions), len(inflight), len(retained), dir)
	return nil
}
