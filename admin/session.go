package admin

import (
	"errors"
	"net/http"

	"github.com/propolis-mqtt/propolis/admin/access"
)

// me is the answer of login and /me.
type me struct {
	User        string   `json:"user"`
	Auth        string   `json:"auth"`
	Roles       []string `json:"roles"`
	Permissions []string `json:"permissions"`
	CSRFToken   string   `json:"csrf_token"`
}

// meOf describes p.
func meOf(p *access.Principal) me {
	return me{User: p.User, Auth: p.Auth, Roles: p.Roles, Permissions: p.Perms.List(), CSRFToken: p.CSRF}
}

// maxLoginBody bounds the body of a login: a name of passwd.MaxUser
// bytes and a password fit many times over.
const maxLoginBody = 16 << 10

// login: POST /api/v1/login {"user","password"}. A user name no user can
// have is a 400 before anything is counted, logged or audited; failures
// are audited (throttled, as every refusal); a login whose audit line
// cannot be written is undone (503).
func (a *API) login(w http.ResponseWriter, r *request) (int, any, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	var body struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := decode(r, &body); err != nil {
		return 0, nil, err
	}
	if body.User == "" {
		return 0, nil, errorf(http.StatusBadRequest, "user: required")
	}
	who, cookie, err := a.o.Access.Login(r.Request, body.User, body.Password)
	if err != nil {
		var rl *access.RateLimitedError
		failed := &request{Request: r.Request, who: &access.Principal{User: body.User, Auth: "login"}}
		switch {
		case errors.Is(err, access.ErrLocalMode):
			if _, cerr := r.Cookie(access.CookieName); cerr == nil {
				http.SetCookie(w, a.o.Access.ClearCookie())
			}
			return 0, nil, errorf(http.StatusBadRequest, "%v", err)
		case errors.Is(err, access.ErrBadUserName):
			return 0, nil, errorf(http.StatusBadRequest, "user: %v", err)
		case errors.As(err, &rl):
			a.audit(failed, "login_failed", body.User, &httpError{code: http.StatusTooManyRequests, err: err})
			a.deny(w, err)
			return 0, nil, errHandled
		default:
			a.audit(failed, "login_failed", body.User, &httpError{code: http.StatusUnauthorized, err: err})
			return 0, nil, errorf(http.StatusUnauthorized, "%v", err)
		}
	}
	r.who = who
	if err := a.auditErr(r, "login", who.User, "ok", nil); err != nil {
		a.o.Access.Logout(who)
		a.log.Error("admin API: audit log", "action", "login", "target", who.User, "error", err)
		return 0, nil, errorf(http.StatusServiceUnavailable, "login not made: %v", err)
	}
	http.SetCookie(w, cookie)
	return http.StatusOK, meOf(who), nil
}

// logout: POST /api/v1/logout.
func (a *API) logout(w http.ResponseWriter, r *request) (int, any, error) {
	http.SetCookie(w, a.o.Access.Logout(r.who))
	a.audit(r, "logout", r.who.User, nil)
	return http.StatusNoContent, nil, nil
}

// me: GET /api/v1/me.
func (a *API) me(_ http.ResponseWriter, r *request) (int, any, error) {
	return http.StatusOK, meOf(r.who), nil
}
