// Command interceptprobe is a test guest for the interceptors (ABI 1.2).
// It exports all six, and what they do comes from the manifest's config:
//
//	mode:    what every interceptor does (default "noop"):
//	  noop             nothing
//	  set-all          change every field the interceptor may change (see
//	                   the set* functions for the values)
//	  add-property     append the user property {tag: what it saw}: the
//	                   topic (publish), the filter (subscribe), the client
//	                   id (others)
//	  prevent          publish in/out and subscribe: Prevent(code, reason);
//	                   the others add a property first, then do nothing
//	  trap             panic
//	  spin             loop forever (past the call deadline)
//	  invalid-topic    publish: SetTopic("bad/+/topic"); connect: a will
//	                   topic with a wildcard; subscribe: no local on a
//	                   shared subscription, QoS 3 on another; connack,
//	                   disconnect: a reason string with invalid UTF-8
//	  forbidden-field  publish inbound: raise the QoS; outbound: SetRetain
//	                   (not an outbound field); others as invalid-topic
//	  payload          publish: replace the payload by a copy with its
//	                   first byte flipped (BenchmarkInterceptPublish);
//	                   the others do nothing
//	tag:     the user property key, and the prefix set-all puts on topics
//	         (default "probe")
//	code, reason: prevent's reason code and string
//	inbound_filters, outbound_filters: AddInterceptFilter in Start
//	outbound_clients: AddInterceptClient in Start (client id patterns
//	         for the outbound publish interceptor)
//
// Each changing mode makes its first change a user property {tag: "1"}
// before the bad one, so a test sees that a refused call leaves even the
// good changes unapplied.
package main

import (
	"errors"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

type config struct {
	Mode            string   `json:"mode"`
	Tag             string   `json:"tag"`
	Code            byte     `json:"code"`
	Reason          string   `json:"reason"`
	InboundFilters  []string `json:"inbound_filters"`
	OutboundFilters []string `json:"outbound_filters"`
	OutboundClients []string `json:"outbound_clients"`
}

var cfg = config{Mode: "noop", Tag: "probe"}

// The modes, parsed once at start: comparing strings on every call would
// cost the benchmark a memequal loop each.
const (
	noop = iota
	trap
	spin
	setAll
	addProperty
	prevent
	invalidTopic
	forbiddenField
	payload
)

var modes = map[string]int{"noop": noop, "trap": trap, "spin": spin, "set-all": setAll, "add-property": addProperty,
	"prevent": prevent, "invalid-topic": invalidTopic, "forbidden-field": forbiddenField, "payload": payload}

var mode int

func init() {
	propolis.Register(propolis.Extension{
		Start: func(info propolis.StartInfo) error {
			if err := info.DecodeConfig(&cfg); err != nil {
				return err
			}
			m, ok := modes[cfg.Mode]
			if !ok {
				return errors.New("unknown mode " + cfg.Mode)
			}
			mode = m
			for _, f := range cfg.InboundFilters {
				if err := propolis.AddInterceptFilter(propolis.FilterPublishInbound, f); err != nil {
					return err
				}
			}
			for _, f := range cfg.OutboundFilters {
				if err := propolis.AddInterceptFilter(propolis.FilterPublishOutbound, f); err != nil {
					return err
				}
			}
			for _, c := range cfg.OutboundClients {
				if err := propolis.AddInterceptClient(c); err != nil {
					return errors.New("outbound_clients " + c + ": " + err.Error())
				}
			}
			return nil
		},
		InterceptConnect:         connect,
		InterceptConnack:         connack,
		InterceptPublishInbound:  publish,
		InterceptPublishOutbound: publish,
		InterceptSubscribe:       subscribe,
		InterceptDisconnect:      disconnect,
	})
}

func main() {}

// common runs the modes every interceptor shares; it reports whether the
// interceptor is done.
func common() bool {
	switch mode {
	case trap:
		panic("interceptprobe: trap mode")
	case spin:
		for n := 0; ; n++ {
			if n < 0 { // never: keeps the loop from being optimised away
				return true
			}
		}
	case noop:
		return true
	}
	return false
}

// out is the payload mode's buffer, reused from one message to the next.
var out []byte

// must panics on a refused change the mode did not mean (the test sees a
// trap instead of the outcome it wants).
func must(err error) {
	if err != nil {
		panic("interceptprobe: " + err.Error())
	}
}

var badUTF8 = string([]byte{0xff, 0xfe})

func connect(c *propolis.ConnectPacket) {
	if common() {
		return
	}
	switch mode {
	case addProperty, prevent:
		must(c.AddUserProperty(cfg.Tag, c.ClientID))
	case setAll:
		must(c.AddUserProperty(cfg.Tag, "1"))
		must(c.SetClientID(c.ClientID + "-" + cfg.Tag))
		must(c.SetUsername("user-" + cfg.Tag))
		must(c.SetPassword([]byte("pass-" + cfg.Tag)))
		must(c.SetSessionExpiry(77))
		must(c.SetKeepalive(42))
		must(c.SetReceiveMaximum(9))
		must(c.SetWillTopic("will/" + cfg.Tag))
		must(c.SetWillPayload([]byte("gone")))
		must(c.SetWillQoS(1))
		must(c.SetWillRetain(true))
		must(c.SetWillDelay(5))
	case invalidTopic, forbiddenField:
		must(c.AddUserProperty(cfg.Tag, "1"))
		c.SetWillTopic("will/#")
	}
}

func connack(a *propolis.ConnackPacket) {
	if common() {
		return
	}
	switch mode {
	case addProperty, prevent:
		must(a.AddUserProperty(cfg.Tag, a.ClientID))
	case setAll:
		must(a.AddUserProperty(cfg.Tag, "1"))
		must(a.SetReasonString("welcome " + cfg.Tag))
	case invalidTopic, forbiddenField:
		must(a.AddUserProperty(cfg.Tag, "1"))
		a.SetReasonString(badUTF8)
	}
}

func publish(p *propolis.PublishPacket) {
	if common() {
		return
	}
	switch mode {
	case payload:
		if len(p.Payload) > 0 {
			out = append(out[:0], p.Payload...)
			out[0] ^= 1
			must(p.SetPayload(out))
		}
	case addProperty:
		must(p.AddUserProperty(cfg.Tag, p.Topic))
	case prevent:
		p.Prevent(cfg.Code, cfg.Reason)
	case setAll:
		must(p.AddUserProperty(cfg.Tag, "1"))
		must(p.SetTopic(cfg.Tag + "/" + p.Topic))
		must(p.SetPayload(append(append([]byte("["), p.Payload...), ']')))
		if p.Outbound {
			return
		}
		must(p.SetQoS(0))
		must(p.SetRetain(!p.Retain))
		must(p.SetMessageExpiry(100))
		must(p.SetContentType("text/" + cfg.Tag))
		must(p.SetPayloadFormat(1))
		must(p.SetResponseTopic("replies/" + cfg.Tag))
		must(p.SetCorrelationData([]byte("corr-" + cfg.Tag)))
	case invalidTopic:
		must(p.AddUserProperty(cfg.Tag, "1"))
		p.SetTopic("bad/+/topic")
	case forbiddenField:
		must(p.AddUserProperty(cfg.Tag, "1"))
		if p.Outbound {
			p.SetRetain(true)
		} else {
			p.SetQoS(p.QoS + 1)
		}
	}
}

func subscribe(s *propolis.SubscriptionPacket) {
	if common() {
		return
	}
	switch mode {
	case addProperty:
		// A SUBSCRIBE's user properties are read-only: log what was seen.
		propolis.Infof("%s saw filter %s qos %d", cfg.Tag, s.Filter, s.QoS)
	case prevent:
		s.Prevent(cfg.Code, cfg.Reason)
	case setAll:
		must(s.SetQoS(0))
		if !s.Shared {
			must(s.SetNoLocal(true))
		}
		must(s.SetRetainAsPublished(true))
		must(s.SetRetainHandling(2))
	case invalidTopic, forbiddenField:
		must(s.SetQoS(0))
		if s.Shared {
			s.SetNoLocal(true)
		} else {
			s.SetQoS(3)
		}
	}
}

func disconnect(d *propolis.DisconnectPacket) {
	if common() {
		return
	}
	switch mode {
	case addProperty, prevent:
		must(d.AddUserProperty(cfg.Tag, d.ClientID))
	case setAll:
		must(d.AddUserProperty(cfg.Tag, "1"))
		must(d.SetReasonString("bye " + cfg.Tag))
	case invalidTopic, forbiddenField:
		must(d.AddUserProperty(cfg.Tag, "1"))
		d.SetReasonString(badUTF8)
	}
}
