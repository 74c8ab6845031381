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
	// ErrBadCredentials: wrong user name or password (401).
	ErrBadCredentials = errors.New("bad user name or password")
	// ErrUnknownToken: a bearer token that no admin.tokens entry has
	// (401).
	ErrUnknownToken = errors.New("unknown API token")
	// ErrForbidden: the Host header or the CSRF token is wrong (403).
	ErrForbidden = errors.New("forbidden")
	// ErrLocalMode: a login while no users are configured (400).
	ErrLocalMode = errors.New("no admin users are configured: the API runs in local mode, as the user \"local\", without login")
	// ErrBadUserName: a login or basic auth user name that no user can
	// have (passwd.CheckUser), refused before anything else (400).
	ErrBadUserName = errors.New("bad user name")
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
	// StaleCookie: local mode, and the request carried a session cookie
	// of a login made before the users were removed; the API clears it.
	StaleCookie bool
	// session is the session id of a cookie session.
	session string
}

// Can reports whether the principal has permission p.
func (p *Principal) Can(perm Permission) bool { return p.Perms.Has(perm) }

// CheckCSRF reports whether token is the principal's CSRF token, or the
// principal needs none (basic and bearer auth carry no ambient
// credential a web page could use). The API calls it for GET routes that
// act (zip downloads), whose token comes as a header or a query
// parameter; Authenticate already checks every other method.
func (p *Principal) CheckCSRF(token string) bool {
	if p.Auth != AuthSession && p.Auth != AuthLocal {
		return true
	}
	return sameToken(token, p.CSRF)
}

// session is one login.
type session struct {
	user    string
	csrf    string
	expires time.Time
	// hash is the fingerprint of the password hash the login checked
	// (Policy.fingerprint): a reload that changes it ends the session.
	hash string
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
	// warn throttles the warn lines of failed logins and unknown tokens.
	warn *throttle

	addrsMu   sync.Mutex
	addrs     []net.IP // this machine's addresses, for a 0.0.0.0 bind
	addrsTime time.Time

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
		local: randomString(), sessions: map[string]*session{}, warn: newThrottle(warnEvery, warnBurst, opts.Now)}
	a.policy.Store(p)
	return a
}

// Policy returns the policy in effect.
func (a *Access) Policy() *Policy { return a.policy.Load() }

// Use makes p the policy in effect (a reload). Sessions of users that are
// gone or whose password hash changed end; the others get their new roles
// at their next request.
func (a *Access) Use(p *Policy) {
	a.policy.Store(p)
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, s := range a.sessions {
		if u, ok := p.users[s.user]; !ok || u.fingerprint != s.hash {
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
			if ip := net.ParseIP(name); ip != nil && a.localAddress(ip) {
				return true
			}
		}
	}
	return false
}

// addrsRefresh is how long the machine's addresses are cached for the
// Host check of an endpoint bound to every interface.
const addrsRefresh = 10 * time.Second

// localAddress reports whether ip is an address of this machine, from a
// list refreshed at most every addrsRefresh.
func (a *Access) localAddress(ip net.IP) bool {
	a.addrsMu.Lock()
	if now := time.Now(); a.addrs == nil || now.Sub(a.addrsTime) >= addrsRefresh {
		a.addrs, a.addrsTime = []net.IP{}, now
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, ad := range addrs {
				if n, ok := ad.(*net.IPNet); ok {
					a.addrs = append(a.addrs, n.IP)
				}
			}
		}
	}
	addrs := a.addrs
	a.addrsMu.Unlock()
	for _, local := range addrs {
		if local.Equal(ip) {
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

// CheckOrigin refuses a request a browser sends on behalf of another site:
// Sec-Fetch-Site other than same-origin or none (a typed address, a
// bookmark), or, from a browser that sends no Sec-Fetch-Site, an Origin
// header that is not this request's own scheme and host. Scripts (curl)
// send neither and pass. The API checks every route with it, GET
// included: a cross-site <img> or form can reach any of them.
func CheckOrigin(r *http.Request) error {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return errors.Join(ErrForbidden, errors.New("Sec-Fetch-Site: "+quote(site)+": the admin API answers only its own pages and scripts"))
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	if !strings.EqualFold(origin, scheme+r.Host) {
		return errors.Join(ErrForbidden, errors.New("Origin "+quote(origin)+" is not this endpoint's ("+scheme+r.Host+")"))
	}
	return nil
}

// Identify returns who r claims to be, without checking it: for the audit
// line of a refused request. Basic auth gives the user name it names (""
// when not a valid name), a cookie its session's user, a bearer token its
// name when it is known.
func (a *Access) Identify(r *http.Request) (user, auth string) {
	p := a.policy.Load()
	if authz := r.Header.Get("Authorization"); authz != "" {
		if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
			return p.tokens[TokenDigest(strings.TrimSpace(tok))].name, AuthToken
		}
		if name, _, ok := r.BasicAuth(); ok {
			if passwd.CheckUser(name) != nil {
				name = ""
			}
			return name, AuthBasic
		}
		return "", ""
	}
	if c, err := r.Cookie(CookieName); err == nil && !p.Local() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if s, ok := a.sessions[c.Value]; ok {
			return s.user, AuthSession
		}
		return "", AuthSession
	}
	if p.Local() {
		return LocalUser, AuthLocal
	}
	return "", ""
}

// Authenticate returns who makes r: by bearer token, basic auth, session
// cookie, or local mode, in that order (in local mode a session cookie is
// ignored: Principal.StaleCookie). It checks the Host header
// (ErrForbidden) and, for a state-changing request of a cookie session or
// local mode, the CSRF header (ErrForbidden). Basic auth is rate-limited
// like logins (*RateLimitedError), unknown bearer tokens
// (ErrUnknownToken) count against
// the remote IP's login limit; failures are logged at warn (throttled).
func (a *Access) Authenticate(r *http.Request) (*Principal, error) {
	if !a.CheckHost(r) {
		return nil, errors.Join(ErrForbidden, errors.New("host "+quote(r.Host)+" is not this endpoint's (add it to admin.hosts)"))
	}
	p := a.policy.Load()
	if authz := r.Header.Get("Authorization"); authz != "" {
		if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
			t, ok := p.tokens[TokenDigest(strings.TrimSpace(tok))]
			if !ok {
				ip := RemoteIP(r)
				if err := a.limiter.failIP(ip); err != nil {
					return nil, err
				}
				a.warn.log(a.log, "admin API: unknown bearer token", "remote", ip)
				return nil, ErrUnknownToken
			}
			return &Principal{User: t.name, Auth: AuthToken, Roles: t.roles, Perms: p.permissions(t.roles)}, nil
		}
		if name, pass, ok := r.BasicAuth(); ok {
			u, err := a.verify(p, RemoteIP(r), name, pass, "basic")
			if err != nil {
				return nil, err
			}
			return &Principal{User: name, Auth: AuthBasic, Roles: u.roles, Perms: p.permissions(u.roles)}, nil
		}
		return nil, errors.Join(ErrUnauthenticated, errors.New("Authorization header: want Bearer or Basic"))
	}
	c, cerr := r.Cookie(CookieName)
	if cerr == nil && !p.Local() {
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
		if !ok || u.fingerprint != s.hash {
			a.mu.Lock()
			delete(a.sessions, c.Value)
			a.mu.Unlock()
			if !ok {
				return nil, errors.Join(ErrUnauthenticated, errors.New("user "+quote(s.user)+" no longer exists"))
			}
			return nil, errors.Join(ErrUnauthenticated, errors.New("the password of "+quote(s.user)+" changed: log in again"))
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
		return &Principal{User: LocalUser, Auth: AuthLocal, Roles: []string{"admin"}, Perms: all(), CSRF: a.local, StaleCookie: cerr == nil}, nil
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
// of the user name at ip; how says "login" or "basic", for the log. A
// name no user can have is ErrBadUserName before anything else. The
// attempt takes a token of both limits before the password is checked
// and gets them back when it was right; a failure is logged at warn
// (throttled).
func (a *Access) verify(p *Policy, ip, name, pass, how string) (user, error) {
	if err := passwd.CheckUser(name); err != nil {
		return user{}, errors.Join(ErrBadUserName, err)
	}
	t, rl := a.limiter.reserve(ip, name)
	if rl != nil {
		a.warn.log(a.log, "admin API: login rate-limited", "user", name, "remote", ip, "via", how, "retry_after", rl.RetryAfter.Round(time.Second).String())
		return user{}, rl
	}
	u, ok := p.users[name]
	hash := u.hash
	if !ok {
		hash = p.dummy
	}
	if !hash.Verify([]byte(pass)) || !ok {
		a.warn.log(a.log, "admin API: failed login", "user", name, "remote", ip, "via", how)
		return user{}, ErrBadCredentials
	}
	t.refund()
	return u, nil
}

// Login checks a user's password and starts a session: it returns the
// principal (with its CSRF token) and the cookie to set. Errors:
// ErrLocalMode, ErrBadUserName, *RateLimitedError, ErrBadCredentials.
func (a *Access) Login(r *http.Request, name, pass string) (*Principal, *http.Cookie, error) {
	p := a.policy.Load()
	if p.Local() {
		return nil, nil, ErrLocalMode
	}
	u, err := a.verify(p, RemoteIP(r), name, pass, "login")
	if err != nil {
		return nil, nil, err
	}
	id, csrf := randomString(), randomString()
	now := a.opts.Now()
	s := &session{user: name, csrf: csrf, expires: now.Add(p.ttl), hash: u.fingerprint}
	a.mu.Lock()
	if len(a.sessions) >= maxSessions {
		a.evict(now)
	}
	a.sessions[id] = s
	a.mu.Unlock()
	cookie := &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: a.opts.TLS,
		SameSite: http.SameSiteStrictMode, Expires: s.expires, MaxAge: int(p.ttl / time.Second)}
	return &Principal{User: name, Auth: AuthSession, Roles: u.roles, Perms: p.permissions(u.roles), CSRF: csrf, session: id}, cookie, nil
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
// clears it in the browser (ClearCookie).
func (a *Access) Logout(p *Principal) *http.Cookie {
	if p.session != "" {
		a.mu.Lock()
		delete(a.sessions, p.session)
		a.mu.Unlock()
	}
	return a.ClearCookie()
}

// ClearCookie returns the cookie that removes the session cookie from a
// browser: at logout, and for a stale cookie in local mode.
func (a *Access) ClearCookie() *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: a.opts.TLS,
		SameSite: http.SameSiteStrictMode, MaxAge: -1}
}
