// Command topic-rewriter is a Propolis extension that maps one topic tree
// onto another as messages come in (ABI 1.2, InterceptPublishInbound): a
// legacy device fleet keeps publishing on its old topics, and subscribers
// see the messages on the new ones. The mappings are rules in the
// manifest's config, tried in order, the first matching one applied:
//
//	config:
//	  rules:
//	    - from: legacy/+/temp            # a topic filter, "+" and "#"
//	      to: sensors/{1}/temperature    # {N}: what the N-th wildcard matched
//	    - from: devices/+/cmd            # commands to legacy devices
//	      to: legacy/{1}/command
//	  original_topic_property: ""        # a user property key for the old topic; "" none
//
// Only inbound messages are rewritten. The broker routes a message by its
// topic after the inbound interceptors, so a rewritten message reaches the
// subscribers of its new topic only; rewriting deliveries back (an
// outbound interceptor) could not reach a legacy subscriber, whose
// subscription no longer matches. A rule in the other direction (the
// second one above) serves legacy subscribers instead.
//
// The broker authorizes a rewritten PUBLISH again on its new topic: the
// publisher needs the right to publish there. It authenticates nobody:
// combine it with a security extension.
package main

import (
	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, InterceptPublishInbound: intercept})
}

func main() {}

// cfg is the configuration in effect, set by start.
var cfg config

// start reads the rules and asks the broker for their topics only; a bad
// configuration refuses the start, naming the key.
func start(info propolis.StartInfo) error {
	c, err := parseConfig(info.Config)
	if err != nil {
		return err
	}
	for i, r := range c.Rules {
		if err := propolis.AddInterceptFilter(propolis.FilterPublishInbound, r.from); err != nil {
			return configError("rules[%d].from: %q: %v", i, r.from, err)
		}
	}
	cfg = c
	if info.Instance == 0 {
		propolis.Infof("rewriting topics with %d rules", len(c.Rules))
	}
	return nil
}

// intercept rewrites the topic of a matching PUBLISH. A change the broker
// refuses makes it discard the call's changes: the message goes on under
// its old topic.
func intercept(p *propolis.PublishPacket) {
	topic, ok := cfg.rewrite(p.Topic)
	if !ok {
		return
	}
	original := p.Topic
	if err := p.SetTopic(topic); err != nil {
		propolis.Warnf("rewrite %s to %s for %q: %v", original, topic, p.ClientID, err)
		return
	}
	if cfg.OriginalProperty != "" {
		if err := p.AddUserProperty(cfg.OriginalProperty, original); err != nil {
			propolis.Warnf("property %s of %q: %v", cfg.OriginalProperty, p.ClientID, err)
		}
	}
}
