package admin

import (
	"net/http"

	"github.com/propolis-mqtt/propolis/admin/access"
)

// routes is every route of the API, with its permission: the one table
// Mount registers and TestOpenAPI compares with openapi.yaml.
func (a *API) routes() []route {
	p := Prefix
	return []route{
		{Method: http.MethodPost, Path: p + "/login", Public: true, h: a.login},
		{Method: http.MethodPost, Path: p + "/logout", Action: "logout", h: a.logout},
		{Method: http.MethodGet, Path: p + "/me", h: a.me},

		{Method: http.MethodGet, Path: p + "/clients", Perm: access.ClientsView, h: a.clients},
		{Method: http.MethodGet, Path: p + "/clients/{id}", Perm: access.ClientsView, h: a.client},
		{Method: http.MethodPost, Path: p + "/clients/{id}/disconnect", Perm: access.ClientsDisconnect, Action: "client.disconnect", h: a.disconnect},
		{Method: http.MethodPost, Path: p + "/clients/{id}/invalidate", Perm: access.SessionsInvalidate, Action: "session.invalidate", h: a.invalidate},

		{Method: http.MethodGet, Path: p + "/subscriptions", Perm: access.ClientsView, h: a.subscribers},

		{Method: http.MethodGet, Path: p + "/retained", Perm: access.RetainedView, h: a.retained},
		{Method: http.MethodGet, Path: p + "/retained/message", Perm: access.RetainedView, h: a.retainedMessage},
		{Method: http.MethodDelete, Path: p + "/retained/message", Perm: access.RetainedDelete, Action: "retained.delete", h: a.deleteRetained},

		{Method: http.MethodGet, Path: p + "/extensions", Perm: access.ExtensionsView, h: a.extensions},
		{Method: http.MethodPost, Path: p + "/extensions/{id}/enable", Perm: access.ExtensionsManage, Action: "extension.enable", h: a.enable},
		{Method: http.MethodPost, Path: p + "/extensions/{id}/disable", Perm: access.ExtensionsManage, Action: "extension.disable", h: a.disable},

		{Method: http.MethodGet, Path: p + "/broker", Perm: access.BrokerView, h: a.brokerInfo},
		{Method: http.MethodGet, Path: p + "/broker/config", Perm: access.ConfigView, h: a.brokerConfig},
		{Method: http.MethodGet, Path: p + "/cluster", Perm: access.BrokerView, h: a.cluster},
		{Method: http.MethodPost, Path: p + "/cluster/extensions/{id}/enable", Perm: access.ExtensionsManage, Action: "extension.enable", h: a.clusterEnable},
		{Method: http.MethodPost, Path: p + "/cluster/extensions/{id}/disable", Perm: access.ExtensionsManage, Action: "extension.disable", h: a.clusterDisable},

		{Method: http.MethodGet, Path: p + "/traces", Perm: access.TraceManage, h: a.traces},
		{Method: http.MethodPost, Path: p + "/traces", Perm: access.TraceManage, Action: "trace.start", h: a.startTrace},
		{Method: http.MethodPost, Path: p + "/traces/{id}/stop", Perm: access.TraceManage, Action: "trace.stop", h: a.stopTrace},
		{Method: http.MethodDelete, Path: p + "/traces/{id}", Perm: access.TraceManage, Action: "trace.delete", h: a.deleteTrace},
		{Method: http.MethodGet, Path: p + "/traces/download", Perm: access.TraceManage, Action: "trace.download", Token: true, h: a.downloadTraces},
		{Method: http.MethodGet, Path: p + "/traces/{id}/download", Perm: access.TraceManage, Action: "trace.download", Token: true, h: a.downloadTrace},
	}
}

// Route describes one route of the API.
type Route struct {
	// Method and Path, as in "GET /api/v1/clients/{id}".
	Method, Path string
	// Permission is what the route needs; "" for any authenticated user
	// (or, with Public, nobody).
	Permission access.Permission
	// Public: served without authentication (login).
	Public bool
}

// Routes lists every route Mount registers, in the table's order.
func (a *API) Routes() []Route {
	var out []Route
	for _, r := range a.routes() {
		out = append(out, Route{Method: r.Method, Path: r.Path, Permission: r.Perm, Public: r.Public})
	}
	return out
}
