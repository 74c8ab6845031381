// Command perms is a test guest: it allows every client with default
// permissions that restrict QoS, retain, activity and shared subscriptions.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: func(*propolis.Connect) propolis.AuthResult {
			return propolis.AuthResult{
				Verdict: propolis.Allow(),
				Permissions: []propolis.Permission{
					{Decision: propolis.DecisionAllow, Activity: propolis.ActivityPublish, QoS: propolis.QoS0 | propolis.QoS1,
						Retain: propolis.RetainNotRetained, Filter: "telemetry/{clientid}/#"},
					propolis.AllowSubscribe("commands/{clientid}/#"),
					{Decision: propolis.DecisionAllow, Activity: propolis.ActivitySubscribe, Shared: propolis.SharedOnlyShared, Filter: "jobs/#"},
				},
			}
		},
	})
}

func main() {}
