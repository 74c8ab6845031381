// Command allow-all is a Propolis extension that lets every client connect
// and do anything. It is for development and tests only: never use it in
// production.
//
// It implements Authenticate only, answering Allow with no permissions, so
// every client may publish and subscribe to every topic; with no
// AuthorizePublish or AuthorizeSubscribe handler, the broker never calls
// it per message.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Start:        start,
		Authenticate: authenticate,
	})
}

func main() {}

// start warns loudly that the broker is open to everyone, once per load:
// the broker starts several instances (and replaces discarded ones), and
// only the first, instance 0, logs.
func start(info propolis.StartInfo) error {
	if info.Instance == 0 {
		propolis.Log(propolis.LevelWarn, warning(info))
	}
	return nil
}

// warning is the start-up warning.
func warning(info propolis.StartInfo) string {
	return "extension " + info.ID + " " + info.Version +
		" ALLOWS EVERY CLIENT TO CONNECT, PUBLISH AND SUBSCRIBE WITHOUT CREDENTIALS: DO NOT USE IT IN PRODUCTION"
}

// authenticate allows every client, with no permissions (no permission
// means everything is allowed).
func authenticate(*propolis.Connect) propolis.AuthResult {
	return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
}
