package propolis_test

import (
	"encoding/json"
	"fmt"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// checkWithIdentityService is an Authenticate handler that asks an
// identity service, caches its answer for a minute, and fails closed when
// the service does not answer.
func checkWithIdentityService(c *propolis.Connect) propolis.AuthResult {
	body, _ := json.Marshal(map[string]string{"client_id": c.ClientID, "username": c.Username, "password": string(c.Password)})
	resp, err := propolis.DoHTTP(&propolis.HTTPRequest{
		Method: "POST",
		URL:    "https://idp.example.com/mqtt/check",
		Header: []propolis.HTTPHeader{{Name: "Content-Type", Value: "application/json"}},
		Body:   body,
	})
	if err != nil { // down, too slow, or not allowed: fail closed, and do not cache that
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "identity service: "+err.Error())}
	}
	_ = propolis.CacheAuthResult(time.Minute) // a wrong password is cached too
	if resp.Status != 200 {
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "rejected by the identity service")}
	}
	return propolis.AuthResult{Verdict: propolis.Allow()}
}

// An authenticator asking its identity service over HTTP. Outside a broker
// (a native test like this one) host services answer ErrNotAvailable, so
// the handler fails closed; in the broker, the manifest grants the service
// and lists the host:
//
//	services: [http]
//	http:
//	  hosts: [idp.example.com]
func ExampleDoHTTP() {
	res := checkWithIdentityService(&propolis.Connect{ClientID: "gw-1", Username: "gw-1", HasUsername: true, Password: []byte("s3cret")})
	fmt.Println(res.Decision, res.Reason)
	// Output: deny identity service: propolis: NOT_AVAILABLE
}

// Dropping the cached answers of a client whose password changed; outside
// a broker the call answers ErrNotAvailable.
func ExampleFlushAuthCache() {
	n, err := propolis.FlushAuthCache("gw-1")
	fmt.Println(n, err)
	// Output: 0 propolis: NOT_AVAILABLE
}
