// Command payload-enricher is a Propolis extension that enriches every
// PUBLISH a client sends (ABI 1.2, InterceptPublishInbound):
//
//   - it stamps two user properties, the time the broker received the
//     message (RFC 3339, UTC, milliseconds) and the publisher's client id,
//     replacing any property of the same key the publisher sent, so that
//     subscribers can trust them;
//   - it wraps a plain-text payload (valid UTF-8 that is not JSON) in a
//     JSON document, {"client":"<client id>","time":"<time>","text":"<payload>"},
//     and sets the content type to application/json and the payload format
//     indicator to 1 (UTF-8). JSON payloads, binary payloads, empty payloads
//     (which clear a retained message) and texts longer than max_text are
//     left as they are.
//
// It runs only for the topics of its config (interception filters: other
// messages cost no Wasm call). It authenticates nobody: combine it with a
// security extension. It changes no topic, so the broker does not
// authorize the message again.
//
// Configuration (the manifest's config section; every key optional):
//
//	config:
//	  topics: ["#"]                  # topic filters to enrich
//	  time_property: received-at     # "" adds no time property
//	  client_property: client-id     # "" adds no client property
//	  wrap_text: true                # wrap plain text in JSON
//	  max_text: 65536                # longest text wrapped, in bytes
package main

import (
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, InterceptPublishInbound: intercept})
}

func main() {}

// cfg is the configuration in effect, set by start.
var cfg = defaultConfig()

// start reads the configuration and narrows the interceptor to its topics;
// a bad configuration refuses the start, naming the key.
func start(info propolis.StartInfo) error {
	c, err := parseConfig(info.Config)
	if err != nil {
		return err
	}
	for i, f := range c.Topics {
		if err := propolis.AddInterceptFilter(propolis.FilterPublishInbound, f); err != nil {
			return configError("topics[%d]: %q: %v", i, f, err)
		}
	}
	cfg = c
	if info.Instance == 0 {
		propolis.Infof("enriching PUBLISH packets on %q", c.Topics)
	}
	return nil
}

// intercept applies enrich's changes to the packet. A change the broker
// refuses makes it discard all of them (the packet passes unchanged), so
// the first error ends the call.
func intercept(p *propolis.PublishPacket) {
	ch := enrich(&cfg, p.ClientID, p.Payload, p.UserProperties, time.Now())
	if ch.properties != nil {
		if err := p.SetUserProperties(ch.properties); err != nil {
			propolis.Warnf("user properties of %q on %s: %v", p.ClientID, p.Topic, err)
			return
		}
	}
	if ch.payload == nil {
		return
	}
	if err := p.SetPayload(ch.payload); err != nil {
		propolis.Warnf("payload of %q on %s: %v", p.ClientID, p.Topic, err)
		return
	}
	if err := p.SetContentType(contentTypeJSON); err != nil {
		propolis.Warnf("content type of %q on %s: %v", p.ClientID, p.Topic, err)
		return
	}
	if err := p.SetPayloadFormat(1); err != nil {
		propolis.Warnf("payload format of %q on %s: %v", p.ClientID, p.Topic, err)
	}
}
