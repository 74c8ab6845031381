package admin

import "net/http"

// ErrNoCluster is the message of GET /api/v1/cluster's 404 on a broker
// without a cluster section.
const ErrNoCluster = "this node runs without a cluster section"

// cluster: GET /api/v1/cluster, the cluster node's status (package
// cluster's Status), or 404 when the broker runs alone.
func (a *API) cluster(_ http.ResponseWriter, _ *request) (int, any, error) {
	if a.o.ClusterStatus == nil {
		return 0, nil, errorf(http.StatusNotFound, "%s", ErrNoCluster)
	}
	return http.StatusOK, a.o.ClusterStatus(), nil
}
