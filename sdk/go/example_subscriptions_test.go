package propolis_test

import (
	"errors"
	"fmt"
	"strings"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// Runnable examples of the subscriptions, retained and
// connection_attributes services. Outside the broker (go test, natively)
// every host service answers ErrNotAvailable, so each example also shows
// what a handler does when a service fails.

// An OnEvent handler that gives every client, on its first successful
// CONNECT, a subscription to its own command topic, even while it is
// offline afterwards: commands published meanwhile wait in its persistent
// session. The manifest lists services: [subscriptions].
func ExampleAddSubscription() {
	onEvent := func(e *propolis.Event) error {
		if e.Kind != propolis.EventAuthSucceeded {
			return nil
		}
		subs, err := propolis.Subscriptions(e.ClientID)
		if err != nil {
			return err
		}
		filter := "commands/" + e.ClientID + "/#"
		for _, s := range subs {
			if s.Filter == filter {
				return nil // it has it already
			}
		}
		return propolis.AddSubscription(e.ClientID, propolis.Subscription{Filter: filter, QoS: 1})
	}

	err := onEvent(&propolis.Event{Kind: propolis.EventAuthSucceeded, ClientID: "sensor-7"})
	fmt.Println(errors.Is(err, propolis.ErrNotAvailable))
	// Output: true
}

// A Start handler that publishes the extension's own status as a retained
// message, so that any client subscribing later reads it, then checks
// what is retained there. The manifest lists services: [retained].
func ExamplePutRetainedMessage() {
	start := func(propolis.StartInfo) error {
		err := propolis.PutRetainedMessage(propolis.Message{
			Topic:          "$extensions/example/status",
			Payload:        []byte("online"),
			QoS:            1,
			ContentType:    "text/plain",
			UserProperties: []propolis.UserProperty{{Key: "version", Value: "1.2.0"}},
		})
		if err != nil {
			return fmt.Errorf("publish status: %w", err)
		}
		m, err := propolis.RetainedMessage("$extensions/example/status")
		if err != nil {
			return err
		}
		propolis.Infof("status retained: %s", m.Payload)
		return nil
	}

	fmt.Println(start(propolis.StartInfo{}))
	// Output: publish status: propolis: NOT_AVAILABLE
}

// An authenticator that stashes the tenant the user name names ("acme/alice")
// for the authorizations of the same connection, which read it instead of
// parsing the user name again on every PUBLISH. The manifest lists
// services: [connection_attributes].
func ExamplePutConnectionAttribute() {
	authenticate := func(c *propolis.Connect) propolis.AuthResult {
		tenant, _, ok := strings.Cut(c.Username, "/")
		if !ok {
			return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "user name must be tenant/user")}
		}
		if err := propolis.PutConnectionAttribute("example.tenant", []byte(tenant)); err != nil {
			// Fail closed: without the stash no PUBLISH could be authorized.
			return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeUnspecified, "tenant not kept: "+err.Error())}
		}
		return propolis.AuthResult{Verdict: propolis.Allow()}
	}
	authorizePublish := func(p *propolis.Publish) propolis.Verdict {
		tenant, err := propolis.ConnectionAttribute("example.tenant")
		if err != nil || !strings.HasPrefix(p.Topic, string(tenant)+"/") {
			return propolis.Deny(propolis.CodeNotAuthorized, "outside the tenant")
		}
		return propolis.Allow()
	}

	res := authenticate(&propolis.Connect{ClientID: "c1", Username: "acme/alice", HasUsername: true})
	fmt.Println(res.Decision, res.Reason)
	v := authorizePublish(&propolis.Publish{ClientID: "c1", Topic: "acme/sensors/1"})
	fmt.Println(v.Decision, v.Reason)
	// Output:
	// deny tenant not kept: propolis: NOT_AVAILABLE
	// deny outside the tenant
}
