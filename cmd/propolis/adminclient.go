package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// The HTTP client of the commands that act on a running broker's memory
// (`propolis clients ...`): they call its admin API (package admin), the
// same routes, permissions and audit log as the control center, so an
// action has one implementation whichever way an operator takes it.

// tokenEnv is the environment variable holding the API token of the
// clients commands when --token-file is not given. There is no flag with
// the token itself: a command line shows in ps.
const tokenEnv = "PROPOLIS_ADMIN_TOKEN"

// adminRequestTimeout bounds one request to the admin API.
const adminRequestTimeout = 30 * time.Second

// adminFlags are the flags of every command calling the admin API.
type adminFlags struct {
	url, config, tokenFile *optional
}

// declareAdminFlags declares --url, --config and --token-file on fs.
func declareAdminFlags(fs *flag.FlagSet) *adminFlags {
	return declareAdminFlagsWith(fs, optionalFlag(fs, "config", "the embedded configuration",
		"take the broker's address from the http.address of `FILE` (YAML)"))
}

// declareAdminFlagsWith declares --url and --token-file on fs, for a
// command that declared --config itself (config).
func declareAdminFlagsWith(fs *flag.FlagSet, file *optional) *adminFlags {
	return &adminFlags{
		url: optionalFlag(fs, "url", "http://HOST:PORT of the --config file's http.address; http://"+config.DefaultHTTPAddress+" without --config",
			"call the admin API of the broker at `URL` (scheme, host and port)"),
		config: file,
		tokenFile: optionalFlag(fs, "token-file", "the token in $"+tokenEnv+"; none (local mode) without it",
			"send the API token read from `FILE` (from 'propolis admin token')"),
	}
}

// client returns the admin API client the flags describe.
func (f *adminFlags) client() (*adminClient, error) {
	base := f.url.value
	if base == "" {
		cfg, err := loadConfig(f.config.value, "", "", "", "")
		if err != nil {
			return nil, err
		}
		if base, err = endpointURL(cfg); err != nil {
			return nil, err
		}
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("--url %q: want http://HOST:PORT or https://HOST:PORT", base)
	}
	c := &adminClient{base: u.Scheme + "://" + u.Host, hc: &http.Client{Timeout: adminRequestTimeout}}
	switch {
	case f.tokenFile.value != "":
		b, err := os.ReadFile(f.tokenFile.value)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		if c.token = strings.TrimSpace(string(b)); c.token == "" || strings.ContainsAny(c.token, " \t\r\n") {
			return nil, fmt.Errorf("--token-file %s: want one token (from 'propolis admin token') on one line", f.tokenFile.value)
		}
		c.tokenFrom = "the token of " + f.tokenFile.value
	case os.Getenv(tokenEnv) != "":
		if c.token = strings.TrimSpace(os.Getenv(tokenEnv)); strings.ContainsAny(c.token, " \t\r\n") {
			return nil, fmt.Errorf("$%s: want one token (from 'propolis admin token')", tokenEnv)
		}
		c.tokenFrom = "the token of $" + tokenEnv
	}
	return c, nil
}

// endpointURL is the base URL of cfg's operator endpoint: https with
// http.tls, and the loopback address for a wildcard host, which reaches
// it (as serve's own log line does, openURL).
func endpointURL(cfg *config.Config) (string, error) {
	if cfg.HTTP.Address == "" {
		return "", fmt.Errorf("config %s: http.address is empty, so the broker serves no admin API; give --url if it runs with another configuration", cfg.Source)
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Address)
	if err != nil {
		return "", fmt.Errorf("config %s: http.address %q: %w", cfg.Source, cfg.HTTP.Address, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.HTTP.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// adminClient calls one broker's admin API (/api/v1) with a bearer token,
// or with none in local mode. Used by one command on one goroutine.
type adminClient struct {
	base      string // scheme://host:port
	token     string // "" in local mode
	tokenFrom string // where the token came from, for a 401
	csrf      string // local mode: the CSRF token of GET /api/v1/me, fetched before the first POST
	hc        *http.Client
}

// get calls GET path (under /api/v1, with its query) and decodes the JSON
// answer into out; raw, when not nil, receives the answer's bytes.
func (c *adminClient) get(path string, out any, raw *[]byte) error {
	body, err := c.do(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if raw != nil {
		*raw = body
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API at %s: GET %s: unexpected answer: %w", c.base, path, err)
	}
	return nil
}

// post calls POST path with the JSON body in (nil: none). Without a token
// it first fetches the CSRF token of local mode, which the API asks of
// every POST there.
func (c *adminClient) post(path string, in any) error { return c.postFor(path, in, nil) }

// postFor is post decoding the JSON answer into out (nil: ignored).
func (c *adminClient) postFor(path string, in, out any) error {
	if c.token == "" && c.csrf == "" {
		var me struct {
			CSRFToken string `json:"csrf_token"`
		}
		if err := c.get("/me", &me, nil); err != nil {
			return err
		}
		c.csrf = me.CSRFToken
	}
	body, err := c.do(http.MethodPost, path, in)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API at %s: POST %s: unexpected answer: %w", c.base, path, err)
	}
	return nil
}

// do sends one request and returns the body of a 2xx answer, or an error
// saying what went wrong in the operator's terms.
func (c *adminClient) do(method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+"/api/v1"+path, body)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.base, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else if c.csrf != "" {
		req.Header.Set(access.CSRFHeader, c.csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %s %s: reading the answer: %w", c.base, method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	return nil, c.refusal(resp, b)
}

// unreachable words a failed connection: nothing listening, or anything
// else the network or TLS said.
func (c *adminClient) unreachable(err error) error {
	u, _ := url.Parse(c.base)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin API at %s: connection refused: is 'propolis serve' running with http.address %s (and admin.enabled true)? Give the broker's address with --url or --config",
			c.base, u.Host)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("admin API at %s: %w", c.base, err)
}

// refusal words a non-2xx answer: the API's own message ({"error": ...}:
// it names the permission missing, the client without a session ...),
// with a hint for a missing token.
func (c *adminClient) refusal(resp *http.Response, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	if resp.StatusCode == http.StatusNotFound && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		msg = "no admin API here (is admin.enabled false, or is this another server?)"
	}
	err := fmt.Errorf("admin API at %s: %d %s: %s", c.base, resp.StatusCode, http.StatusText(resp.StatusCode), msg)
	if resp.StatusCode == http.StatusUnauthorized {
		if c.token == "" {
			return fmt.Errorf("%w; the broker has admin users or tokens: give a token with --token-file FILE or $%s", err, tokenEnv)
		}
		return fmt.Errorf("%w (sent %s)", err, c.tokenFrom)
	}
	return err
}
