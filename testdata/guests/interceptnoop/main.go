// Command interceptnoop is a benchmark guest: an inbound PUBLISH
// interceptor that changes nothing, so that each PUBLISH costs one Wasm
// call and nothing else (the harness's propolis-intercept-in broker).
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		InterceptPublishInbound: func(*propolis.PublishPacket) {},
	})
}

func main() {}
