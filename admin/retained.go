package admin

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker"
)

// userProperty is one MQTT user property.
type userProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// retainedMessage is GET /api/v1/retained/message. Payload, and the
// payload-level ResponseTopic and CorrelationData, are set only with
// retained.payload (else PayloadHidden, and the two are left out);
// UserProperties only with userproperties.view.
type retainedMessage struct {
	Topic           string          `json:"topic"`
	QoS             byte            `json:"qos"`
	PayloadSize     int             `json:"payload_size"`
	Payload         *string         `json:"payload,omitempty"`
	PayloadHidden   bool            `json:"payload_hidden,omitempty"`
	Encoding        string          `json:"encoding"`
	ContentType     string          `json:"content_type"`
	PayloadFormat   byte            `json:"payload_format"`
	MessageExpiry   uint32          `json:"message_expiry"`
	ResponseTopic   *string         `json:"response_topic,omitempty"`
	CorrelationData *[]byte         `json:"correlation_data,omitempty"`
	UserProperties  *[]userProperty `json:"user_properties,omitempty"`
}

// topicParam returns the topic query parameter, which is required.
func topicParam(r *request) (string, error) {
	t := r.URL.Query().Get("topic")
	if t == "" {
		return "", errorf(http.StatusBadRequest, "topic: required (a topic name)")
	}
	return t, nil
}

// retainedMessage: GET /api/v1/retained/message?topic=T&encoding=text|hex|json.
func (a *API) retainedMessage(_ http.ResponseWriter, r *request) (int, any, error) {
	topic, err := topicParam(r)
	if err != nil {
		return 0, nil, err
	}
	m, ok := a.o.Broker.Retained(topic)
	if !ok {
		return 0, nil, errorf(http.StatusNotFound, "topic %q: no retained message", topic)
	}
	enc := r.URL.Query().Get("encoding")
	if enc == "" {
		enc = "text"
		if !utf8.Valid(m.Payload) && r.who.Can(access.RetainedPayload) {
			enc = "hex"
		}
	}
	out := retainedMessage{Topic: m.Topic, QoS: m.QoS, PayloadSize: len(m.Payload), Encoding: enc,
		ContentType: m.ContentType, PayloadFormat: m.PayloadFormat, MessageExpiry: m.MessageExpiry}
	if !slices.Contains([]string{"text", "hex", "json"}, enc) {
		return 0, nil, errorf(http.StatusBadRequest, "encoding: unknown value %q (allowed: text, hex, json)", enc)
	}
	// Without retained.payload the payload is not even encoded: an
	// encoding error would tell its bytes.
	if r.who.Can(access.RetainedPayload) {
		p, err := encodePayload(m.Payload, enc)
		if err != nil {
			return 0, nil, err
		}
		out.Payload = &p
		// The response topic and correlation data a request carries are
		// payload-level data: with the payload only.
		out.ResponseTopic, out.CorrelationData = &m.ResponseTopic, &m.CorrelationData
	} else {
		out.PayloadHidden = true
	}
	if r.who.Can(access.UserPropertiesView) {
		ups := userPropertiesOf(m.UserProperties)
		out.UserProperties = &ups
	}
	return http.StatusOK, out, nil
}

// userPropertiesOf converts ups (never nil).
func userPropertiesOf(ups []broker.UserProperty) []userProperty {
	out := make([]userProperty, len(ups))
	for i, u := range ups {
		out[i] = userProperty{Key: u.Key, Value: u.Value}
	}
	return out
}

// encodePayload writes p as text (UTF-8), hex, or JSON (indented); a
// payload that is not what enc asks for is a 400 naming the byte offset.
func encodePayload(p []byte, enc string) (string, error) {
	switch enc {
	case "text":
		if !utf8.Valid(p) {
			off := 0
			for off < len(p) {
				r, size := utf8.DecodeRune(p[off:])
				if r == utf8.RuneError && size <= 1 {
					break
				}
				off += size
			}
			return "", errorf(http.StatusBadRequest, "payload is not UTF-8 text (invalid byte at offset %d); ask for encoding=hex", off)
		}
		return string(p), nil
	case "hex":
		return hex.EncodeToString(p), nil
	case "json":
		var buf bytes.Buffer
		if err := json.Indent(&buf, p, "", "  "); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return "", errorf(http.StatusBadRequest, "payload is not JSON at offset %d: %v", se.Offset, err)
			}
			return "", errorf(http.StatusBadRequest, "payload is not JSON: %v", err)
		}
		return buf.String(), nil
	}
	return "", errorf(http.StatusBadRequest, "encoding: unknown value %q (allowed: text, hex, json)", enc)
}

// deleteRetained: DELETE /api/v1/retained/message?topic=T.
func (a *API) deleteRetained(_ http.ResponseWriter, r *request) (int, any, error) {
	topic, err := topicParam(r)
	if err == nil {
		if _, ok := a.o.Broker.Retained(topic); !ok {
			err = errorf(http.StatusNotFound, "topic %q: no retained message", topic)
		} else {
			err = serviceError(a.o.Broker.DeleteRetained(topic), fmt.Sprintf("topic %q", topic))
		}
	}
	a.audit(r, "retained.delete", topic, err)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}
