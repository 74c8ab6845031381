package access

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/passwd"
)

// The ways a request is authenticated, as Principal.Auth and the audit
// log write them.
const (
	AuthSession = "session" // the propolis_session cookie of a login
	AuthBasic   = "basic"   // HTTP basic auth, for scripts
	AuthToken   = "token"   // Authorization: Bearer TOKEN
	AuthLocal   = "local"   // local mode: no users or tokens configured
)

// CookieName is the session cookie; CSRFHeader the header a cookie
// session (and local mode) repeats its CSRF token in on every
// state-changing request.
const (
	CookieName = "propolis_session"
	CSRFHeader = "X-CSRF-Token"
)

// Errors of Authenticate and Login, which the admin API turns into status
// codes.
var (
	// ErrUnauthenticated: no credentials, or an expired session (401).
	ErrUnauthenticated = errors.New("not logged in")
	// ErrBadCredentials: wrong user name, password or token (401).
	ErrBadCredentials = errors.New("bad user name or password")
	// ErrForbidden: the Host header or the CSRF token is wrong (403).
	ErrForbidden = errors.New("forbidden")
	// ErrLocalMode: a login while no users are configured (400).
	ErrLocalMode = errors.New("no admin users are configured: the API runs in local mode, as the user \"local\", without login")
)

// RateLimitedError is a login refused for too many failures (429).
type RateLimitedError struct {
	// Key is what was limited: "ip 192.0.2.1" or "user alice".
	Key string
	// RetryAfter is when the next attempt may be made.
	RetryAfter time.Duration
}

// Error says which limit was reached.
func (e *RateLimitedError) Error() string {
	return "too many failed logins for " + e.Key + ": retry in " + e.RetryAfter.Round(time.Second).String()
}

// Principal is who makes a request, with what they may do.
type Principal struct {
	// User is the user name, the token's name, or LocalUser.
	User string
	// Auth is AuthSession, AuthBasic, AuthToken or AuthLocal.
	Auth  string
	Roles []string
	Perms Set
	// CSRF is the session's CSRF token (sessions and local mode).
	CSRF string
	// session is the session id of a cookie session.
	session string
}

// Can reports whether the principal has permission p.
func (p *Principal) Can(perm Permission) bool { return p.Perms.Has(perm) }

// session is one login.
type session struct {
	user    string
	csrf    string
	expires time.Time
}

// Options are what Access needs besides the Policy.
type Options struct {
	// Addr is the endpoint's bound address (host:port), which the Host
	// header may name.
	Addr string
	// TLS says that the endpoint serves HTTPS: the cookie is then Secure.
	TLS bool
	// Audit receives every state-changing action; nil writes none.
	Audit *Audit
	// Logger receives failed logins at warn; nil means slog.Default().
	Logger *slog.Logger
	// Limits of failed logins; zero values take DefaultLoginLimits.
	Limits LoginLimits
	// Now is the clock, for tests of expiry; nil means time.Now.
	Now func() time.Time
}

// Access authenticates the admin API's requests. Safe for concurrent use.
type Access struct {
	policy  atomic.Pointer[Policy]
	opts    Options
	log     *slog.Logger
	limiter *limiter
	local   string // the CSRF token of local mode
	dummy   passwd.Hash

	mu       sync.Mutex
	sessions map[string]*session
}

// maxSessions bounds the sessions kept; the oldest expiring one goes
// first when a login would exceed it.
const maxSessions = 10000

// New returns an Access over p.
func New(p *Policy, opts Options) *Access {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Access{opts: opts, log: opts.Logger, limiter: newLimiter(opts.Limits, opts.Now),
		local: randomString(), sessions: map[string]*session{}}
	// A user name that does not exist costs the same PBKDF2 as one that
	// does, so the time of an answer does not tell them apart.
	h, _ := passwd.New([]byte(randomString()), 0)
	a.dummy, _ = passwd.Parse(h)
	a.policy.Store(p)
	return a
}

// Policy returns the policy in effect.
func (a *Access) Policy() *Policy { return a.policy.Load() }

// Use makes p the policy in effect (a reload). Sessions of users that are
// gone end; the others get their new roles at their next request.
func (a *Access) Use(p *Policy) {
	a.policy.Store(p)
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, s := range a.sessions {
		if _, ok := p.users[s.user]; !ok {
			delete(a.sessions, id)
		}
	}
}

// Audit returns the audit log given in Options, or nil.
func (a *Access) Audit() *Audit { return a.opts.Audit }

// randomString returns 32 random bytes as base64url.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// RemoteIP returns the IP of r's peer (no proxy header is trusted).
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// CheckHost reports whether r's Host header names this endpoint: its bound
// address, a loopback name or address (any port), an address of this
// machine when the endpoint listens on all interfaces, or one of
// admin.hosts. Anything else may be a DNS rebinding attack.
func (a *Access) CheckHost(r *http.Request) bool {
	h := r.Host
	if h == "" {
		return false
	}
	if strings.EqualFold(h, a.opts.Addr) {
		return true
	}
	name := h
	if host, _, err := net.SplitHostPort(h); err == nil {
		name = host
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if strings.EqualFold(name, "localhost") {
		return true
	}
	if ip := net.ParseIP(name); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, allowed := range a.policy.Load().hosts {
		if strings.EqualFold(allowed, h) || strings.EqualFold(allowed, name) {
			return true
		}
	}
	if bound, _, err := net.SplitHostPort(a.opts.Addr); err == nil {
		if ip := net.ParseIP(bound); ip != nil && ip.IsUnspecified() {
			if ip := net.ParseIP(name); ip != nil && localAddress(ip) {
				return true
			}
		}
	}
	return false
}

// localAddress reports whether ip is an address of this machine.
func localAddress(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// stateChanging reports whether r's method changes state.
func stateChanging(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// Authenticate returns who makes r: by bearer token, basic auth, session
// cookie, or local mode, in that order. It checks the Host header
// (ErrForbidden) and, for a state-changing request of a cookie session or
// local mode, the CSRF header (ErrForbidden). Basic auth failures are
// rate-limited like logins (*RateLimitedError) and logged.
func (a *Access) Authenticate(r *http.Request) (*Principal, error) {
	if !a.CheckHost(r) {
		return nil, errors.Join(ErrForbidden, errors.New("host "+quote(r.Host)+" is not this endpoint's (add it to admin.hosts)"))
	}
	p := a.policy.Load()
	if authz := r.Header.Get("Authorization"); authz != "" {
		if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
			t, ok := p.tokens[TokenDigest(strings.TrimSpace(tok))]
			if !ok {
				a.log.Warn("admin API: unknown bearer token", "remote", RemoteIP(r))
				return nil, ErrBadCredentials
			}
			return &Principal{User: t.name, Auth: AuthToken, Roles: t.roles, Perms: p.permissions(t.roles)}, nil
		}
		if name, pass, ok := r.BasicAuth(); ok {
			roles, err := a.verify(p, RemoteIP(r), name, pass, "basic")
			if err != nil {
				return nil, err
			}
			return &Principal{User: name, Auth: AuthBasic, Roles: roles, Perms: p.permissions(roles)}, nil
		}
		return nil, errors.Join(ErrUnauthenticated, errors.New("Authorization header: want Bearer or Basic"))
	}
	if c, err := r.Cookie(CookieName); err == nil {
		a.mu.Lock()
		s, ok := a.sessions[c.Value]
		if ok && !a.opts.Now().Before(s.expires) {
			delete(a.sessions, c.Value)
			ok = false
		}
		a.mu.Unlock()
		if !ok {
			return nil, errors.Join(ErrUnauthenticated, errors.New("session expired or unknown: log in again"))
		}
		u, ok := p.users[s.user]
		if !ok {
			return nil, errors.Join(ErrUnauthenticated, errors.New("user "+quote(s.user)+" no longer exists"))
		}
		if stateChanging(r) && !sameToken(r.Header.Get(CSRFHeader), s.csrf) {
			return nil, errors.Join(ErrForbidden, errors.New("missing or wrong "+CSRFHeader+" header (the csrf_token of login or /api/v1/me)"))
		}
		return &Principal{User: s.user, Auth: AuthSession, Roles: u.roles, Perms: p.permissions(u.roles), CSRF: s.csrf, session: c.Value}, nil
	}
	if p.Local() {
		if stateChanging(r) && !sameToken(r.Header.Get(CSRFHeader), a.local) {
			return nil, errors.Join(ErrForbidden, errors.New("missing or wrong "+CSRFHeader+" header (the csrf_token of /api/v1/me)"))
		}
		return &Principal{User: LocalUser, Auth: AuthLocal, Roles: []string{"admin"}, Perms: all(), CSRF: a.local}, nil
	}
	return nil, ErrUnauthenticated
}

// sameToken compares a header with a token in constant time.
func sameToken(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// quote quotes s for an error message.
func quote(s string) string { return "\"" + strings.ReplaceAll(s, "\"", "\\\"") + "\"" }

// verify checks a user's password under the rate limits of remote ip and
// user name; how says "login" or "basic", for the log. A failure costs a
// token of both limits and is logged at warn.
func (a *Access) verify(p *Policy, ip, name, pass, how string) ([]string, error) {
	if err := a.limiter.check(ip, name); err != nil {
		a.log.Warn("admin API: login rate-limited", "user", name, "remote", ip, "via", how, "retry_after", err.RetryAfter.Round(time.Second).String())
		return nil, err
	}
	u, ok := p.users[name]
	hash := u.hash
	if !ok {
		hash = a.dummy
	}
	if !hash.Verify([]byte(pass)) || !ok {
		a.limiter.fail(ip, name)
		a.log.Warn("admin API: failed login", "user", name, "remote", ip, "via", how)
		return nil, ErrBadCredentials
	}
	return u.roles, nil
}

// Login checks a user's password and starts a session: it returns the
// principal (with its CSRF token) and the cookie to set. Errors:
// ErrLocalMode, *RateLimitedError, ErrBadCredentials.
func (a *Access) Login(r *http.Request, name, pass string) (*Principal, *http.Cookie, error) {
	p := a.policy.Load()
	if p.Local() {
		return nil, nil, ErrLocalMode
	}
	roles, err := a.verify(p, RemoteIP(r), name, pass, "login")
	if err != nil {
		return nil, nil, err
	}
	id, csrf := randomString(), randomString()
	now := a.opts.Now()
	s := &session{user: name, csrf: csrf, expires: now.Add(p.ttl)}
	a.mu.Lock()
	if len(a.sessions) >= maxSessions {
		a.evict(now)
	}
	a.sessions[id] = s
	a.mu.Unlock()
	cookie := &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: a.opts.TLS,
		SameSite: http.SameSiteStrictMode, Expires: s.expires, MaxAge: int(p.ttl / time.Second)}
	return &Principal{User: name, Auth: AuthSession, Roles: roles, Perms: p.permissions(roles), CSRF: csrf, session: id}, cookie, nil
}

// evict removes expired sessions, then the one expiring first if none
// had; a.mu is held.
func (a *Access) evict(now time.Time) {
	var first string
	for id, s := range a.sessions {
		if !now.Before(s.expires) {
			delete(a.sessions, id)
			continue
		}
		if first == "" || s.expires.Before(a.sessions[first].expires) {
			first = id
		}
	}
	if len(a.sessions) >= maxSessions && first != "" {
		delete(a.sessions, first)
	}
}

// Logout ends p's session, if it is one, and returns the cookie that
// clears it in the browser.
func (a *Access) Logout(p *Principal) *http.Cookie {
	if p.session != "" {
		a.mu.Lock()
		delete(a.sessions, p.session)
		a.mu.Unlock()
	}
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: a.opts.TLS,
		SameSite: http.SameSiteStrictMode, MaxAge: -1}
}
