// Command http-auth is a shipped Propolis security extension that asks an
// operator's HTTP endpoint whether a client may connect, like the
// authentication webhooks of EMQX and VerneMQ: it POSTs the CONNECT's
// credentials as JSON, reads {"result": "allow" | "deny" | "ignore"} and
// the client's topic permissions from the answer (the broker enforces
// them on every PUBLISH and SUBSCRIBE), has the broker cache the answer,
// and applies a configured fallback when the endpoint fails. README.md is
// the operator's guide.
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
	"github.com/propolis-mqtt/propolis/shipped/internal/acl"
	"github.com/propolis-mqtt/propolis/shipped/internal/weburl"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, Authenticate: authenticate})
}

func main() {}

// cfg is the instance's configuration, set by start.
var cfg *settings

// post sends a request to the endpoint; a variable so that unit tests,
// which run outside the broker, can answer.
var post = propolis.DoHTTP

// start reads the configuration.
func start(info propolis.StartInfo) error {
	s, err := parseConfig(info.Config)
	if err != nil {
		return err
	}
	cfg = s
	if info.Instance == 0 {
		propolis.Infof("http-auth %s: endpoint %s, cache %s (denials %s), fallback %s", info.Version, s.logURL, s.cacheTTL, s.denyCacheTTL, s.fallback)
		if weburl.PlainRemote(s.url) {
			propolis.Warnf("http-auth: config.url %s is plain http:// to another machine: anyone on the path can read the passwords and answer allow; use https://", s.logURL)
		}
		if s.fallback == fallbackAllow {
			propolis.Warnf("http-auth: fallback is allow: while %s fails, every client connects", s.logURL)
		}
	}
	return nil
}

// request is the JSON body POSTed to the endpoint.
type request struct {
	Action           string `json:"action"`
	ClientID         string `json:"clientid"`
	Username         string `json:"username"`
	Password         string `json:"password"`
	PasswordEncoding string `json:"password_encoding"`
	PeerAddr         string `json:"peer_addr"`
	ProtocolVersion  uint8  `json:"protocol_version"`
	Listener         string `json:"listener"`
	TLS              bool   `json:"tls"`
	TLSSubject       string `json:"tls_subject,omitempty"`
}

// response is the endpoint's JSON answer.
type response struct {
	Result      string          `json:"result"`
	Reason      string          `json:"reason"`
	Permissions json.RawMessage `json:"permissions"`
}

// errMisconfigured marks a request the broker refused to send (a
// configuration error: NOT_PERMITTED, INVALID_ARGUMENT), which denies
// instead of applying the fallback.
var errMisconfigured = errors.New("configuration error")

// authenticate asks the endpoint about c; a configuration error denies
// (0x88) whatever the fallback.
func authenticate(c *propolis.Connect) propolis.AuthResult {
	res, ttl, err := ask(c)
	if errors.Is(err, errMisconfigured) {
		// Not the endpoint failing: no request can go out. The fallback,
		// allow or next, would let everyone in for good.
		propolis.Errorf("http-auth: endpoint %s: %v; client %q refused (the fallback is for endpoint failures)", cfg.logURL, err, c.ClientID)
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "authentication service unavailable")}
	}
	if err != nil {
		propolis.Warnf("http-auth: endpoint %s: %v; fallback %s for client %q", cfg.logURL, err, cfg.fallback, c.ClientID)
		return fallbackResult()
	}
	if ttl > 0 {
		if err := propolis.CacheAuthResult(ttl); err != nil {
			propolis.Warnf("http-auth: caching the answer for client %q: %v", c.ClientID, err)
		}
	}
	return res
}

// fallbackResult is the answer while the endpoint fails (never cached).
func fallbackResult() propolis.AuthResult {
	switch cfg.fallback {
	case fallbackAllow:
		return propolis.AuthResult{Verdict: propolis.Allow(), Permissions: cfg.fallbackACL}
	case fallbackNext:
		return propolis.AuthResult{Verdict: propolis.Next()}
	}
	return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "authentication service unavailable")}
}

// ask POSTs c to the endpoint and returns its answer and how long it may
// be cached, or an error when the endpoint failed (no answer, a status
// other than 200, 401 and 403, a malformed body).
func ask(c *propolis.Connect) (propolis.AuthResult, time.Duration, error) {
	body, err := json.Marshal(newRequest(c))
	if err != nil {
		return propolis.AuthResult{}, 0, err
	}
	hdr := append([]propolis.HTTPHeader{{Name: "Content-Type", Value: "application/json"}, {Name: "Accept", Value: "application/json"}}, cfg.headers...)
	resp, err := post(&propolis.HTTPRequest{Method: "POST", URL: cfg.url, Header: hdr, Body: body})
	switch {
	case errors.Is(err, propolis.ErrNotPermitted):
		return propolis.AuthResult{}, 0, fmt.Errorf("%w: %w: the manifest must list http under services and the URL's host under http.hosts", errMisconfigured, err)
	case errors.Is(err, propolis.ErrInvalidArgument):
		return propolis.AuthResult{}, 0, fmt.Errorf("%w: %w: the broker refused the request (url, or a header in config.headers)", errMisconfigured, err)
	case errors.Is(err, propolis.ErrTooLarge):
		return propolis.AuthResult{}, 0, fmt.Errorf("%w: the answer is larger than the manifest's http.max_response", err)
	case err != nil:
		return propolis.AuthResult{}, 0, fmt.Errorf("no answer (%w; the broker log has the cause, a timeout is limits.authenticate_deadline)", err)
	}
	return parseResponse(resp)
}

// newRequest returns the request body for c.
func newRequest(c *propolis.Connect) request {
	r := request{Action: "connect", ClientID: c.ClientID, Username: c.Username, PeerAddr: c.RemoteAddr,
		ProtocolVersion: c.ProtocolVersion, Listener: c.Listener, TLS: c.TLS, TLSSubject: c.TLSSubject}
	if cfg.base64Always || !utf8.Valid(c.Password) {
		r.Password, r.PasswordEncoding = base64.StdEncoding.EncodeToString(c.Password), "base64"
	} else {
		r.Password, r.PasswordEncoding = string(c.Password), "string"
	}
	return r
}

// parseResponse reads the endpoint's answer.
func parseResponse(resp *propolis.HTTPResponse) (propolis.AuthResult, time.Duration, error) {
	var r response
	switch resp.Status {
	case 200:
		if err := json.Unmarshal(resp.Body, &r); err != nil {
			return propolis.AuthResult{}, 0, fmt.Errorf("status 200 with a body that is not a JSON object: %v", err)
		}
	case 401, 403:
		_ = json.Unmarshal(resp.Body, &r) // a reason, if any
		return denied(r.Reason), cfg.denyCacheTTL, nil
	default:
		return propolis.AuthResult{}, 0, fmt.Errorf("HTTP status %d", resp.Status)
	}
	switch r.Result {
	case "allow":
		spec := cfg.defaults
		where := "config.default_permissions"
		if len(r.Permissions) > 0 && string(r.Permissions) != "null" {
			where = "response permissions"
			spec = acl.Spec{}
			d := json.NewDecoder(strings.NewReader(string(r.Permissions)))
			d.DisallowUnknownFields()
			if err := d.Decode(&spec); err != nil {
				return propolis.AuthResult{}, 0, fmt.Errorf("%s: want {\"publish\": [...], \"subscribe\": [...], \"all\": [...], \"deny\": [...]}: %v", where, err)
			}
		}
		perms, err := spec.Permissions(where)
		if err != nil {
			return propolis.AuthResult{}, 0, err
		}
		return propolis.AuthResult{Verdict: propolis.Allow(), Permissions: perms}, cfg.cacheTTL, nil
	case "deny":
		return denied(r.Reason), cfg.denyCacheTTL, nil
	case "ignore":
		return propolis.AuthResult{Verdict: propolis.Next()}, cfg.cacheTTL, nil
	}
	return propolis.AuthResult{}, 0, fmt.Errorf(`status 200 with result %q, want "allow", "deny" or "ignore"`, r.Result)
}

// denied refuses with 0x86 (3.1.1: 0x04) and the endpoint's reason.
func denied(reason string) propolis.AuthResult {
	if reason == "" {
		reason = "not authorized"
	}
	if len(reason) > 256 {
		reason = reason[:256]
	}
	if !utf8.ValidString(reason) {
		reason = strings.ToValidUTF8(reason, "?")
	}
	return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, reason)}
}
