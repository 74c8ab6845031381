// Command docexample is the package documentation's example, built by the
// SDK's tests so that the example keeps compiling.
package main

import (
	"strings"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

type config struct {
	MaxAlert int `json:"max_alert"`
}

var cfg = config{MaxAlert: 256}

func init() {
	propolis.Register(propolis.Extension{
		Start:            start,
		Authenticate:     authenticate,
		AuthorizePublish: authorizePublish,
		PublishFilters:   []string{"alerts/#"},
		OnEvent:          onEvent,
	})
}

func main() {}

func start(info propolis.StartInfo) error {
	if err := info.DecodeConfig(&cfg); err != nil {
		return err // refuses to start; the broker shows err.Error()
	}
	if info.Instance == 0 { // Start runs once per instance
		propolis.Infof("%s %s started", info.ID, info.Version)
	}
	return nil
}

func authenticate(c *propolis.Connect) propolis.AuthResult {
	if c.Username == "" || c.Username != c.ClientID {
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "user name must be the client id")}
	}
	return propolis.AuthResult{
		Verdict: propolis.Allow(),
		Permissions: []propolis.Permission{
			propolis.AllowTopic("clients/{clientid}/#"),
			propolis.AllowPublish("alerts/{clientid}"),
		},
	}
}

func authorizePublish(p *propolis.Publish) propolis.Verdict {
	if len(p.Payload) > cfg.MaxAlert {
		return propolis.Deny(propolis.CodeQuotaExceeded, "alert too large")
	}
	return propolis.Next() // the client's permissions decide
}

func onEvent(e *propolis.Event) {
	if e.Kind == propolis.EventDisconnect && strings.HasPrefix(e.ClientID, "gw-") {
		propolis.Warnf("gateway %s disconnected (%s)", e.ClientID, e.DisconnectKind)
	}
}
