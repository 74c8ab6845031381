// Package weburl holds what the shipped extensions do with the URLs of
// their configuration: write them to the log without secrets, and tell
// whether plain http:// crosses a network.
package weburl

import (
	"net"
	"net/url"
	"strings"
)

// Redacted returns u for logs: user information and the query (where
// tokens and keys tend to ride) are replaced by "xxxxx", the fragment
// dropped. A URL that does not parse is written as it is unless it holds
// "@" or "?", "(unparsable URL)" then.
func Redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if strings.ContainsAny(u, "@?") {
			return "(unparsable URL)"
		}
		return u
	}
	q := *p
	q.Fragment, q.RawFragment = "", ""
	if q.User != nil {
		q.User = url.User("xxxxx")
	}
	if q.RawQuery != "" {
		q.RawQuery = "xxxxx"
	}
	q.ForceQuery = false
	return q.String()
}

// PlainRemote reports whether u is an http:// URL to a host other than
// the machine's own (localhost, 127.0.0.0/8, ::1): one whose requests and
// answers anyone on the path can read and change.
func PlainRemote(u string) bool {
	p, err := url.Parse(u)
	if err != nil || !strings.EqualFold(p.Scheme, "http") {
		return false
	}
	host := p.Hostname()
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
