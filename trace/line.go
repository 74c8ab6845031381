package trace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/propolis-mqtt/propolis/broker"
)

// Line is one packet in a recording's files: one JSON object per line,
// keys in snake_case, fields a packet does not have left out. It is the
// file format; readers of the files (and of the zip) decode into it.
type Line struct {
	// Time is when the broker read the packet or began writing it
	// (RFC 3339 with nanoseconds).
	Time time.Time `json:"time"`
	// ClientID is the client's id (a CONNECT's as it carries it).
	ClientID string `json:"client_id"`
	// Direction is "in" (client to broker) or "out" (broker to client).
	Direction string `json:"direction"`
	// Type is the packet type: "CONNECT", "PUBLISH", ...
	Type string `json:"type"`
	// PacketID is the packet identifier, when the packet has one.
	PacketID uint16 `json:"packet_id,omitempty"`

	// Topic, QoS, Retain, Dup, PayloadSize, Payload and PayloadText are a
	// PUBLISH's: Payload in base64, PayloadText the same bytes when they
	// are valid UTF-8.
	Topic       string  `json:"topic,omitempty"`
	QoS         *byte   `json:"qos,omitempty"`
	Retain      bool    `json:"retain,omitempty"`
	Dup         bool    `json:"dup,omitempty"`
	PayloadSize *int    `json:"payload_size,omitempty"`
	Payload     []byte  `json:"payload,omitempty"`
	PayloadText *string `json:"payload_text,omitempty"`

	// ReasonCode is a CONNACK's (3.1.1: return code) or an MQTT 5
	// PUBACK's, PUBREC's, PUBREL's, PUBCOMP's, DISCONNECT's or AUTH's
	// reason code;
	// ReasonString its MQTT 5 reason string.
	ReasonCode   *byte  `json:"reason_code,omitempty"`
	ReasonString string `json:"reason_string,omitempty"`
	// SessionPresent is a CONNACK's flag.
	SessionPresent bool `json:"session_present,omitempty"`
	// Filters are a SUBSCRIBE's or UNSUBSCRIBE's topic filters.
	Filters []Filter `json:"filters,omitempty"`
	// ReasonCodes are a SUBACK's or UNSUBACK's, one per filter.
	ReasonCodes []int `json:"reason_codes,omitempty"`

	// ProtocolVersion, Username, PasswordSet (the password itself is never
	// written), KeepAlive, CleanStart and the will's topic, QoS and retain
	// flag are a CONNECT's.
	ProtocolVersion byte    `json:"protocol_version,omitempty"`
	Username        string  `json:"username,omitempty"`
	PasswordSet     bool    `json:"password_set,omitempty"`
	KeepAlive       *uint16 `json:"keepalive,omitempty"`
	CleanStart      *bool   `json:"clean_start,omitempty"`
	WillTopic       string  `json:"will_topic,omitempty"`
	WillQoS         *byte   `json:"will_qos,omitempty"`
	WillRetain      bool    `json:"will_retain,omitempty"`

	// Properties are the packet's other MQTT 5 properties that are set, by
	// their snake_case specification names (broker.TracedPacket.Properties);
	// binary ones (correlation_data, authentication_data) in base64.
	Properties map[string]any `json:"properties,omitempty"`
	// UserProperties are the packet's MQTT 5 user properties, in order.
	// StripUserProperties removes them.
	UserProperties []UserProperty `json:"user_properties,omitempty"`
}

// Filter is one topic filter of a SUBSCRIBE (with its options) or of an
// UNSUBSCRIBE (the filter only).
type Filter struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos,omitempty"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	Identifier        int    `json:"identifier,omitempty"`
}

// UserProperty is one MQTT 5 user property.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// lineOf is p as a Line.
func lineOf(p *broker.TracedPacket) Line {
	l := Line{Time: p.Time, ClientID: p.ClientID, Direction: "out", Type: p.Type, PacketID: p.PacketID,
		ReasonString: p.ReasonString, Properties: p.Properties}
	if p.Inbound {
		l.Direction = "in"
	}
	for _, u := range p.UserProperties {
		l.UserProperties = append(l.UserProperties, UserProperty{Key: u.Key, Value: u.Value})
	}
	switch p.Type {
	case "CONNECT":
		l.ProtocolVersion = p.ProtocolVersion
		l.Username = p.Username
		l.PasswordSet = p.PasswordSet
		l.KeepAlive = &p.KeepAlive
		l.CleanStart = &p.CleanStart
		if p.WillTopic != "" {
			l.WillTopic, l.WillQoS, l.WillRetain = p.WillTopic, &p.WillQoS, p.WillRetain
		}
	case "CONNACK":
		l.ReasonCode = &p.ReasonCode
		l.SessionPresent = p.SessionPresent
	case "PUBLISH":
		l.Topic, l.QoS, l.Retain, l.Dup = p.Topic, &p.QoS, p.Retain, p.Dup
		n := len(p.Payload)
		l.PayloadSize = &n
		if n > 0 {
			l.Payload = p.Payload
			if utf8.Valid(p.Payload) {
				s := string(p.Payload)
				l.PayloadText = &s
			}
		}
	case "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "DISCONNECT", "AUTH":
		if p.ProtocolVersion >= 5 { // 3.1.1 packets have none
			l.ReasonCode = &p.ReasonCode
		}
	case "SUBSCRIBE", "UNSUBSCRIBE":
		l.Filters = make([]Filter, len(p.Filters))
		for i, f := range p.Filters {
			l.Filters[i] = Filter{Filter: f.Filter, QoS: f.QoS, NoLocal: f.NoLocal, RetainAsPublished: f.RetainAsPublished,
				RetainHandling: f.RetainHandling, Identifier: f.Identifier}
		}
	case "SUBACK", "UNSUBACK":
		l.ReasonCodes = make([]int, len(p.ReasonCodes))
		for i, c := range p.ReasonCodes {
			l.ReasonCodes[i] = int(c)
		}
	}
	return l
}

// encodeLine is p as one line of a recording file, newline included
// (appendLine: what json.Marshal of its Line writes). A time outside
// years 0-9999, which RFC 3339 cannot write, is an error.
func encodeLine(p *broker.TracedPacket) ([]byte, error) {
	if y := p.Time.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("packet time %v: year outside 0-9999", p.Time)
	}
	l := lineOf(p)
	return append(appendLine(make([]byte, 0, 256+2*len(p.Payload)), &l), '\n'), nil
}

// userPropertiesKey is how the key of Line.UserProperties appears in a
// line; inside a JSON string a quote is always escaped, so the bytes
// `"user_properties"` followed by a colon only ever appear as that key.
var userPropertiesKey = []byte(`"user_properties":`)

// StripUserProperties is a strip function for Recorder.WriteZip: it
// returns line (one line of a recording file, without its newline)
// without its user properties, and nil (the line left out) for a line
// that is not a valid Line, so that none can slip through. A line without
// user properties is returned as it is.
func StripUserProperties(line []byte) []byte {
	if !bytes.Contains(line, userPropertiesKey) {
		return line
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber() // properties keep their numbers as written
	var l Line
	if err := d.Decode(&l); err != nil {
		return nil
	}
	l.UserProperties = nil
	out, err := json.Marshal(l)
	if err != nil {
		return nil
	}
	return out
}
