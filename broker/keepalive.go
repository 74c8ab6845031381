package broker

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// This file grants keepalives (mqtt.max_keepalive) and computes the read
// deadline that enforces them.
//
// A client asking for a keepalive longer than the maximum, or for none
// (0), is given the maximum. An MQTT 5 client is told in the CONNACK's
// Server Keep Alive, which it MUST then use [MQTT-3.2.2-21]; an MQTT 3.1.1
// client cannot be told, and is held to the maximum all the same, which
// 3.1.1 allows ("a Server is permitted to disconnect a Client that it
// determines to be inactive or non-responsive at any time, regardless of
// the Keep Alive value provided by that Client", 3.1.2.10). Either is
// disconnected after one and a half times its keepalive without a packet
// [MQTT-3.1.2-22] (3.1.1: [MQTT-3.1.2-24]).
//
// mochi computes that deadline in 16-bit arithmetic (keepalive +
// keepalive/2 overflows above 43690 s: 65535 s gives 32766 s, not
// 98302 s), so outConn.SetDeadline replaces the time mochi passes with
// keepaliveDeadline of the granted keepalive.

// grantKeepalive caps cl's keepalive (the client's, or the one the
// authenticator set) at max seconds, replacing 0 (none) by max, and tells
// cl's connection the keepalive it enforces. authenticateConnect calls it
// on Allow, before mochi writes the CONNACK and sets the first deadline.
func grantKeepalive(cl *mqtt.Client, max uint16) {
	if max > 0 && (cl.State.Keepalive == 0 || cl.State.Keepalive > max) {
		cl.State.Keepalive = max
		cl.State.ServerKeepalive = true // sent as Server Keep Alive (MQTT 5 only)
	}
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		oc.setKeepalive(cl.State.Keepalive)
	}
}

// keepaliveDeadline is the read deadline, from now, of a connection with
// keepalive seconds: one and a half times it; zero time for no keepalive.
func keepaliveDeadline(now time.Time, keepalive uint16) time.Time {
	if keepalive == 0 {
		return time.Time{}
	}
	return now.Add(time.Duration(keepalive) * 1500 * time.Millisecond)
}
