package propolis_test

import (
	"bytes"
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// The handlers of the package documentation's example, tested the way an
// extension author tests theirs: as plain Go functions, with go test.

var maxAlert = 256

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
	if len(p.Payload) > maxAlert {
		return propolis.Deny(propolis.CodeQuotaExceeded, "alert too large")
	}
	return propolis.Next()
}

func TestExampleAuthenticate(t *testing.T) {
	tests := []struct {
		name     string
		connect  propolis.Connect
		decision propolis.Decision
		code     byte
		perms    int
	}{
		{"matching user", propolis.Connect{ClientID: "gw-1", Username: "gw-1", HasUsername: true}, propolis.DecisionAllow, 0, 2},
		{"no user name", propolis.Connect{ClientID: "gw-1"}, propolis.DecisionDeny, 0x86, 0},
		{"other user", propolis.Connect{ClientID: "gw-1", Username: "gw-2", HasUsername: true}, propolis.DecisionDeny, 0x86, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := authenticate(&tt.connect)
			if res.Decision != tt.decision || res.Code != tt.code || len(res.Permissions) != tt.perms {
				t.Errorf("got %+v", res)
			}
			for _, p := range res.Permissions {
				if err := p.Validate(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestExampleAuthorizePublish(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		want    propolis.Verdict
	}{
		{"small", []byte("fire"), propolis.Next()},
		{"at limit", bytes.Repeat([]byte("x"), 256), propolis.Next()},
		{"too large", bytes.Repeat([]byte("x"), 257), propolis.Deny(0x97, "alert too large")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &propolis.Publish{Topic: "alerts/gw-1", ClientID: "gw-1", Payload: tt.payload}
			if got := authorizePublish(p); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
