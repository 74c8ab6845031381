package admin

import (
	"net/http"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/host"
)

// The warnings of GET /api/v1/broker, which the control center shows in a
// red banner.
const (
	WarnNoSecurity = "no security extension loaded: every CONNECT is refused"
	WarnAllowAll   = "allow-all is loaded: every client is accepted"
	WarnLocalMode  = "the admin API runs in local mode: anyone on this machine can use it, with every permission (configure admin.users)"
)

// listener is one listener of GET /api/v1/broker.
type listener struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Address string `json:"address"`
}

// summary is the counters of GET /api/v1/broker.
type summary struct {
	Connections      int64  `json:"connections"`
	Sessions         int64  `json:"sessions"`
	SessionsOffline  int64  `json:"sessions_offline"`
	Subscriptions    int64  `json:"subscriptions"`
	Retained         int64  `json:"retained"`
	Queued           int64  `json:"queued"`
	MessagesReceived uint64 `json:"messages_received"`
	MessagesSent     uint64 `json:"messages_sent"`
	MessagesDropped  uint64 `json:"messages_dropped"`
	BytesReceived    uint64 `json:"bytes_received"`
	BytesSent        uint64 `json:"bytes_sent"`
	ConnectsAccepted uint64 `json:"connects_accepted"`
	ConnectsRefused  uint64 `json:"connects_refused"`
}

// brokerInfo: GET /api/v1/broker.
func (a *API) brokerInfo(_ http.ResponseWriter, _ *request) (int, any, error) {
	info := a.o.Queries.Info()
	lv, c := a.o.Broker.Levels(), a.o.Broker.Counters()
	s := summary{Connections: lv.ClientsConnected, Sessions: lv.SessionsOnline + lv.SessionsOffline, SessionsOffline: lv.SessionsOffline,
		Subscriptions: lv.Subscriptions, Retained: lv.RetainedMessages, Queued: lv.QueuedMessages, ConnectsAccepted: c.ConnectsAccepted}
	for q := range c.Received {
		s.MessagesReceived += c.Received[q].Messages
		s.BytesReceived += c.Received[q].Bytes
		s.MessagesSent += c.Sent[q].Messages
		s.BytesSent += c.Sent[q].Bytes
	}
	d := c.Dropped
	s.MessagesDropped = d.QueueFull + d.WritesPending + d.Expired + d.TooLarge + d.NotAuthorized + d.Prevented
	for _, n := range c.ConnectsRefused {
		s.ConnectsRefused += n
	}
	listeners := make([]listener, len(info.Listeners))
	for i, l := range info.Listeners {
		listeners[i] = listener{Name: l.Name, Type: l.Type, Address: l.Address}
	}
	sec := a.o.Host.SecurityExtensions()
	if sec == nil {
		sec = []string{}
	}
	warnings := []string{}
	if len(sec) == 0 {
		warnings = append(warnings, WarnNoSecurity)
	}
	for _, st := range a.o.Host.Status() {
		if st.ID == "allow-all" && st.State == host.StateRunning {
			warnings = append(warnings, WarnAllowAll)
		}
	}
	if a.o.Access.Policy().Local() {
		warnings = append(warnings, WarnLocalMode)
	}
	mismatch := []string{}
	if a.o.ClusterMismatch != nil {
		mismatch = append(mismatch, a.o.ClusterMismatch()...)
	}
	return http.StatusOK, map[string]any{"cluster_mismatch": mismatch, "node": a.o.ClusterNode,
		"version": a.o.Version, "abi": abi.Version, "started_at": info.StartedAt.UTC(),
		"uptime_seconds": time.Since(info.StartedAt).Seconds(), "listeners": listeners,
		"stress_level": a.o.Broker.Overload().Level, "security_extensions": sec, "warnings": warnings, "summary": s,
	}, nil
}
