package admin

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
)

// Queries is what the API asks of the broker to list sessions,
// subscribers and retained messages and to describe it; *broker.Server
// implements it.
type Queries interface {
	ListClients(q broker.ClientQuery) (broker.ClientPage, error)
	Subscribers(filter string) ([]broker.Subscriber, error)
	ListRetained(filter, after string, limit int) (msgs []broker.Message, next string, total int, err error)
	Info() broker.BrokerInfo
}

var _ Queries = (*broker.Server)(nil)

// ClientSummary is one client of GET /api/v1/clients.
type ClientSummary struct {
	ClientID        string     `json:"client_id"`
	Username        string     `json:"username"`
	Connected       bool       `json:"connected"`
	Listener        string     `json:"listener"`
	RemoteAddress   string     `json:"remote_address"`
	ProtocolVersion byte       `json:"protocol_version"`
	ConnectedSince  *time.Time `json:"connected_since"`
	OfflineSince    *time.Time `json:"offline_since"`
}

// limitParam reads the limit query parameter: 0 when absent (the
// broker's default), 400 when not a number.
func limitParam(r *request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, errorf(http.StatusBadRequest, "limit: %q is not a number from 1 to 1000", s)
	}
	return n, nil
}

// clients: GET /api/v1/clients?prefix=&username=&listener=&state=&after=&limit=.
func (a *API) clients(_ http.ResponseWriter, r *request) (int, any, error) {
	q := r.URL.Query()
	cq := broker.ClientQuery{Prefix: q.Get("prefix"), Username: q.Get("username"), Listener: q.Get("listener"), After: q.Get("after")}
	switch st := q.Get("state"); st {
	case "", "all":
		cq.State = broker.ClientsAll
	case "connected":
		cq.State = broker.ClientsConnected
	case "offline":
		cq.State = broker.ClientsOffline
	default:
		return 0, nil, errorf(http.StatusBadRequest, "state: unknown value %q (allowed: all, connected, offline)", st)
	}
	n, err := limitParam(r)
	if err != nil {
		return 0, nil, err
	}
	cq.Limit = n
	page, err := a.o.Queries.ListClients(cq)
	if err != nil {
		return 0, nil, serviceError(err, "client list")
	}
	list := make([]ClientSummary, len(page.Clients))
	for i, c := range page.Clients {
		list[i] = ClientSummary{ClientID: c.ClientID, Username: c.Username, Connected: c.Connected, Listener: c.Listener,
			RemoteAddress: c.RemoteAddr, ProtocolVersion: c.ProtocolVersion, ConnectedSince: timeOrNil(c.ConnectedSince),
			OfflineSince: timeOrNil(c.OfflineSince)}
	}
	return http.StatusOK, ClientList{Clients: list, Next: page.Next, Total: page.Total}, nil
}

// ClientList is GET /api/v1/clients: one page of clients sorted by id;
// Next is the after= of the next page ("" on the last one); Total counts
// every client the query matches.
type ClientList struct {
	Clients []ClientSummary `json:"clients"`
	Next    string          `json:"next"`
	Total   int             `json:"total"`
}

// subscribers: GET /api/v1/subscriptions?filter=F.
func (a *API) subscribers(_ http.ResponseWriter, r *request) (int, any, error) {
	filter, err := filterParam(r, "", true)
	if err != nil {
		return 0, nil, err
	}
	subs, err := a.o.Queries.Subscribers(filter)
	if err != nil {
		return 0, nil, serviceError(err, fmt.Sprintf("filter %q", filter))
	}
	list := make([]Subscription, len(subs))
	for i, s := range subs {
		list[i] = subscriptionOf(s.Subscription)
		list[i].ClientID, list[i].Filter = s.ClientID, ""
	}
	return http.StatusOK, map[string]any{"filter": filter, "subscribers": list}, nil
}

// retainedSummary is one message of GET /api/v1/retained.
type retainedSummary struct {
	Topic         string `json:"topic"`
	QoS           byte   `json:"qos"`
	PayloadSize   int    `json:"payload_size"`
	ContentType   string `json:"content_type"`
	PayloadFormat byte   `json:"payload_format"`
}

// retained: GET /api/v1/retained?filter=&after=&limit=.
func (a *API) retained(_ http.ResponseWriter, r *request) (int, any, error) {
	q := r.URL.Query()
	filter, err := filterParam(r, "#", false)
	if err != nil {
		return 0, nil, err
	}
	n, err := limitParam(r)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 {
		n = 100
	}
	msgs, next, total, err := a.o.Queries.ListRetained(filter, q.Get("after"), n)
	if err != nil {
		return 0, nil, serviceError(err, fmt.Sprintf("filter %q", filter))
	}
	list := make([]retainedSummary, len(msgs))
	for i, m := range msgs {
		list[i] = retainedSummary{Topic: m.Topic, QoS: m.QoS, PayloadSize: len(m.Payload), ContentType: m.ContentType, PayloadFormat: m.PayloadFormat}
	}
	return http.StatusOK, map[string]any{"messages": list, "next": next, "total": total}, nil
}
