package host

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/internal/yamlconf"
)

// This file is outbound HTTP (ABI.md section 5, http_request; MANIFEST.md,
// http): an extension calls only the hosts its manifest allow-lists, within
// the time left of the call, and takes an answer of bounded size.

// hostPattern is one entry of the manifest's http.hosts.
type hostPattern struct {
	// name is a lower-case DNS name or an IP address in canonical form;
	// for a wildcard, the domain below which every name matches.
	name     string
	wildcard bool
	// port is the port; 0 is the scheme's (80 for http, 443 for https).
	port int
}

// parseHostPattern reads one http.hosts entry: HOST or HOST:PORT, where
// HOST is a DNS name, an IP address ([...] for IPv6) or *.DOMAIN.
func parseHostPattern(s string) (hostPattern, error) {
	var p hostPattern
	if s == "" || strings.ContainsAny(s, "/@?# \t") {
		return p, fmt.Errorf("want HOST or HOST:PORT (no scheme, user or path), got %q", s)
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return p, fmt.Errorf("%q: unclosed [", s)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return p, fmt.Errorf("%q: want [IPv6]:PORT", s)
		}
		port = strings.TrimPrefix(port, ":")
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() || a.Zone() != "" {
			return p, fmt.Errorf("%q: %q in brackets is not an IPv6 address", s, host)
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	case strings.Count(s, ":") > 1:
		return p, fmt.Errorf("%q: write an IPv6 address in brackets, [::1]:8080", s)
	}
	if port != "" || strings.HasSuffix(s, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return p, fmt.Errorf("%q: port %q out of range 1-65535", s, port)
		}
		p.port = n
	}
	if a, err := netip.ParseAddr(host); err == nil {
		p.name = a.Unmap().String()
		return p, nil
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.wildcard, host = true, rest
		if _, err := netip.ParseAddr(host); err == nil {
			return p, fmt.Errorf("%q: a wildcard needs a DNS domain, not an address", s)
		}
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !validDNSName(host) {
		return p, fmt.Errorf("%q: %q is not a DNS name or an IP address", s, host)
	}
	p.name = host
	return p, nil
}

// validDNSName reports whether s is a DNS name of letters, digits and
// hyphens (labels of 1-63, 253 in all).
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// String returns the entry as the manifest would write it.
func (p hostPattern) String() string {
	name := p.name
	if strings.Contains(name, ":") {
		name = "[" + name + "]"
	}
	if p.wildcard {
		name = "*." + name
	}
	if p.port != 0 {
		name += ":" + strconv.Itoa(p.port)
	}
	return name
}

// validateHTTP checks the manifest's http section and fills in its
// defaults.
func (m *Manifest) validateHTTP() yamlconf.Errors {
	var errs yamlconf.Errors
	bad := func(key, format string, a ...any) {
		errs = append(errs, &yamlconf.Error{Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	h := &m.HTTP
	if h.MaxResponse == 0 {
		h.MaxResponse = DefaultMaxResponse
	} else if h.MaxResponse < minMaxResponse || h.MaxResponse > maxMaxResponse {
		bad("http.max_response", "%v out of range %v-%v", h.MaxResponse, yamlconf.ByteSize(minMaxResponse), yamlconf.ByteSize(maxMaxResponse))
	}
	seen := map[string]bool{}
	for i, s := range h.Hosts {
		key := fmt.Sprintf("http.hosts[%d]", i)
		p, err := parseHostPattern(s)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		if seen[p.String()] {
			bad(key, "%q is listed twice", s)
		}
		seen[p.String()] = true
	}
	if h.CAFile != "" && (filepath.IsAbs(h.CAFile) || strings.Contains(filepath.ToSlash(h.CAFile), "..")) {
		bad("http.ca_file", "must be a file inside the extension folder, got %q", h.CAFile)
	}
	if len(h.Hosts) > 0 && !slices.Contains(m.Services, abi.ServiceHTTP.String()) {
		bad("http.hosts", "lists hosts, but services does not grant %s", abi.ServiceHTTP)
	}
	return errs
}

// Errors of outbound HTTP that are the guest's (NOT_PERMITTED).
var (
	errHostNotAllowed = errors.New("host not in the manifest's http.hosts")
	errPrivateAddress = errors.New("a wildcard entry of http.hosts may not reach a loopback, private or link-local address")
)

// httpClient is one extension's outbound HTTP: its allow-list, and an
// http.Client whose dialer and redirects keep to it. Safe for concurrent
// use.
type httpClient struct {
	allow  []hostPattern
	max    int64
	client *http.Client
	tr     *http.Transport
	// lookup resolves a name (net.DefaultResolver's; tests replace it).
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// newHTTPClient makes the outbound HTTP of the extension in dir, described
// by m; it fails when http.ca_file cannot be read or holds no
// certificate.
func newHTTPClient(dir string, m *Manifest) (*httpClient, error) {
	hc := &httpClient{max: int64(m.HTTP.MaxResponse), lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}}
	for _, s := range m.HTTP.Hosts {
		if p, err := parseHostPattern(s); err == nil {
			hc.allow = append(hc.allow, p)
		}
	}
	hc.tr = &http.Transport{
		Proxy:               nil, // a proxy would make the allow-list moot
		DialContext:         hc.dial,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		// Headers count toward http.max_response; stop reading them there.
		MaxResponseHeaderBytes: int64(m.HTTP.MaxResponse),
	}
	if f := m.HTTP.CAFile; f != "" {
		pem, err := readRegular(filepath.Join(dir, f), maxManifest, os.ReadFile)
		if err != nil {
			return nil, fmt.Errorf("http.ca_file: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http.ca_file %s: no PEM certificate in it", f)
		}
		hc.tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	hc.client = &http.Client{Transport: hc.tr, CheckRedirect: hc.redirect}
	return hc, nil
}

// close drops the idle connections.
func (hc *httpClient) close() { hc.tr.CloseIdleConnections() }

// match finds the entry allowing host:port of scheme; exact is true for an
// entry naming the host itself rather than a wildcard. An entry without a
// port allows port 80 for http and 443 for https; scheme "" (the dialer,
// which sees no scheme: allowed checked it) takes either.
func (hc *httpClient) match(host string, port int, scheme string) (exact, ok bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	}
	for _, p := range hc.allow {
		want := p.port
		if want == 0 && !defaultPort(scheme, port) {
			continue
		}
		if want != 0 && want != port {
			continue
		}
		if !p.wildcard && p.name == host {
			return true, true
		}
		if p.wildcard && strings.HasSuffix(host, "."+p.name) {
			ok = true
		}
	}
	return false, ok
}

// defaultPort reports whether port is scheme's default (80 for http, 443
// for https; either for "").
func defaultPort(scheme string, port int) bool {
	switch scheme {
	case "http":
		return port == 80
	case "https":
		return port == 443
	}
	return port == 80 || port == 443
}

// allowed checks a request's URL (the first, and every redirect's).
func (hc *httpClient) allowed(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme %q", errHostNotAllowed, u.Scheme)
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("%w: port %q", errHostNotAllowed, p)
		}
		port = n
	}
	if _, ok := hc.match(u.Hostname(), port, u.Scheme); !ok {
		return fmt.Errorf("%w: %s", errHostNotAllowed, u.Host)
	}
	return nil
}

// redirect follows a redirect only to an allowed host, at most 10 times.
func (hc *httpClient) redirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return hc.allowed(req.URL)
}

// errOffline is what an offline host's (a probe's) http_request meets.
var errOffline = errors.New("no network: the extension runs alone (propolis extensions check)")

// refuseDial is the dialer of an offline host's outbound HTTP.
func refuseDial(context.Context, string, string) (net.Conn, error) { return nil, errOffline }

// dial connects to an allowed host. A name matched by a wildcard entry
// must not lead to a loopback, private, link-local or unspecified address
// (a DNS answer could point anywhere); a name or address the manifest
// lists exactly may.
func (hc *httpClient) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portText)
	exact, ok := hc.match(host, port, "")
	if !ok {
		return nil, fmt.Errorf("%w: %s", errHostNotAllowed, addr)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = hc.lookup(ctx, host); err != nil {
		return nil, err
	}
	var d net.Dialer
	var last error = errPrivateAddress
	for _, a := range addrs {
		a = a.Unmap()
		if !exact && internalAddr(a) {
			continue
		}
		c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), portText))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

// NAT64 prefixes: the well-known one (RFC 6052), whose last 32 bits are
// the IPv4 address it reaches, and the local-use one (RFC 8215).
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
)

// internalAddr reports whether a is not a public unicast address. A
// NAT64 address is judged by the IPv4 address it embeds (through a NAT64
// gateway, 64:ff9b::10.0.0.1 reaches 10.0.0.1); the local-use NAT64
// prefix is internal as a whole.
func internalAddr(a netip.Addr) bool {
	if nat64WellKnown.Contains(a) {
		b := a.As16()
		return internalAddr(netip.AddrFrom4([4]byte(b[12:])))
	}
	if nat64Local.Contains(a) {
		return true
	}
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a) // carrier-grade NAT
}

// httpGuestMargin is the share of a call's deadline left to the guest
// after its request: a request must end by 9/10 of the deadline, so that
// the guest can still answer (deny, say) before the deadline halts it.
const httpGuestMargin = 10

// hopHeaders are set by the host; a request's own values are dropped.
var hopHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection"}

// httpRequest is a decoded http_request request.
type httpRequest struct {
	method, url string
	header      http.Header
	body        []byte
}

// decodeHTTPRequest reads the request fields: str method, str url, u32
// header count, per header str name and str value, bytes body.
func decodeHTTPRequest(raw []byte) (httpRequest, bool) {
	r := abi.NewFieldReader(raw)
	req := httpRequest{method: r.Str(), url: r.Str(), header: http.Header{}}
	n := r.U32()
	if n > abi.MaxHTTPHeaders {
		return req, false
	}
	for range n {
		k, v := r.Str(), r.Str()
		if !validToken(k) || strings.ContainsAny(v, "\r\n\x00") {
			return req, false
		}
		if slices.ContainsFunc(hopHeaders, func(h string) bool { return strings.EqualFold(h, k) }) {
			continue
		}
		req.header.Add(k, v)
	}
	req.body = r.Bytes()
	if req.method == "" {
		req.method = http.MethodGet
	}
	return req, r.Err == nil && validToken(req.method)
}

// validToken reports whether s is an HTTP token (a method or header name).
func validToken(s string) bool {
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

// errTooLarge marks a response beyond http.max_response.
var errTooLarge = errors.New("response larger than http.max_response")

// do makes the request within ctx and encodes the response as the result:
// u32 status, u32 header count, per header str name and str value (names
// in canonical form, sorted), bytes body.
func (hc *httpClient) do(ctx context.Context, r httpRequest) ([]byte, error) {
	u, err := url.Parse(r.url)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: url %q", errBadRequest, r.url)
	}
	if err := hc.allowed(u); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), bytes.NewReader(r.body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	req.Header = r.header
	if len(r.body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	resp, err := hc.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	size := int64(8)
	names := make([]string, 0, len(resp.Header))
	for k, vs := range resp.Header {
		names = append(names, k)
		for _, v := range vs {
			size += int64(8 + len(k) + len(v))
		}
	}
	if size > hc.max {
		return nil, errTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, hc.max-size-4+1))
	if err != nil {
		return nil, err
	}
	if size+4+int64(len(body)) > hc.max {
		return nil, errTooLarge
	}
	slices.Sort(names)
	var w abi.Writer
	w.Reset(make([]byte, 0, size+4+int64(len(body))))
	w.U32(uint32(resp.StatusCode))
	count := 0
	for _, k := range names {
		count += len(resp.Header[k])
	}
	w.U32(uint32(count))
	for _, k := range names {
		for _, v := range resp.Header[k] {
			w.Str(k)
			w.Str(v)
		}
	}
	w.Bytes(body)
	return w.Fields(), nil
}

// errBadRequest marks a malformed request (INVALID_ARGUMENT).
var errBadRequest = errors.New("malformed request")

// httpDeadline returns when a request made now by in's call must end: at
// 9/10 of the call's limit from its start (start callbacks: of the set-up
// limit).
func (in *instance) httpDeadline() time.Time {
	limit := in.callLimit()
	if in.cb == abi.CallbackStart {
		limit = in.ext.setupLimit()
	}
	elapsed := time.Duration(0)
	if in.began > 0 {
		elapsed = time.Duration(monotonic() - in.began)
	}
	return time.Now().Add(limit - limit/httpGuestMargin - elapsed)
}

func hfHTTPRequest(in *instance, mod api.Module, stack []uint64) int32 {
	raw, st := arg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxHTTPRequest)
	if st != abi.StatusOK {
		return st
	}
	req, ok := decodeHTTPRequest(raw)
	if !ok {
		return abi.StatusInvalidArgument
	}
	ctx, cancel := context.WithDeadline(in.ctx, in.httpDeadline())
	defer cancel()
	res, err := in.ext.http.do(ctx, req)
	switch {
	case err == nil:
		return result(in, mod, uint32(stack[2]), uint32(stack[3]), res)
	case errors.Is(err, errBadRequest):
		return abi.StatusInvalidArgument
	case errors.Is(err, errHostNotAllowed), errors.Is(err, errPrivateAddress):
		in.ext.gate.refused(in, abi.FuncHTTPRequest, "outbound HTTP refused", "url", logURL(req.url), "error", withoutURL(err))
		return abi.StatusNotPermitted
	case errors.Is(err, errTooLarge):
		return abi.StatusTooLarge
	}
	in.ext.gate.refused(in, abi.FuncHTTPRequest, "outbound HTTP failed", "url", logURL(req.url), "error", withoutURL(err))
	return abi.StatusInternal
}

// withoutURL is err without the URL net/http wraps it with (a *url.Error
// names the whole URL, query string included, where a token may be):
// the log line names the URL through logURL instead.
func withoutURL(err error) error {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	return err
}

// logURL is a URL without its user, query and fragment, which may hold
// secrets.
func logURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(malformed)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
