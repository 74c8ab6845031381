package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
)

// Format 1 is the layout of earlier builds: one JSON value per record under
// a readable key.
//
//	CL_<client id>                     session       v1Session
//	SUB_<client id>:<filter>           subscription  v1Subscription
//	IFM_<client id>_<packet id>        in-flight     v1Message
//	RET_<topic>                        retained      v1Message
//
// The key separators ':' and '_' may also occur in client ids and topics,
// so the migration reads client ids, filters, packet ids and topics from
// the JSON values and uses the keys only to tell the record kinds apart.
// Format 1 had no pending publishes and no extension data. Byte fields are
// base64 strings (encoding/json's []byte), null for nil.
const (
	v1SessionPrefix      = "CL_"
	v1SubscriptionPrefix = "SUB_"
	v1InflightPrefix     = "IFM_"
	v1RetainedPrefix     = "RET_"
)

type v1UserProperty struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

type v1Properties struct {
	PayloadFormat    byte             `json:"payload_format,omitempty"`
	PayloadFormatSet bool             `json:"payload_format_set,omitempty"`
	MessageExpiry    uint32           `json:"message_expiry,omitempty"`
	ContentType      string           `json:"content_type,omitempty"`
	ResponseTopic    string           `json:"response_topic,omitempty"`
	CorrelationData  []byte           `json:"correlation_data,omitempty"`
	SubscriptionIDs  []int            `json:"subscription_ids,omitempty"`
	User             []v1UserProperty `json:"user,omitempty"`
}

type v1Will struct {
	Topic      string        `json:"topic"`
	Payload    []byte        `json:"payload"`
	QoS        byte          `json:"qos"`
	Retain     bool          `json:"retain"`
	Delay      uint32        `json:"delay"`
	Properties *v1Properties `json:"properties,omitempty"`
}

type v1Session struct {
	ID                string           `json:"id"`
	Username          []byte           `json:"username"`
	Listener          string           `json:"listener"`
	Remote            string           `json:"remote"`
	ProtocolVersion   byte             `json:"protocol_version"`
	Clean             bool             `json:"clean"`
	SessionExpiry     uint32           `json:"session_expiry"`
	SessionExpirySet  bool             `json:"session_expiry_set,omitempty"`
	ReceiveMaximum    uint16           `json:"receive_maximum,omitempty"`
	TopicAliasMaximum uint16           `json:"topic_alias_maximum,omitempty"`
	MaximumPacketSize uint32           `json:"maximum_packet_size,omitempty"`
	UserProperties    []v1UserProperty `json:"user_properties,omitempty"`
	Will              *v1Will          `json:"will,omitempty"`
	ConnectedAt       int64            `json:"connected_at"`
	DisconnectedAt    int64            `json:"disconnected_at"`
}

type v1Subscription struct {
	Client            string `json:"client"`
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local"`
	RetainAsPublished bool   `json:"retain_as_published"`
	RetainHandling    byte   `json:"retain_handling"`
	Identifier        int    `json:"identifier"`
}

type v1Message struct {
	Client     string        `json:"client"`
	PacketID   uint16        `json:"packet_id"`
	Type       byte          `json:"type"`
	QoS        byte          `json:"qos"`
	Retain     bool          `json:"retain"`
	Dup        bool          `json:"dup,omitempty"`
	Topic      string        `json:"topic"`
	Payload    []byte        `json:"payload"`
	Origin     string        `json:"origin"`
	Created    int64         `json:"created"`
	Expiry     int64         `json:"expiry"`
	Sent       int64         `json:"sent,omitempty"`
	Properties *v1Properties `json:"properties,omitempty"`
}

func (u v1UserProperty) toV2() UserProperty { return UserProperty{Key: u.Key, Value: u.Value} }

func v1UserProps(p []v1UserProperty) []UserProperty {
	if p == nil {
		return nil
	}
	out := make([]UserProperty, len(p))
	for i, u := range p {
		out[i] = u.toV2()
	}
	return out
}

func (p *v1Properties) toV2() MessageProperties {
	if p == nil {
		return MessageProperties{}
	}
	return MessageProperties{
		PayloadFormat:    p.PayloadFormat,
		PayloadFormatSet: p.PayloadFormatSet,
		MessageExpiry:    p.MessageExpiry,
		ContentType:      p.ContentType,
		ResponseTopic:    p.ResponseTopic,
		CorrelationData:  p.CorrelationData,
		SubscriptionIDs:  p.SubscriptionIDs,
		User:             v1UserProps(p.User),
	}
}

func (s *v1Session) toV2() *Session {
	out := &Session{
		ClientID:          s.ID,
		Username:          s.Username,
		Listener:          s.Listener,
		Remote:            s.Remote,
		ProtocolVersion:   s.ProtocolVersion,
		Clean:             s.Clean,
		SessionExpiry:     s.SessionExpiry,
		SessionExpirySet:  s.SessionExpirySet,
		ReceiveMaximum:    s.ReceiveMaximum,
		TopicAliasMaximum: s.TopicAliasMaximum,
		MaximumPacketSize: s.MaximumPacketSize,
		UserProperties:    v1UserProps(s.UserProperties),
		ConnectedAt:       s.ConnectedAt,
		DisconnectedAt:    s.DisconnectedAt,
	}
	if w := s.Will; w != nil {
		out.Will = &Will{
			Topic:        w.Topic,
			Payload:      w.Payload,
			QoS:          w.QoS,
			Retain:       w.Retain,
			DelaySeconds: w.Delay,
			Properties:   w.Properties.toV2(),
		}
	}
	return out
}

func (m *v1Message) toV2() *Message {
	return &Message{
		ClientID:   m.Client,
		PacketID:   m.PacketID,
		Type:       m.Type,
		QoS:        m.QoS,
		Retain:     m.Retain,
		Dup:        m.Dup,
		Topic:      m.Topic,
		Payload:    m.Payload,
		Origin:     m.Origin,
		Created:    m.Created,
		Expiry:     m.Expiry,
		Sent:       m.Sent,
		Properties: m.Properties.toV2(),
	}
}

var errV1NUL = errors.New("name contains NUL")

// convertV1 turns one format-1 record into its format-2 key and value.
func convertV1(key, val []byte) (newKey, newVal []byte, ok bool, err error) {
	switch {
	case bytes.HasPrefix(key, []byte(v1SessionPrefix)):
		var r v1Session
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, nil, false, err
		}
		if r.ID == "" {
			r.ID = string(key[len(v1SessionPrefix):])
		}
		s := r.toV2()
		if hasNUL(s.ClientID) {
			return nil, nil, false, errV1NUL
		}
		return appendKey1(nil, kindSession, s.ClientID), encodeSession(nil, s), true, nil
	case bytes.HasPrefix(key, []byte(v1SubscriptionPrefix)):
		var r v1Subscription
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, nil, false, err
		}
		s := &Subscription{
			ClientID:          r.Client,
			Filter:            r.Filter,
			QoS:               r.QoS,
			NoLocal:           r.NoLocal,
			RetainAsPublished: r.RetainAsPublished,
			RetainHandling:    r.RetainHandling,
			Identifier:        r.Identifier,
		}
		if hasNUL(s.ClientID) || hasNUL(s.Filter) {
			return nil, nil, false, errV1NUL
		}
		return appendKey2(nil, kindSubscription, s.ClientID, s.Filter), encodeSubscription(nil, s), true, nil
	case bytes.HasPrefix(key, []byte(v1InflightPrefix)):
		var r v1Message
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, nil, false, err
		}
		m := r.toV2()
		if hasNUL(m.ClientID) {
			return nil, nil, false, errV1NUL
		}
		return appendInflightKey(nil, m.ClientID, m.PacketID), encodeMessage(nil, m), true, nil
	case bytes.HasPrefix(key, []byte(v1RetainedPrefix)):
		var r v1Message
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, nil, false, err
		}
		if r.Topic == "" {
			r.Topic = string(key[len(v1RetainedPrefix):])
		}
		m := r.toV2()
		if hasNUL(m.Topic) {
			return nil, nil, false, errV1NUL
		}
		return appendKey1(nil, kindRetained, m.Topic), encodeMessage(nil, m), true, nil
	}
	return nil, nil, false, nil
}

// migrateV1ToV2 is the migration step from format 1 to format 2.
func migrateV1ToV2(db *pebble.DB, log *slog.Logger, batchSize int, afterBatch func(n int) error) (int, error) {
	n, err := rewriteAll(db, log, batchSize, afterBatch, convertV1)
	if err != nil {
		return n, fmt.Errorf("rewrite format 1 records: %w", err)
	}
	return n, nil
}
