// Command kicker is a test guest: each tick disconnects the client
// "victim" through the clients service (client_disconnect, code 0x98), and
// it intercepts every DISCONNECT, stamping its reason string. The kick's
// DISCONNECT is intercepted on the goroutine of the tick that kicks, a
// call nested in the tick: with one instance, none is free for it.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Tick: func() {
			if err := propolis.DisconnectClient("victim", 0x98, "kicked", false); err != nil && err != propolis.ErrNotFound {
				propolis.Infof("kick victim: %v", err)
			}
		},
		InterceptDisconnect: func(d *propolis.DisconnectPacket) {
			_ = d.SetReasonString("intercepted: " + d.ReasonString)
		},
	})
}

func main() {}
