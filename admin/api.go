// Package admin is the admin API: JSON under /api/v1 on the operator's
// HTTP endpoint (package opshttp), for the control center (admin/ui) and
// for scripts. It reads and acts on the broker (clients, sessions,
// subscriptions, retained messages, counters), the extension host
// (status; enable and disable through host.Enable and host.Disable, as the
// CLI) and the trace recorder (package trace); package admin/access decides
// who may do what and writes the audit log.
//
// Every route, its permission and its handler are one line of the table
// in routes.go; openapi.yaml documents each, and TestOpenAPI checks the two
// against each other. Errors are {"error": "..."} with the status code
// the route documents; times are RFC 3339; keys are snake_case.
//
// Read first: this file (API, Options, the request wrapper), then
// routes.go, then one handler file (clients.go).
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/host"
)

// Prefix is the path every route of the API starts with.
const Prefix = "/api/v1"

// Broker is what the API asks of the broker; *broker.Server implements it.
type Broker interface {
	Client(clientID string) (broker.ClientInfo, bool)
	Disconnect(clientID string, code byte, reason string, preventWill bool) error
	InvalidateSession(clientID string) error
	Subscriptions(clientID string) ([]broker.SubscriptionInfo, error)
	Attributes(clientID string) ([]broker.Attribute, error)
	Retained(topic string) (broker.Message, bool)
	DeleteRetained(topic string) error
	Counters() broker.Counters
	Levels() broker.Levels
	Overload() broker.OverloadStats
	Config() *config.Config
}

var _ Broker = (*broker.Server)(nil)

// Host is what the API asks of the extension host; *host.Host implements
// it.
type Host interface {
	Status() []host.Status
	SecurityExtensions() []string
}

var _ Host = (*host.Host)(nil)

// Options are what New needs.
type Options struct {
	// Broker, Queries, Host and Access are required (the broker is both
	// Broker and Queries).
	Broker  Broker
	Queries Queries
	Host    Host
	Access  *access.Access
	// Recorder is the trace recorder; nil answers the trace routes with
	// 409 (recordings off) and lists none.
	Recorder Recorder
	// ExtensionsDir is the extensions folder enable and disable act on
	// (extensions_dir).
	ExtensionsDir string
	// Version is the broker's version, for /api/v1/broker.
	Version string
	// Logger receives the errors of the audit log and of handlers; nil
	// means slog.Default().
	Logger *slog.Logger
}

// API serves the admin API. Safe for concurrent use.
type API struct {
	o   Options
	log *slog.Logger
}

// New returns the API over o.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &API{o: o, log: o.Logger}
}

// Mount adds every route of the API to mux, and JSON answers for an
// unknown path under Prefix (404) and an unsupported method (405).
func (a *API) Mount(mux *http.ServeMux) {
	methods := map[string][]string{}
	var paths []string
	for _, r := range a.routes() {
		mux.Handle(r.Method+" "+r.Path, a.wrap(r))
		if methods[r.Path] == nil {
			paths = append(paths, r.Path)
		}
		methods[r.Path] = append(methods[r.Path], r.Method)
	}
	// Each other usual method of a path gets a JSON 405 (a method-less
	// pattern would conflict with the {id} routes of other methods).
	for _, p := range paths {
		allow := strings.Join(methods[p], ", ")
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if slices.Contains(methods[p], m) {
				continue
			}
			mux.HandleFunc(m+" "+p, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Allow", allow)
				writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method not allowed (allowed: %s)", allow))
			})
		}
	}
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such API route: %s", r.URL.Path))
	})
}

// request is one authenticated request.
type request struct {
	*http.Request
	who *access.Principal
}

// handler answers an authenticated request with a status, a value to write
// as JSON (nil: no body) or an error.
type handler func(w http.ResponseWriter, r *request) (int, any, error)

// route is one line of the route table.
type route struct {
	// Method and Path as ServeMux patterns take them.
	Method, Path string
	// Perm is the permission the route needs; "" for any logged-in user
	// (and none at all for login).
	Perm access.Permission
	// Public routes (login) run without authentication.
	Public bool
	// Action is the audit log's name of a state-changing route, written
	// also when the permission is missing.
	Action string
	h      handler
}

// httpError is an error with its status code.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

// errHandled is returned by a handler that wrote its answer itself.
var errHandled = errors.New("answered")

// errorf returns an error answered with code.
func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, err: fmt.Errorf(format, args...)}
}

// wrap authenticates the request and checks rt.Perm before calling rt.h.
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := &request{Request: r}
		if !rt.Public {
			who, err := a.o.Access.Authenticate(r)
			if err != nil {
				a.deny(w, err)
				return
			}
			req.who = who
			if rt.Perm != "" && !who.Can(rt.Perm) {
				err := &httpError{code: http.StatusForbidden, err: fmt.Errorf("permission %s required: %s (roles %s) does not have it",
					rt.Perm, who.User, strings.Join(who.Roles, ", "))}
				if rt.Action != "" {
					target := r.PathValue("id")
					if target == "" {
						target = r.URL.Query().Get("topic")
					}
					a.audit(req, rt.Action, target, err)
				}
				writeError(w, http.StatusForbidden, err)
				return
			}
		} else if !a.o.Access.CheckHost(r) {
			writeError(w, http.StatusForbidden, fmt.Errorf("host %q is not this endpoint's (add it to admin.hosts)", r.Host))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		code, v, err := rt.h(w, req)
		if errors.Is(err, errHandled) {
			return
		}
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				code = he.code
			} else if code < 400 {
				code = http.StatusInternalServerError
			}
			if code >= 500 {
				a.log.Error("admin API", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			writeError(w, code, err)
			return
		}
		if v == nil {
			w.WriteHeader(code)
			return
		}
		writeJSON(w, code, v)
	})
}

// deny answers a failed authentication.
func (a *API) deny(w http.ResponseWriter, err error) {
	var rl *access.RateLimitedError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int((rl.RetryAfter+time.Second-1)/time.Second)))
		writeError(w, http.StatusTooManyRequests, err)
	case errors.Is(err, access.ErrForbidden):
		writeError(w, http.StatusForbidden, err)
	default:
		writeError(w, http.StatusUnauthorized, err)
	}
}

// writeJSON writes v as an uncached JSON response with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeError writes {"error": err} with code; errors joined with newlines
// (access's) become "; ".
func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": strings.ReplaceAll(err.Error(), "\n", ": ")})
}

// decode reads r's JSON body into v; an empty body leaves v as it is.
func decode(r *request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	return nil
}

// audit writes one audit line for r's principal; a failure of the log is
// logged (the action was taken).
func (a *API) audit(r *request, action, target string, err error) {
	e := access.Entry{Remote: access.RemoteIP(r.Request), Action: action, Target: target, Result: "ok"}
	if r.who != nil {
		e.User, e.Auth = r.who.User, r.who.Auth
	}
	if err != nil {
		e.Result, e.Error = "error", err.Error()
		var he *httpError
		if errors.As(err, &he) && (he.code == http.StatusForbidden || he.code == http.StatusUnauthorized || he.code == http.StatusTooManyRequests) {
			e.Result = "denied"
		}
	}
	if werr := a.o.Access.Audit().Write(e); werr != nil {
		a.log.Error("admin API: audit log", "action", action, "target", target, "error", werr)
	}
}

// timeOrNil returns t for JSON, or nil when zero.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
