package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
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
// "$share/<group>/" prefix, coveredBy). A client that holds both "#" and
// "$x/#" is sent "$x/y" by the latter, as it should; at subscribe time
// mochi's scan for the new "#" may then send that retained message once
// more, under "#"'s options.
//
// The upstream fix (mochi-mqtt v2.7.9) would be the test gatherSubscriptions
// makes, in scanMessages (at depth 0, skip every particle starting with '$'
// when the filter's first level is a wildcard, not only $SYS) and in
// gatherSharedSubscriptions (on the shared filter's own filter).

// dollarUnmatched reports whether name is a '$' topic that no subscription
// of cl matches, so that cl may not be sent it [MQTT-4.7.2-1]. Only '$'
// topics cost more than a byte compare: a copy of cl's subscriptions.
func dollarUnmatched(cl *mqtt.Client, name string) bool {
	if len(name) == 0 || name[0] != '$' || cl.State.Subscriptions == nil {
		return false
	}
	return !coveredBy(cl.State.Subscriptions.GetAll(), name)
}
