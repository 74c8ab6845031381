// Command interceptnomatch is a benchmark guest: an outbound PUBLISH
// interceptor whose only filter matches no topic the benchmark uses, so
// that a delivery costs the broker's filter check and no Wasm call (the
// harness's propolis-intercept-out broker).
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		InterceptPublishOutbound: func(p *propolis.PublishPacket) { p.Prevent(0, "the filter should have kept this away") },
		InterceptOutboundFilters: []string{"propolis-bench/never/#"},
	})
}

func main() {}
