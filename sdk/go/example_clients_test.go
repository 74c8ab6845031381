package propolis_test

import (
	"errors"
	"fmt"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// A publish handler that enforces a quota with the client and publish
// services (manifest: services: [clients, publish]): a client that sends
// to a forbidden topic is told why on its own reply topic, then
// disconnected without its will. Outside a broker (go test) the services
// answer ErrNotAvailable, which this handler treats as "cannot act".
func Example_clientsAndPublish() {
	handler := func(p *propolis.Publish) propolis.Verdict {
		if p.Topic != "forbidden" {
			return propolis.Next()
		}
		sent, err := propolis.PublishToClient(p.ClientID, propolis.Message{
			Topic:   "replies/" + p.ClientID,
			Payload: []byte("forbidden topic: you are disconnected"),
			QoS:     1,
		})
		switch {
		case errors.Is(err, propolis.ErrRateLimited):
			// Over the extension's service-call rate: the call did
			// nothing. Refuse the publish and carry on.
			return propolis.Deny(propolis.CodeQuotaExceeded, "busy")
		case err != nil:
			fmt.Println("reply not sent:", err)
		case !sent:
			fmt.Println("the client does not listen to its replies")
		}
		err = propolis.DisconnectClient(p.ClientID, propolis.CodeAdministrativeAction, "forbidden topic", true)
		if errors.Is(err, propolis.ErrNotFound) {
			fmt.Println("already gone")
		} else if err != nil {
			fmt.Println("not disconnected:", err)
		}
		return propolis.Deny(propolis.CodeNotAuthorized, "forbidden topic")
	}
	v := handler(&propolis.Publish{ClientID: "gw-1", Topic: "forbidden"})
	fmt.Println(v.Decision == propolis.DecisionDeny)
	// Output:
	// reply not sent: propolis: NOT_AVAILABLE
	// not disconnected: propolis: NOT_AVAILABLE
	// true
}

// Reading a session: how many messages wait for the client, and until when
// an offline session is kept.
func ExampleClientSession() {
	s, err := propolis.ClientSession("gw-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	if s.Connected {
		fmt.Printf("connected since %v, %d of %d queued\n", s.ConnectedSince, s.Queued, s.MaxQueued)
	} else {
		fmt.Printf("offline until %v\n", s.ExpiresAt)
	}
	// Output: propolis: NOT_AVAILABLE
}
