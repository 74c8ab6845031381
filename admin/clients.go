package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// Subscription is one subscription, in a client's detail and in a
// filter's subscribers.
type Subscription struct {
	ClientID          string `json:"client_id,omitempty"`
	Filter            string `json:"filter,omitempty"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local"`
	RetainAsPublished bool   `json:"retain_as_published"`
	RetainHandling    byte   `json:"retain_handling"`
	Identifier        int    `json:"identifier"`
}

// subscriptionOf converts s.
func subscriptionOf(s broker.SubscriptionInfo) Subscription {
	return Subscription{Filter: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal, RetainAsPublished: s.RetainAsPublished,
		RetainHandling: s.RetainHandling, Identifier: s.Identifier}
}

// Attribute is one session attribute: Value when it is UTF-8, else
// ValueBase64.
type Attribute struct {
	Key         string `json:"key"`
	Value       string `json:"value,omitempty"`
	ValueBase64 []byte `json:"value_base64,omitempty"`
}

// ClientDetail is GET /api/v1/clients/{id}.
type ClientDetail struct {
	ClientID        string     `json:"client_id"`
	Username        string     `json:"username"`
	Connected       bool       `json:"connected"`
	ProtocolVersion byte       `json:"protocol_version"`
	RemoteAddress   string     `json:"remote_address"`
	Listener        string     `json:"listener"`
	ConnectedSince  *time.Time `json:"connected_since"`
	OfflineSince    *time.Time `json:"offline_since"`
	// KeepAlive is null for a session restored at start-up until its
	// client reconnects (broker.ClientInfo.Restored): unknown, not 0.
	KeepAlive         *uint16        `json:"keepalive"`
	SessionExpiry     uint32         `json:"session_expiry"`
	ExpiresAt         *time.Time     `json:"expires_at"`
	ReceiveMaximum    uint16         `json:"receive_maximum"`
	InflightWindow    uint16         `json:"inflight_window"`
	Queued            int            `json:"queued"`
	MaxQueued         int            `json:"max_queued"`
	QueueFullPolicy   string         `json:"queue_full_policy"`
	AuthenticatedBy   string         `json:"authenticated_by"`
	Subscriptions     []Subscription `json:"subscriptions"`
	SessionAttributes []Attribute    `json:"session_attributes"`
	// ClusterState is "" for a session of this node's broker; for one
	// read from the cluster's bucket (no session of the id here),
	// HeldByCluster or "online on node n2" (OnlineElsewhere). LastNode
	// is then the node that claimed or released it last.
	ClusterState string `json:"cluster_state"`
	LastNode     string `json:"last_node"`
}

// clientNotFound is the 404 of a client id without a session.
func clientNotFound(id string) error {
	return errorf(http.StatusNotFound, "client %q: no session", id)
}

// client: GET /api/v1/clients/{id}.
func (a *API) client(_ http.ResponseWriter, r *request) (int, any, error) {
	id := r.PathValue("id")
	ci, ok := a.o.Broker.Client(id)
	if !ok {
		return a.replicatedClient(r, id)
	}
	d := detailOf(ci)
	subs, err := a.o.Broker.Subscriptions(id)
	if errors.Is(err, broker.ErrNoSession) {
		return 0, nil, clientNotFound(id)
	}
	if err != nil {
		return 0, nil, err
	}
	for _, s := range subs {
		d.Subscriptions = append(d.Subscriptions, subscriptionOf(s))
	}
	attrs, err := a.o.Broker.Attributes(id)
	if errors.Is(err, broker.ErrNoSession) {
		return 0, nil, clientNotFound(id)
	}
	if err != nil {
		return 0, nil, err
	}
	for _, at := range attrs {
		if utf8.Valid(at.Value) {
			d.SessionAttributes = append(d.SessionAttributes, Attribute{Key: at.Key, Value: string(at.Value)})
		} else {
			d.SessionAttributes = append(d.SessionAttributes, Attribute{Key: at.Key, ValueBase64: at.Value})
		}
	}
	return http.StatusOK, d, nil
}

// replicatedClient answers GET /api/v1/clients/{id} for a client id
// without a session in this node's broker: its replicated record on a
// cluster node, else 404. A record that cannot be read is a 503 naming
// the bucket.
func (a *API) replicatedClient(r *request, id string) (int, any, error) {
	if a.o.ClusterSession == nil {
		return 0, nil, clientNotFound(id)
	}
	rs, err := a.o.ClusterSession(r.Context(), id)
	if err != nil {
		return 0, nil, errorf(http.StatusServiceUnavailable, "client %q: no session on this node, and the cluster's record not read: %v", id, err)
	}
	if rs == nil {
		return 0, nil, clientNotFound(id)
	}
	return http.StatusOK, replicatedDetail(id, rs), nil
}

// detailOf converts the fields of ci, without subscriptions and
// attributes (empty lists).
func detailOf(ci broker.ClientInfo) ClientDetail {
	d := ClientDetail{ClientID: ci.ClientID, Username: ci.Username, Connected: ci.Connected, ProtocolVersion: ci.ProtocolVersion,
		RemoteAddress: ci.RemoteAddr, Listener: ci.Listener, ConnectedSince: timeOrNil(ci.ConnectedSince),
		OfflineSince: timeOrNil(ci.OfflineSince), QueueFullPolicy: ci.QueueFullPolicy,
		AuthenticatedBy: ci.AuthenticatedBy,
		SessionExpiry:   ci.SessionExpiry, ExpiresAt: timeOrNil(ci.ExpiresAt), ReceiveMaximum: ci.ReceiveMaximum,
		InflightWindow: ci.InflightWindow, Queued: ci.Queued, MaxQueued: ci.MaxQueued,
		Subscriptions: []Subscription{}, SessionAttributes: []Attribute{}}
	if !ci.Restored {
		d.KeepAlive = &ci.KeepAlive
	}
	return d
}

// serviceError maps the broker's errors to status codes. The answer
// names what (`client "c1"`, `filter "a/#/b"`) and the reason only, not
// the broker's call and sentinel (`list retained "a/#/b": invalid
// argument: ...`).
func serviceError(err error, what string) error {
	reason := func() error {
		msg := err.Error()
		for _, s := range []error{broker.ErrInvalidArgument, broker.ErrNoSession, broker.ErrNotConnected} {
			if _, after, ok := strings.Cut(msg, s.Error()+": "); ok {
				return errors.New(what + ": " + after)
			}
			if strings.HasSuffix(msg, s.Error()) {
				return errors.New(what + ": " + s.Error())
			}
		}
		return errors.New(what + ": " + msg)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, broker.ErrNoSession):
		return &httpError{code: http.StatusNotFound, err: reason()}
	case errors.Is(err, broker.ErrNotConnected):
		return &httpError{code: http.StatusConflict, err: reason()}
	case errors.Is(err, broker.ErrInvalidArgument):
		return &httpError{code: http.StatusBadRequest, err: reason()}
	}
	return err
}

// filterParam returns the filter query parameter, def when empty, or a
// 400 saying what is wrong with it: `filter "a/#/b": not a topic filter
// ("#" must be the last level)`. shared allows $share/GROUP/FILTER.
func filterParam(r *request, def string, shared bool) (string, error) {
	f := r.URL.Query().Get("filter")
	if f == "" {
		if def == "" {
			return "", errorf(http.StatusBadRequest, "filter: required (a topic filter)")
		}
		return def, nil
	}
	inner := f
	if _, in, ok := topic.SplitShared(f); ok {
		if !shared {
			return "", errorf(http.StatusBadRequest, "filter %q: a shared subscription ($share/...) receives no retained messages; give its topic filter", f)
		}
		inner = in
	}
	if err := topic.CheckFilter(inner); err != nil {
		return "", errorf(http.StatusBadRequest, "filter %q: not a topic filter (%v)", f, err)
	}
	return f, nil
}

// disconnectCode is the default reason code of a disconnect: 0x98,
// administrative action.
const disconnectCode = 0x98

// disconnect: POST /api/v1/clients/{id}/disconnect
// {"prevent_will", "reason_code", "reason"}.
func (a *API) disconnect(_ http.ResponseWriter, r *request) (int, any, error) {
	id := r.PathValue("id")
	body := struct {
		PreventWill bool   `json:"prevent_will"`
		ReasonCode  *int   `json:"reason_code"`
		Reason      string `json:"reason"`
	}{}
	if err := decode(r, &body); err != nil {
		a.audit(r, "client.disconnect", id, err)
		return 0, nil, err
	}
	code := disconnectCode
	if body.ReasonCode != nil {
		code = *body.ReasonCode
	}
	r.details = map[string]any{"prevent_will": body.PreventWill, "reason_code": code, "reason": body.Reason}
	var err error
	if code < 0 || code > 255 {
		err = errorf(http.StatusBadRequest, "reason_code: %d is not a byte", code)
	} else {
		err = a.o.Broker.Disconnect(id, byte(code), body.Reason, body.PreventWill)
		what := fmt.Sprintf("client %q", id)
		if errors.Is(err, broker.ErrInvalidArgument) {
			what = "request body" // the reason code or the reason
		}
		err = serviceError(err, what)
	}
	a.audit(r, "client.disconnect", id, err)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// invalidate: POST /api/v1/clients/{id}/invalidate.
func (a *API) invalidate(_ http.ResponseWriter, r *request) (int, any, error) {
	id := r.PathValue("id")
	err := serviceError(a.o.Broker.InvalidateSession(id), fmt.Sprintf("client %q", id))
	a.audit(r, "session.invalidate", id, err)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}
