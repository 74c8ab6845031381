package propolis_test

import (
	"encoding/json"
	"fmt"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// An inbound interceptor that stamps the publisher as a user property,
// wraps plain-text payloads in JSON (setting the content type) and drops
// empty messages. Called on a packet built here, as a unit test would, the
// changes land in its fields.
func ExamplePublishPacket() {
	enrich := func(p *propolis.PublishPacket) {
		if len(p.Payload) == 0 {
			p.Prevent(0x99, "empty payload") // payload format invalid
			return
		}
		p.AddUserProperty("publisher", p.ClientID)
		if !json.Valid(p.Payload) {
			wrapped, _ := json.Marshal(map[string]string{"text": string(p.Payload)})
			p.SetPayload(wrapped)
			p.SetContentType("application/json")
		}
	}
	ext := propolis.Extension{InterceptPublishInbound: enrich}
	_ = ext // propolis.Register(ext) from the extension's init function

	p := &propolis.PublishPacket{ClientID: "sensor-1", Topic: "legacy/temp", Payload: []byte("21.5 C")}
	enrich(p)
	fmt.Println(string(p.Payload), p.ContentType, p.UserProperties)
	empty := &propolis.PublishPacket{Topic: "legacy/temp"}
	enrich(empty)
	fmt.Println(empty.Prevented())
	// Output:
	// {"text":"21.5 C"} application/json [{publisher sensor-1}]
	// true
}
