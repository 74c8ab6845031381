// Command jwt-auth is a shipped Propolis security extension: a client
// logs in with a JSON Web Token as its MQTT password. The token's
// signature (HS256/384/512, RS256/384/512, ES256/384) is checked with keys
// from the manifest or fetched from a JWKS URL through the broker's
// outbound HTTP service; its expiry, not-before, issuer and audience are
// checked; a claim maps to the client's topic permissions, which the
// broker enforces on every PUBLISH and SUBSCRIBE. README.md is the
// operator's guide.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
	"github.com/propolis-mqtt/propolis/shipped/internal/acl"
	"github.com/propolis-mqtt/propolis/shipped/internal/weburl"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, Authenticate: authenticate, Tick: tick})
}

func main() {}

// The instance's state. Each instance of the module (the broker runs a
// pool) holds its own copy: the configuration and the key set it fetched.
var (
	cfg  *settings
	jwks keySet
)

// start reads the configuration and, with a jwks_url, fetches the key set
// once (a failure is logged, not fatal: CONNECTs fetch again).
func start(info propolis.StartInfo) error {
	s, err := parseConfig(info.Config)
	if err != nil {
		return err
	}
	if s.disconnectOnExpiry {
		if err := checkExpiryServices(); err != nil {
			return err
		}
	}
	cfg = s
	jwks = keySet{url: s.jwksURL, logURL: weburl.Redacted(s.jwksURL), refresh: s.jwksRefresh, minRefetch: s.jwksMinRefetch, fetch: httpGet}
	if s.jwksURL != "" {
		jwks.update(time.Now(), true)
	}
	if info.Instance == 0 {
		propolis.Infof("jwt-auth %s: %d configured keys, JWKS %q, algorithms %s", info.Version, len(s.static), jwks.logURL, strings.Join(sortedKeys(s.algs), ","))
		if weburl.PlainRemote(s.jwksURL) {
			propolis.Warnf("jwt-auth: config.jwks_url %s is plain http:// to another machine: anyone on the path can replace the keys and log in as anyone; use https://", jwks.logURL)
		}
	}
	return nil
}

// authenticate checks the CONNECT's password as a JWT.
func authenticate(c *propolis.Connect) propolis.AuthResult {
	now := time.Now()
	res, why, end := decide(c, now)
	if why != "" {
		propolis.Infof("jwt-auth: client %q (user %q) refused: %s", c.ClientID, c.Username, why)
	}
	if !end.IsZero() && cfg.disconnectOnExpiry {
		if err := recordExpiry(c.ClientID, c.RemoteAddr, end, now); err != nil {
			// Let in, it would outlive its token: refuse, as a server
			// failure (the token may be fine).
			propolis.Warnf("jwt-auth: client %q (user %q) refused: recording its token's expiry (disconnect_on_expiry): %v", c.ClientID, c.Username, err)
			return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "cannot record the token's expiry")}
		}
	}
	return res
}

// tick disconnects the clients whose token expired.
func tick() {
	if cfg != nil && cfg.disconnectOnExpiry {
		disconnectExpired(time.Now())
	}
}

// decide returns the answer to c at now, the reason of a refusal for the
// log ("" when allowed), and when an accepted token stops being valid
// (exp plus the leeway; zero without exp).
func decide(c *propolis.Connect, now time.Time) (res propolis.AuthResult, why string, end time.Time) {
	if !looksLikeJWT(c.Password) {
		if cfg.nextOnNotAToken {
			return propolis.AuthResult{Verdict: propolis.Next()}, "", time.Time{}
		}
		return deny("a JWT is required as the password"), "the password is not a JWT", time.Time{}
	}
	token := string(c.Password)
	cl, err := verify(token, jwks.keys(now, cfg.static), &cfg.policy, now)
	if errors.Is(err, errUnknownKid) && jwks.url != "" && jwks.update(now, true) {
		cl, err = verify(token, jwks.keys(now, cfg.static), &cfg.policy, now)
	}
	if err != nil {
		return deny("invalid token"), err.Error(), time.Time{}
	}
	for _, b := range []struct{ claim, name, got string }{
		{cfg.usernameClaim, "user name", c.Username},
		{cfg.clientIDClaim, "client id", c.ClientID},
	} {
		if b.claim == "" {
			continue
		}
		want, ok := cl.str(b.claim)
		if !ok {
			return deny("invalid token"), fmt.Sprintf("no string claim %q to match the %s", b.claim, b.name), time.Time{}
		}
		if want == "" {
			// It would bind the token to no name: a client sending none.
			return deny("invalid token"), fmt.Sprintf("claim %q (to match the %s) is empty", b.claim, b.name), time.Time{}
		}
		if want != b.got {
			return deny("token issued to another " + b.name), fmt.Sprintf("%s %q, claim %q is %q", b.name, b.got, b.claim, want), time.Time{}
		}
	}
	perms, err := permissions(cl)
	if err != nil {
		return deny("invalid token"), err.Error(), time.Time{}
	}
	if exp, ok, _ := cl.numericDate("exp"); ok {
		end = exp.Add(cfg.leeway)
	}
	return propolis.AuthResult{Verdict: propolis.Allow(), Permissions: perms}, "", end
}

// deny refuses with 0x86 (bad user name or password; 3.1.1: 0x04) and a
// reason string for MQTT 5 clients.
func deny(reason string) propolis.AuthResult {
	return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, reason)}
}

// permissions returns the topic permissions the token's permissions claim
// grants, or config.default_permissions when it has none: an object
// {"publish": [...], "subscribe": [...], "all": [...], "deny": [...]}.
func permissions(cl claims) ([]propolis.Permission, error) {
	spec := cfg.defaults
	where := "config.default_permissions"
	if cfg.permissionsClaim != "" {
		if v, ok := cl.lookup(cfg.permissionsClaim); ok {
			where = fmt.Sprintf("claim %q", cfg.permissionsClaim)
			b, _ := json.Marshal(v)
			spec = acl.Spec{}
			d := json.NewDecoder(strings.NewReader(string(b)))
			d.DisallowUnknownFields()
			if err := d.Decode(&spec); err != nil {
				return nil, fmt.Errorf("%s: want {\"publish\": [...], \"subscribe\": [...], \"all\": [...], \"deny\": [...]}: %v", where, err)
			}
		}
	}
	perms, err := spec.Permissions(where)
	if err != nil {
		return nil, err
	}
	return perms, cfg.checkBound(spec, where)
}
