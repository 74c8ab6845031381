package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// '$' topics and first-level wildcards.
//
// MQTT 5 4.7.2 [MQTT-4.7.2-1] (3.1.1 4.7.2 alike): a filter starting with
// a wildcard ('#', '+') matches no topic name starting with '$'. mochi
// honours it for ordinary subscriptions on a live PUBLISH
// (gatherSubscriptions) but not elsewhere: its retained scan at subscribe
// time (scanMessages) skips only the $SYS level, so a new subscription to
// "#", "+/#", "+/y" was sent the retained messages of "$x/y" and the like;
// and a shared subscription ("$share/g/#") got live PUBLISH packets to '$'
// topics (gatherSharedSubscriptions has no such test). Every one of those
// copies reaches the client's read check (OnACLCheck in publishToClient),
// where mayRead refuses a '$' topic that no subscription of the client
// matches by topic.Match (the one matching rule, which retainparent.go
// and ListRetained use too; a shared filter is matched without its
// "$share/<group>/" prefix, coveredBy). A shared group whose filter does
// not match a '$' topic is also dropped before mochi picks its member
// (OnSelectSubscribers), so that its options never join a matching
// subscription's copy. A client that holds both "#" and
// "$x/#" is sent "$x/y" by the latter, as it should; at subscribe time
// mochi's scan for the new "#" may then send that retained message once
// more, under "#"'s options.
//
// The upstream fix (mochi-mqtt v2.7.9) would be the test gatherSubscriptions
// makes, in scanMessages (at depth 0, skip every particle starting with '$'
// when the filter's first level is a wildcard, not only $SYS) and in
// gatherSharedSubscriptions (on the shared filter's own filter).

// OnSelectSubscribers drops, for a PUBLISH to a '$' topic, every shared
// group whose filter does not match it by topic.Match ("$share/g/#" and
// the like) before mochi picks a member of each group and merges its
// choice into the member's other subscriptions: the read check alone let
// the copy through when the member also held a matching filter ("$x/#"),
// and the copy then carried the shared filter's QoS and subscription
// identifier [MQTT-4.7.2-1]. mochi calls it only when shared groups
// match, so ordinary traffic pays nothing.
//
// In a cluster, every shared group is dropped (dropShared): the cluster
// delivers to shared subscriptions (clustershared.go).
func (h *hook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	if h.cluster != nil {
		h.dropShared(subs)
		return subs
	}
	name := pk.TopicName
	if len(name) == 0 || name[0] != '$' {
		return subs
	}
	for key, members := range subs.Shared {
		for _, sub := range members {
			f := sub.Filter
			if _, inner, ok := topic.SplitShared(f); ok {
				f = inner
			}
			if !topic.Match(f, name) {
				delete(subs.Shared, key)
			}
			break // the members of a group share its filter
		}
	}
	return subs
}

// dollarUnmatched reports whether name is a '$' topic that no subscription
// of cl matches, so that cl may not be sent it [MQTT-4.7.2-1]. Only '$'
// topics cost more than a byte compare: a copy of cl's subscriptions.
func dollarUnmatched(cl *mqtt.Client, name string) bool {
	if len(name) == 0 || name[0] != '$' || cl.State.Subscriptions == nil {
		return false
	}
	return !coveredBy(cl.State.Subscriptions.GetAll(), name)
}
