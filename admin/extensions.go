package admin

import (
	"net/http"
	"os"
	"path/filepath"

	"github.com/propolis-mqtt/propolis/host"
)

// extension is one extension of GET /api/v1/extensions.
type extension struct {
	ID            string   `json:"id"`
	Version       string   `json:"version"`
	State         string   `json:"state"`
	Priority      int      `json:"priority"`
	StartPriority int      `json:"start_priority"`
	Callbacks     []string `json:"callbacks"`
	Services      []string `json:"services"`
	Reason        string   `json:"reason"`
	// Disabled: the folder holds a DISABLED file (the host stops or skips
	// the extension within two seconds of its creation).
	Disabled bool `json:"disabled"`
	// Counters are the host's counts for the extension (host.Status).
	Counters extensionCounters `json:"counters"`
}

// extensionCounters are one extension's counts. Those of the running
// version start at 0 with each version; the folder's outlive reloads.
// The metrics' counters do not reset with a version (they are the
// folder's, from the broker's start) and count start and stop calls too.
type extensionCounters struct {
	// Of the running version: calls into its callbacks other than start
	// and stop, and those that failed or could not be made (no instance;
	// not in Calls)
	// (trap, deadline, invalid answer: each failed closed), events
	// dropped, records too large for its buffer, its pool's instances,
	// answers given from its authentication and authorization caches (no
	// call made), ticks skipped.
	Calls              int64 `json:"calls"`
	Errors             int64 `json:"errors"`
	EventsDropped      int64 `json:"events_dropped"`
	RecordsTooLarge    int64 `json:"records_too_large"`
	Instances          int   `json:"instances"`
	AuthCacheHits      int64 `json:"auth_cache_hits"`
	AuthorizeCacheHits int64 `json:"authorize_cache_hits"`
	TicksSkipped       int64 `json:"ticks_skipped"`
	// Of the folder: calls that waited for an instance, crash-loop stops,
	// reloads.
	InstanceWaits  int64 `json:"instance_waits"`
	CrashLoopStops int64 `json:"crash_loop_stops"`
	Reloads        int64 `json:"reloads"`
}

// extensionOf converts s, reading whether dir/ID/DISABLED exists.
func (a *API) extensionOf(s host.Status) extension {
	e := extension{ID: s.ID, Version: s.Version, State: string(s.State), Priority: s.Priority, StartPriority: s.StartPriority,
		Callbacks: s.Callbacks, Services: s.Services, Reason: s.Reason,
		Counters: extensionCounters{Calls: s.Calls, Errors: s.Errors, EventsDropped: s.Dropped, RecordsTooLarge: s.TooLarge,
			Instances: s.Instances, AuthCacheHits: s.AuthCacheHits, AuthorizeCacheHits: s.AuthorizeCacheHits,
			TicksSkipped: s.TicksSkipped, InstanceWaits: s.InstanceWaits, CrashLoopStops: s.CrashLoopStops, Reloads: s.Reloads}}
	if e.Callbacks == nil {
		e.Callbacks = []string{}
	}
	if e.Services == nil {
		e.Services = []string{}
	}
	_, err := os.Stat(filepath.Join(a.o.ExtensionsDir, s.ID, host.DisabledFile))
	e.Disabled = err == nil
	return e
}

// extensions: GET /api/v1/extensions.
func (a *API) extensions(_ http.ResponseWriter, _ *request) (int, any, error) {
	list := []extension{}
	for _, s := range a.o.Host.Status() {
		list = append(list, a.extensionOf(s))
	}
	// cluster: the cluster routes enable and disable on every node.
	return http.StatusOK, map[string]any{"extensions": list, "cluster": a.o.ClusterExtension != nil}, nil
}

// enable: POST /api/v1/extensions/{id}/enable.
func (a *API) enable(_ http.ResponseWriter, r *request) (int, any, error) {
	return a.setDisabled(r, false)
}

// disable: POST /api/v1/extensions/{id}/disable.
func (a *API) disable(_ http.ResponseWriter, r *request) (int, any, error) {
	return a.setDisabled(r, true)
}

// setDisabled calls host.Disable or host.Enable on the folder, as
// `propolis extensions disable|enable` does, and answers the extension.
func (a *API) setDisabled(r *request, disable bool) (int, any, error) {
	id := r.PathValue("id")
	action, act := "extension.enable", host.Enable
	if disable {
		action, act = "extension.disable", host.Disable
	}
	_, err := act(a.o.ExtensionsDir, id)
	if err != nil {
		// No such extension folder (host.Enable and Disable check the id
		// and the manifest) is a 404; the folder's own trouble a 500.
		// The answer names the id, not the folder's path on the broker's
		// machine.
		if _, serr := os.Stat(filepath.Join(a.o.ExtensionsDir, id, host.ManifestFile)); serr != nil {
			err = errorf(http.StatusNotFound, "no extension %q in the extensions folder", id)
		}
	}
	a.audit(r, action, id, err)
	if err != nil {
		return 0, nil, err
	}
	for _, s := range a.o.Host.Status() {
		if s.ID == id {
			return http.StatusOK, a.extensionOf(s), nil
		}
	}
	// A folder the host has not looked at yet.
	return http.StatusOK, a.extensionOf(host.Status{ID: id}), nil
}
