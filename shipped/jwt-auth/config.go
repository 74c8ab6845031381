package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/propolis-mqtt/propolis/shipped/internal/acl"
	"github.com/propolis-mqtt/propolis/shipped/internal/strictcfg"
	"github.com/propolis-mqtt/propolis/shipped/internal/weburl"
)

// config is the manifest's config section; README.md documents each key.
type config struct {
	Algorithms         []string               `json:"algorithms"`
	HMACSecret         string                 `json:"hmac_secret"`
	HMACSecretBase64   string                 `json:"hmac_secret_base64"`
	PublicKeys         []string               `json:"public_keys"`
	JWKS               json.RawMessage        `json:"jwks"`
	JWKSURL            string                 `json:"jwks_url"`
	JWKSRefresh        strictcfg.DurationText `json:"jwks_refresh"`
	JWKSMinRefetch     strictcfg.DurationText `json:"jwks_min_refetch"`
	Issuer             strictcfg.Strings      `json:"issuer"`
	Audience           strictcfg.Strings      `json:"audience"`
	Leeway             strictcfg.DurationText `json:"leeway"`
	RequireExp         *bool                  `json:"require_exp"`
	UsernameClaim      string                 `json:"username_claim"`
	ClientIDClaim      string                 `json:"clientid_claim"`
	PermissionsClaim   *string                `json:"permissions_claim"`
	DefaultPermissions acl.Spec               `json:"default_permissions"`
	NotAToken          string                 `json:"not_a_token"`
	DisconnectOnExpiry *bool                  `json:"disconnect_on_expiry"`
}

// settings is the validated configuration.
type settings struct {
	policy
	static           []*key // from hmac_secret*, public_keys, jwks
	jwksURL          string
	jwksRefresh      time.Duration
	jwksMinRefetch   time.Duration
	usernameClaim    string
	clientIDClaim    string
	permissionsClaim string
	defaults         acl.Spec
	nextOnNotAToken  bool
	// disconnectOnExpiry disconnects a client when its token expires.
	disconnectOnExpiry bool
}

// Defaults of the config keys.
const (
	defaultRefresh    = 15 * time.Minute
	defaultMinRefetch = 30 * time.Second
	defaultLeeway     = 30 * time.Second
	defaultPermClaim  = "acl"
)

// parseConfig decodes and checks the JSON config; every error names its
// key.
func parseConfig(raw []byte) (*settings, error) {
	var c config
	if err := strictcfg.Decode(raw, &c); err != nil {
		return nil, err
	}
	s := &settings{jwksURL: c.JWKSURL, usernameClaim: c.UsernameClaim, clientIDClaim: c.ClientIDClaim,
		permissionsClaim: defaultPermClaim, defaults: c.DefaultPermissions}
	s.requireExp = c.RequireExp == nil || *c.RequireExp
	s.disconnectOnExpiry = c.DisconnectOnExpiry == nil || *c.DisconnectOnExpiry
	if c.PermissionsClaim != nil {
		s.permissionsClaim = *c.PermissionsClaim
	}
	var err error
	if s.leeway, err = strictcfg.Duration("leeway", c.Leeway, defaultLeeway, 0, 10*time.Minute); err != nil {
		return nil, err
	}
	if s.jwksRefresh, err = strictcfg.Duration("jwks_refresh", c.JWKSRefresh, defaultRefresh, time.Second, 24*time.Hour); err != nil {
		return nil, err
	}
	if s.jwksMinRefetch, err = strictcfg.Duration("jwks_min_refetch", c.JWKSMinRefetch, defaultMinRefetch, time.Second, time.Hour); err != nil {
		return nil, err
	}
	switch c.NotAToken {
	case "", "deny":
	case "next":
		s.nextOnNotAToken = true
	default:
		return nil, fmt.Errorf("config.not_a_token: %q, want deny or next", c.NotAToken)
	}
	if c.Issuer != nil && len(c.Issuer) == 0 {
		return nil, errors.New("config.issuer: an empty list would check nothing: list the accepted issuers, or leave the key out")
	}
	if c.Audience != nil && len(c.Audience) == 0 {
		return nil, errors.New("config.audience: an empty list would check nothing: list the accepted audiences, or leave the key out")
	}
	for i, name := range c.Issuer {
		if name == "" {
			return nil, fmt.Errorf("config.issuer[%d]: empty", i)
		}
	}
	for i, name := range c.Audience {
		if name == "" {
			return nil, fmt.Errorf("config.audience[%d]: empty", i)
		}
	}
	s.issuers, s.audiences = c.Issuer, c.Audience
	if _, err := s.defaults.Permissions("config.default_permissions"); err != nil {
		return nil, err
	}
	if err := s.checkBound(s.defaults, "config.default_permissions"); err != nil {
		return nil, err
	}

	// Keys.
	if c.HMACSecret != "" && c.HMACSecretBase64 != "" {
		return nil, errors.New("config: set hmac_secret or hmac_secret_base64, not both")
	}
	if c.HMACSecret != "" {
		k, err := hmacKey([]byte(c.HMACSecret))
		if err != nil {
			return nil, fmt.Errorf("config.hmac_secret: %v", err)
		}
		s.static = append(s.static, k)
	}
	if c.HMACSecretBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(c.HMACSecretBase64)
		if err != nil {
			return nil, fmt.Errorf("config.hmac_secret_base64: not base64: %v", err)
		}
		k, err := hmacKey(b)
		if err != nil {
			return nil, fmt.Errorf("config.hmac_secret_base64: %v", err)
		}
		s.static = append(s.static, k)
	}
	for i, text := range c.PublicKeys {
		keys, err := parsePEM(text)
		if err != nil {
			return nil, fmt.Errorf("config.public_keys[%d]: %v", i, err)
		}
		s.static = append(s.static, keys...)
	}
	if len(c.JWKS) > 0 && string(c.JWKS) != "null" {
		keys, skipped, err := parseJWKS(c.JWKS)
		if err != nil {
			return nil, fmt.Errorf("config.jwks: %v", err)
		}
		if len(skipped) > 0 {
			return nil, fmt.Errorf("config.jwks: %s", skipped[0])
		}
		s.static = append(s.static, keys...)
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("config.jwks_url: %q is not an http:// or https:// URL", weburl.Redacted(c.JWKSURL))
		}
	}
	if len(s.static) == 0 && s.jwksURL == "" {
		return nil, errors.New("config: no key: set hmac_secret, hmac_secret_base64, public_keys, jwks or jwks_url")
	}

	// Algorithms: the configured ones, or every one a key could verify.
	s.algs = map[string]bool{}
	if len(c.Algorithms) == 0 {
		for name, a := range algorithms {
			if a.kty != ktyHMAC || hasHMAC(s.static) {
				s.algs[name] = true // a JWKS may bring RSA and EC keys, never an HMAC secret
			}
		}
	}
	for i, name := range c.Algorithms {
		if _, ok := algorithms[name]; !ok {
			return nil, fmt.Errorf("config.algorithms[%d]: %q is not one of %s (\"none\" is never accepted)", i, name, algNames())
		}
		s.algs[name] = true
	}
	return s, nil
}

// hasHMAC reports whether keys hold an HMAC secret.
func hasHMAC(keys []*key) bool {
	for _, k := range keys {
		if k.kty == ktyHMAC {
			return true
		}
	}
	return false
}

// checkBound refuses permissions granting topics by {clientid} or
// {username} when the token does not bind that name (clientid_claim,
// username_claim): the client chooses its own client id and user name, so
// any token holder could take another client's topics by connecting under
// its name. where names the permissions in the error.
func (s *settings) checkBound(spec acl.Spec, where string) error {
	for _, b := range []struct{ placeholder, key, claim string }{
		{acl.ClientID, "clientid_claim", s.clientIDClaim},
		{acl.Username, "username_claim", s.usernameClaim},
	} {
		if f := spec.Grants(b.placeholder); f != "" && b.claim == "" {
			return fmt.Errorf("%s: %s grants by %s, but config.%s is not set: any token holder could connect under another client's name and get its topics; set %s to the claim the name must equal",
				where, f, b.placeholder, b.key, b.key)
		}
	}
	return nil
}
