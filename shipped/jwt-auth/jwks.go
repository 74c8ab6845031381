package main

import (
	"errors"
	"fmt"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// keySet is an instance's copy of the keys of the JWKS URL: refreshed
// when older than refresh, fetched again at once for a token whose kid it
// lacks (a rotation), but never more often than once per minRefetch, so a
// flood of tokens with made-up kids cannot hammer the identity provider.
// When a fetch fails the keys fetched before stay in use.
type keySet struct {
	url        string
	logURL     string // url without user information or query, for logs
	refresh    time.Duration
	minRefetch time.Duration
	fetch      func(url string) ([]byte, error)

	fetched     []*key
	fetchedAt   time.Time // of fetched; zero before the first success
	lastAttempt time.Time // zero before the first attempt
}

// keys returns the static keys and the fetched ones, refreshing them
// first when they are older than the refresh interval.
func (s *keySet) keys(now time.Time, static []*key) []*key {
	if s.url != "" && now.Sub(s.fetchedAt) >= s.refresh {
		s.update(now, false)
	}
	if len(s.fetched) == 0 {
		return static
	}
	return append(append(make([]*key, 0, len(static)+len(s.fetched)), static...), s.fetched...)
}

// update fetches the key set unless the last attempt was less than
// minRefetch ago, or (unless force) the keys are younger than the
// refresh interval. It reports whether it fetched new keys.
func (s *keySet) update(now time.Time, force bool) bool {
	if !force && !s.fetchedAt.IsZero() && now.Sub(s.fetchedAt) < s.refresh {
		return false
	}
	if !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.minRefetch {
		return false
	}
	s.lastAttempt = now
	body, err := s.fetch(s.url)
	if err == nil {
		var keys []*key
		var skipped []string
		if keys, skipped, err = parseJWKS(body); err == nil {
			usable := keys[:0]
			for _, k := range keys {
				if k.kty == ktyHMAC { // a published key set holds no secrets
					skipped = append(skipped, fmt.Sprintf("kid %q: a symmetric (oct) key in a published key set", k.kid))
					continue
				}
				usable = append(usable, k)
			}
			for _, note := range skipped {
				propolis.Warnf("jwt-auth: JWKS %s: skipped %s", s.logURL, note)
			}
			if len(usable) == 0 {
				err = errors.New("no usable key")
			} else {
				s.fetched, s.fetchedAt = usable, now
				return true
			}
		}
	}
	kept := "no keys yet"
	if !s.fetchedAt.IsZero() {
		kept = fmt.Sprintf("keeping the %d keys fetched at %s", len(s.fetched), s.fetchedAt.UTC().Format(time.RFC3339))
	}
	propolis.Warnf("jwt-auth: JWKS %s: %v (%s; next attempt in %s at the earliest)", s.logURL, err, kept, s.minRefetch)
	return false
}

// httpGet fetches url through the broker's outbound HTTP service.
func httpGet(url string) ([]byte, error) {
	resp, err := propolis.DoHTTP(&propolis.HTTPRequest{URL: url, Header: []propolis.HTTPHeader{{Name: "Accept", Value: "application/json"}}})
	switch {
	case errors.Is(err, propolis.ErrNotPermitted):
		return nil, fmt.Errorf("%w (the manifest must list http under services and the URL's host under http.hosts)", err)
	case err != nil:
		return nil, fmt.Errorf("%w (the broker log has the cause)", err)
	case resp.Status != 200:
		return nil, fmt.Errorf("HTTP status %d", resp.Status)
	}
	return resp.Body, nil
}
