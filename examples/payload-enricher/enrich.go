package main

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// contentTypeJSON is the content type of a wrapped payload.
const contentTypeJSON = "application/json"

// timeLayout is RFC 3339 in UTC with milliseconds: 2026-11-29T17:05:00.123Z.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// change is what enrich decides for one PUBLISH.
type change struct {
	// properties is the new list of user properties; nil leaves them.
	properties []propolis.UserProperty
	// payload is the wrapped payload; nil leaves the payload (and its
	// content type and format) as they are.
	payload []byte
}

// wrapped is the JSON document a plain-text payload becomes.
type wrapped struct {
	Client string `json:"client"`
	Time   string `json:"time"`
	Text   string `json:"text"`
}

// enrich decides the changes for a PUBLISH of clientID received at now:
// the stamped user properties, and the wrapped payload when the payload is
// plain text. It reads its arguments only (they are views valid during
// the call) and returns new slices.
func enrich(c *config, clientID string, payload []byte, props []propolis.UserProperty, now time.Time) change {
	stamp := now.UTC().Format(timeLayout)
	var ch change
	if c.TimeProperty != "" || c.ClientProperty != "" {
		ch.properties = stampProperties(c, props, stamp, clientID)
	}
	if c.WrapText && isPlainText(payload, c.MaxText) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // keep <, > and & as they are
		if err := enc.Encode(wrapped{Client: clientID, Time: stamp, Text: string(payload)}); err == nil {
			ch.payload = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		}
	}
	return ch
}

// stampProperties returns props without the properties of the configured
// keys, then the time and the client id under those keys: a publisher
// cannot pass off its own values as the broker's.
func stampProperties(c *config, props []propolis.UserProperty, stamp, clientID string) []propolis.UserProperty {
	out := make([]propolis.UserProperty, 0, len(props)+2)
	for _, p := range props {
		if (c.TimeProperty != "" && p.Key == c.TimeProperty) || (c.ClientProperty != "" && p.Key == c.ClientProperty) {
			continue
		}
		out = append(out, propolis.UserProperty{Key: p.Key, Value: p.Value})
	}
	if c.TimeProperty != "" {
		out = append(out, propolis.UserProperty{Key: c.TimeProperty, Value: stamp})
	}
	if c.ClientProperty != "" {
		out = append(out, propolis.UserProperty{Key: c.ClientProperty, Value: clientID})
	}
	return out
}

// isPlainText reports whether a payload is wrapped: not empty (an empty
// retained PUBLISH clears the topic's retained message), at most max
// bytes, valid UTF-8, and not JSON. "JSON" is whatever a JSON parser
// accepts, scalars included: "21.5" and "true" are left as they are.
func isPlainText(payload []byte, max int) bool {
	return len(payload) > 0 && len(payload) <= max && utf8.Valid(payload) && !json.Valid(payload)
}
