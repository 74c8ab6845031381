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
	"maps"
	"mime"
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
	// ClusterStatus returns the cluster as this node sees it, for GET
	// /api/v1/cluster (cmd/propolis passes the cluster node's Status; admin
	// does not import package cluster, so NATS stays out of it). Nil when
	// the broker has no cluster section: the route answers 404.
	ClusterStatus func() any
	// ClusterMismatch returns how the cluster's alive nodes differ
	// (package cluster's Node.Mismatch: versions, protocol, extensions),
	// for GET /api/v1/broker's cluster_mismatch, which the control center
	// shows as a warning. Nil without a cluster section.
	ClusterMismatch func() []string
	// ClusterExtension enables or disables an extension on every node of
	// the cluster, for POST /api/v1/cluster/extensions/{id}/enable and
	// disable. Nil without a cluster section: they answer 404.
	ClusterExtension ClusterExtensionFunc
	// ClusterNode is this node's name (cluster.name), for GET
	// /api/v1/broker's node and the control center's header; "" without
	// a cluster section.
	ClusterNode string
	// ClusterSession reads the replicated record of a client id's session
	// (package cluster's Node.ReplicatedSession), for GET
	// /api/v1/clients/{id} when this node's broker has no session of the
	// id: an offline session of a cluster lives in its bucket, on no
	// node. Nil without a cluster section.
	ClusterSession ClusterSessionFunc
	// Logger receives the errors of the audit log and of handlers; nil
	// means slog.Default().
	Logger *slog.Logger
}

// API serves the admin API. Safe for concurrent use.
type API struct {
	o   Options
	log *slog.Logger
	// refusals throttles the audit lines of refused requests, which
	// anyone reaching the endpoint can cause.
	refusals *access.Throttle
}

// Refused requests are audited up to refusalBurst at once, then one per
// refusalEvery; the next line written says how many were left out.
const (
	refusalBurst = 60
	refusalEvery = time.Second
)

// New returns the API over o.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &API{o: o, log: o.Logger, refusals: access.NewThrottle(refusalEvery, refusalBurst)}
}

// Mux is where Mount adds the routes; *http.ServeMux is one.
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Mount adds every route of the API to mux, and JSON answers for an
// unknown path under Prefix (404) and an unsupported method (405).
func (a *API) Mount(mux Mux) {
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
			mux.Handle(m+" "+p, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Allow", allow)
				writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method not allowed (allowed: %s)", allow))
			}))
		}
	}
	mux.Handle(Prefix+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such API route: %s", r.URL.Path))
	}))
}

// request is one authenticated request.
type request struct {
	*http.Request
	who *access.Principal
	// details are the request's parameters for the audit line of its
	// result (access.Entry.Details), set by a handler once it has read
	// them; never a secret.
	details map[string]any
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
	// Action is the audit log's name of a route that acts: the wrapper
	// writes an "attempt" line before the handler runs (refusing with 503
	// when it cannot), and a "denied" line when the request is refused;
	// the handler writes the result line.
	Action string
	// Token: a GET that acts (a zip download), which needs the CSRF token
	// of a cookie session or local mode like a POST, as the X-CSRF-Token
	// header or the csrf_token query parameter (a link sends no header).
	Token bool
	h     handler
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

// wrap checks the request (Origin, Host, authentication, CSRF,
// permission), writes the attempt line of an action, then calls rt.h.
// Every refusal of a route that acts is audited (throttled).
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := &request{Request: r}
		target := r.PathValue("id")
		if target == "" {
			target = r.URL.Query().Get("topic")
		}
		refuse := func(code int, err error) {
			if rt.Action != "" {
				user, auth := a.o.Access.Identify(r)
				if req.who != nil {
					user, auth = req.who.User, req.who.Auth
				}
				a.auditEntry(access.Entry{User: user, Auth: auth, Remote: access.RemoteIP(r), Action: rt.Action, Target: target,
					Result: "denied", Error: err.Error()})
			}
			if code == 0 {
				a.deny(w, err)
				return
			}
			writeError(w, code, err)
		}
		if err := access.CheckOrigin(r); err != nil {
			refuse(http.StatusForbidden, err)
			return
		}
		if !rt.Public {
			who, err := a.o.Access.Authenticate(r)
			if err != nil {
				refuse(0, err)
				return
			}
			req.who = who
			if who.StaleCookie {
				http.SetCookie(w, a.o.Access.ClearCookie())
			}
			if rt.Token {
				tok := r.Header.Get(access.CSRFHeader)
				if tok == "" {
					tok = r.URL.Query().Get("csrf_token")
				}
				if !who.CheckCSRF(tok) {
					refuse(http.StatusForbidden, fmt.Errorf("missing or wrong %s header or csrf_token parameter (the csrf_token of login or /api/v1/me)", access.CSRFHeader))
					return
				}
			}
			if rt.Perm != "" && !who.Can(rt.Perm) {
				refuse(http.StatusForbidden, fmt.Errorf("permission %s required: %s (roles %s) does not have it",
					rt.Perm, who.User, strings.Join(who.Roles, ", ")))
				return
			}
		} else if !a.o.Access.CheckHost(r) {
			writeError(w, http.StatusForbidden, fmt.Errorf("host %q is not this endpoint's (add it to admin.hosts)", r.Host))
			return
		}
		if rt.Action != "" {
			if err := a.auditErr(req, rt.Action, target, "attempt", nil); err != nil {
				a.log.Error("admin API: audit log", "action", rt.Action, "target", target, "error", err)
				writeError(w, http.StatusServiceUnavailable, fmt.Errorf("%s not taken: %w", rt.Action, err))
				return
			}
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

// decode reads r's JSON body into v; an empty body leaves v as it is. A
// body must be Content-Type application/json (415: a cross-site form
// cannot send that without a CORS preflight, which this API never
// grants) and one JSON value with nothing after it (400).
func decode(r *request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		return errorf(http.StatusUnsupportedMediaType, "request body: Content-Type %q: want application/json", ct)
	}
	if err != nil {
		return errorf(http.StatusBadRequest, "request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "request body: data after the JSON object")
	}
	return nil
}

// isJSON reports whether a Content-Type header is application/json (with
// parameters, such as charset, or not).
func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// audit writes the result line of an action for r's principal, with
// r.details; a failure of the log is logged (the action was taken: its
// attempt line is written). An action taken is also logged at info,
// naming who took it (the broker's own lines, such as "extension
// disabled", cannot know).
func (a *API) audit(r *request, action, target string, err error) {
	if werr := a.auditErr(r, action, target, "ok", err); werr != nil {
		a.log.Error("admin API: audit log", "action", action, "target", target, "error", werr)
	}
	if err == nil && r.who != nil {
		attrs := []any{"action", action, "target", target, "user", r.who.User, "auth", r.who.Auth, "remote", access.RemoteIP(r.Request)}
		for _, k := range slices.Sorted(maps.Keys(r.details)) {
			attrs = append(attrs, k, r.details[k])
		}
		a.log.Info("admin API: "+action, attrs...)
	}
}

// auditErr writes one audit line for r's principal with result (or
// "error", or "denied" for a refusal, when err is not nil) and returns
// the log's error. Denied lines are throttled.
func (a *API) auditErr(r *request, action, target, result string, err error) error {
	e := access.Entry{Remote: access.RemoteIP(r.Request), Action: action, Target: target, Result: result}
	if result != "attempt" {
		e.Details = r.details
	}
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
	return a.auditEntry(e)
}

// auditEntry writes e; a "denied" line goes through the refusal
// throttle, and the first one let through after others were left out
// says how many.
func (a *API) auditEntry(e access.Entry) error {
	if e.Result == "denied" {
		ok, dropped := a.refusals.Allow()
		if !ok {
			return nil
		}
		if dropped > 0 {
			e.Error += fmt.Sprintf(" (and %d refused requests before this one, not audited: too many)", dropped)
		}
	}
	return a.o.Access.Audit().Write(e)
}

// timeOrNil returns t for JSON, or nil when zero.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
