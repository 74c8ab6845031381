package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/host"
)

// ErrNoCluster is the message of the cluster routes' 404 on a broker
// without a cluster section.
const ErrNoCluster = "this node runs without a cluster section"

// ClusterExtensionFunc enables (disable false) or disables extension id
// on every alive node of the cluster, each in its own extensions folder,
// at the request of the admin API's user by. It returns the answer (one
// result per node, written as JSON as it is) and the names of the nodes
// where it failed (no answer, or the node's own error); its error means
// the request could not be sent at all. cmd/propolis passes package
// cluster's Node.SetExtension.
type ClusterExtensionFunc func(ctx context.Context, id string, disable bool, by string) (result any, failed []string, err error)

// ReplicatedSession is a session's replicated record as the cluster
// keeps it (package cluster's SessionView).
type ReplicatedSession struct {
	// Node is the node that claimed or released the session last;
	// Online is true while its client is connected there.
	Node   string
	Online bool
	// DisconnectedAt is when the client went offline (zero while
	// online); ExpiresAt when the offline session is removed (zero when
	// online or never); Expiry the session expiry interval, seconds.
	DisconnectedAt time.Time
	ExpiresAt      time.Time
	Expiry         uint32
	// State is the session and its subscriptions as last written; nil
	// for a session not released or changed since its node created it.
	State *broker.SessionState
}

// ClusterSessionFunc reads the replicated record of client id: nil and no
// error when there is none. cmd/propolis passes package cluster's
// Node.ReplicatedSession, converted.
type ClusterSessionFunc func(ctx context.Context, id string) (*ReplicatedSession, error)

// The cluster_state of a ClientDetail read from the cluster's bucket.
const (
	// HeldByCluster is an offline session of the cluster: in its
	// bucket, on no node.
	HeldByCluster = "offline, held by the cluster"
	// OnlineElsewhere starts the state of a session whose client is
	// connected to another node: "online on node n2".
	OnlineElsewhere = "online on node "
)

// replicatedDetail is GET /api/v1/clients/{id} of a session read from the
// cluster's bucket (rs, of client id).
func replicatedDetail(id string, rs *ReplicatedSession) ClientDetail {
	d := ClientDetail{ClientID: id, SessionExpiry: rs.Expiry, Subscriptions: []Subscription{}, SessionAttributes: []Attribute{},
		ClusterState: HeldByCluster, LastNode: rs.Node}
	if rs.Online {
		d.ClusterState = OnlineElsewhere + rs.Node
	} else {
		d.OfflineSince, d.ExpiresAt = timeOrNil(rs.DisconnectedAt), timeOrNil(rs.ExpiresAt)
	}
	if st := rs.State; st != nil {
		d.Username, d.ProtocolVersion = string(st.Session.Username), st.Session.ProtocolVersion
		d.Listener, d.RemoteAddress = st.Session.Listener, st.Session.Remote
		d.ReceiveMaximum = st.Session.ReceiveMaximum
		for _, s := range st.Subscriptions {
			d.Subscriptions = append(d.Subscriptions, Subscription{Filter: s.Filter, QoS: s.QoS, NoLocal: s.NoLocal,
				RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, Identifier: s.Identifier})
		}
	}
	return d
}

// cluster: GET /api/v1/cluster, the cluster node's status (package
// cluster's Status), or 404 when the broker runs alone.
func (a *API) cluster(_ http.ResponseWriter, _ *request) (int, any, error) {
	if a.o.ClusterStatus == nil {
		return 0, nil, errorf(http.StatusNotFound, "%s", ErrNoCluster)
	}
	return http.StatusOK, a.o.ClusterStatus(), nil
}

// clusterEnable: POST /api/v1/cluster/extensions/{id}/enable.
func (a *API) clusterEnable(_ http.ResponseWriter, r *request) (int, any, error) {
	return a.setClusterDisabled(r, false)
}

// clusterDisable: POST /api/v1/cluster/extensions/{id}/disable.
func (a *API) clusterDisable(_ http.ResponseWriter, r *request) (int, any, error) {
	return a.setClusterDisabled(r, true)
}

// setClusterDisabled asks every alive node of the cluster to enable or
// disable the extension, as the local routes do on this node's folder
// (each node runs host.Enable or host.Disable on its own), and answers
// one result per node: 200 even when some node failed ("ok": false,
// the audit line names them), 404 without a cluster section, 400 for an
// id no extension can have.
func (a *API) setClusterDisabled(r *request, disable bool) (int, any, error) {
	id := r.PathValue("id")
	action := "extension.enable"
	if disable {
		action = "extension.disable"
	}
	r.details = map[string]any{"scope": "cluster"}
	var err error
	switch {
	case a.o.ClusterExtension == nil:
		err = errorf(http.StatusNotFound, "%s", ErrNoCluster)
	default:
		if err = host.CheckID(id); err != nil {
			err = errorf(http.StatusBadRequest, "%v", err)
		}
	}
	if err != nil {
		a.audit(r, action, id, err)
		return 0, nil, err
	}
	res, failed, err := a.o.ClusterExtension(r.Context(), id, disable, r.who.User)
	if err != nil {
		err = errorf(http.StatusServiceUnavailable, "cluster: %v", err)
		a.audit(r, action, id, err)
		return 0, nil, err
	}
	if len(failed) > 0 {
		r.details["failed_nodes"] = failed
		noun := "node"
		if len(failed) > 1 {
			noun = "nodes"
		}
		err = fmt.Errorf("not carried out on %s %s", noun, strings.Join(failed, ", "))
	}
	a.audit(r, action, id, err)
	return http.StatusOK, res, nil
}
