package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"

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
