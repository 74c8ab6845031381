package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
	"github.com/propolis-mqtt/propolis/shipped/internal/acl"
	"github.com/propolis-mqtt/propolis/shipped/internal/strictcfg"
	"github.com/propolis-mqtt/propolis/shipped/internal/weburl"
)

// config is the manifest's config section; README.md documents each key.
type config struct {
	URL                 string                 `json:"url"`
	Headers             map[string]string      `json:"headers"`
	PasswordEncoding    string                 `json:"password_encoding"`
	CacheTTL            strictcfg.DurationText `json:"cache_ttl"`
	DenyCacheTTL        strictcfg.DurationText `json:"deny_cache_ttl"`
	Fallback            string                 `json:"fallback"`
	FallbackPermissions acl.Spec               `json:"fallback_permissions"`
	DefaultPermissions  acl.Spec               `json:"default_permissions"`
}

// fallback is what a CONNECT gets when the endpoint fails.
type fallback string

// Fallback decisions.
const (
	fallbackDeny  fallback = "deny"
	fallbackAllow fallback = "allow"
	fallbackNext  fallback = "next"
)

// settings is the validated configuration.
type settings struct {
	url          string // as configured
	logURL       string // without any user information, for logs
	headers      []propolis.HTTPHeader
	base64Always bool
	cacheTTL     time.Duration
	denyCacheTTL time.Duration
	fallback     fallback
	fallbackACL  []propolis.Permission
	defaults     acl.Spec
}

// Defaults of the config keys.
const (
	defaultCacheTTL     = time.Minute
	defaultDenyCacheTTL = 10 * time.Second
)

// parseConfig decodes and checks the JSON config; every error names its
// key.
func parseConfig(raw []byte) (*settings, error) {
	var c config
	if err := strictcfg.Decode(raw, &c); err != nil {
		return nil, err
	}
	s := &settings{url: c.URL, defaults: c.DefaultPermissions}
	if c.URL == "" {
		return nil, errors.New("config.url: required: the endpoint's http:// or https:// URL")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("config.url: %q is not an http:// or https:// URL", weburl.Redacted(c.URL))
	}
	s.logURL = weburl.Redacted(c.URL)
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	sort.Strings(names) // the same error, and request, every time
	for _, name := range names {
		value := c.Headers[name]
		if !httpToken(name) {
			return nil, fmt.Errorf("config.headers: %q is not a valid header name (an HTTP token: letters, digits and !#$%%&'*+-.^_`|~, at most 256 bytes)", name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("config.headers.%s: the value holds a NUL, CR or LF", name)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Content-Type", "Host", "Content-Length", "Connection", "Transfer-Encoding":
			return nil, fmt.Errorf("config.headers: %s is set by http-auth or the broker", name)
		}
		s.headers = append(s.headers, propolis.HTTPHeader{Name: name, Value: value})
	}
	if len(s.headers) > 32 {
		return nil, fmt.Errorf("config.headers: %d headers, at most 32", len(s.headers))
	}
	switch c.PasswordEncoding {
	case "", "string":
	case "base64":
		s.base64Always = true
	default:
		return nil, fmt.Errorf("config.password_encoding: %q, want string or base64", c.PasswordEncoding)
	}
	if s.cacheTTL, err = strictcfg.Duration("cache_ttl", c.CacheTTL, defaultCacheTTL, 0, propolis.MaxCacheFor); err != nil {
		return nil, err
	}
	if s.denyCacheTTL, err = strictcfg.Duration("deny_cache_ttl", c.DenyCacheTTL, defaultDenyCacheTTL, 0, propolis.MaxCacheFor); err != nil {
		return nil, err
	}
	switch f := fallback(c.Fallback); f {
	case "":
		s.fallback = fallbackDeny
	case fallbackDeny, fallbackAllow, fallbackNext:
		s.fallback = f
	default:
		return nil, fmt.Errorf("config.fallback: %q, want deny, allow or next", c.Fallback)
	}
	if !c.FallbackPermissions.Empty() && s.fallback != fallbackAllow {
		return nil, fmt.Errorf("config.fallback_permissions: only used with fallback allow (fallback is %s)", s.fallback)
	}
	if s.fallbackACL, err = c.FallbackPermissions.Permissions("config.fallback_permissions"); err != nil {
		return nil, err
	}
	if _, err := s.defaults.Permissions("config.default_permissions"); err != nil {
		return nil, err
	}
	return s, nil
}

// httpToken reports whether s is an HTTP token (RFC 9110 section 5.6.2),
// as the broker's HTTP service requires of a header name; it refuses a
// request with any other (INVALID_ARGUMENT), so config refuses it first.
func httpToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
