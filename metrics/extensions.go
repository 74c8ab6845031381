package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/host"
)

// This file is the extension metrics: the calls into extensions (a
// host.CallObserver, on the hot path) and what the host's Status says at
// scrape time (pools, waits, crash-loop stops, reloads, service calls,
// states).

// ExtensionHost is what the extension metrics read from the host at
// scrape time; *host.Host implements it.
type ExtensionHost interface {
	// Status lists every extension folder the host knows, with its
	// counters.
	Status() []host.Status
	// SecurityServing is how many security extensions serve CONNECTs
	// now, 0 when the chain refuses every CONNECT (the host's one
	// reading, also behind /readyz).
	SecurityServing() (n int, blocker string)
}

var _ ExtensionHost = (*host.Host)(nil)

// callBuckets are the upper bounds of the call duration histogram. A call
// into a Go guest takes about a microsecond; an authentication that asks
// an identity service over HTTP, milliseconds; a deadline overrun, the
// deadline (limits.call_deadline, 100 ms by default; up to seconds for
// authenticate_deadline).
var callBuckets = [...]time.Duration{
	time.Microsecond, 2500 * time.Nanosecond, 5 * time.Microsecond, 10 * time.Microsecond, 25 * time.Microsecond,
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// Extensions is the extension metrics. It is both the host's
// CallObserver (pass it as host.Options.Observer) and a
// prometheus.Collector (register it once the host exists: Watch).
//
// The host asks it for an observer per extension (ForExtension, once per
// load): a call is then an array index by callback, two atomic loads and
// one atomic add (three for a timed call); no lock, no lookup, no label
// resolution once an extension's callback has been seen (the first call
// of each allocates its counters, under a mutex). Calls through
// ObserveCall add a lookup in a copy-on-write map by id.
// Collect builds constant metrics from the counters; a scrape racing
// calls may see a histogram's count and sum a call apart.
//
// Series are bounded by the host's folders: at each scrape, the call
// series of an extension the host no longer lists (its folder removed)
// are dropped, as are those of an earlier folder of the same id (removed
// and added again: host.Status.Folder changed). A disabled or failed
// extension keeps its series, its folder still being there.
type Extensions struct {
	host atomic.Pointer[ExtensionHost]
	// byExt is the call counters by extension id; replaced whole
	// (copy-on-write) under mu when an extension or a callback is seen
	// first, or when extensions are dropped.
	byExt atomic.Pointer[map[string]*extCalls]
	mu    sync.Mutex

	calls, duration                                         *prometheus.Desc
	instances, waits, crashLoopStops, reloads, serviceCalls *prometheus.Desc
	states, security                                        *prometheus.Desc
	authCacheHits, authorizeCacheHits, eventsDropped        *prometheus.Desc
	bounds                                                  []float64 // callBuckets in seconds
}

// extCalls is one extension's call counters, a slot per callback (nil
// until its first call, set under Extensions.mu). It is the observer the
// host keeps for the extension (ForExtension), so that a call needs no
// lookup by id.
type extCalls struct {
	x  *Extensions
	id string
	// folder is the host's number of the extension's folder
	// (host.Status.Folder): a folder removed and added again gets new
	// counters, as the host's folder counters start afresh.
	folder uint64
	cbs    [abi.NumCallbacks]atomic.Pointer[cbCalls]
	// dropped is set when Collect dropped it (its folder was no longer
	// listed); a call still made through it puts it back (resurrect).
	dropped atomic.Bool
}

// cbCalls is the counters of one extension's callback, updated with
// atomic adds only.
type cbCalls struct {
	// buckets[i] counts the calls that took at most callBuckets[i] and
	// more than callBuckets[i-1]; the last slot counts the slower ones.
	buckets [len(callBuckets) + 1]atomic.Uint64
	sumNs   atomic.Int64
	// outcomes counts the calls by host.Outcome.
	outcomes [host.NumOutcomes]atomic.Uint64
}

var _ host.ExtensionObserver = (*Extensions)(nil)
var _ prometheus.Collector = (*Extensions)(nil)

// NewExtensions makes the extension metrics, with no host yet: give it to
// host.Options.Observer, then call Watch with the host.
func NewExtensions() *Extensions {
	x := &Extensions{
		calls: prometheus.NewDesc("propolis_extension_calls_total",
			"Calls into an extension's callback, by how they ended: allow, next, deny, disconnect (a deciding callback's answer), "+
				"ok (an event, tick, start or stop), deny also for a start callback that refused to start, "+
				"trap, deadline, invalid, unavailable (no instance), too_large (record refused), "+
				"rate_limited (answered, but a host service call was refused RATE_LIMITED; start and stop included).",
			[]string{"extension", "callback", "outcome"}, nil),
		duration: prometheus.NewDesc("propolis_extension_call_duration_seconds",
			"Duration of calls into an extension's callback, waiting for an instance included; "+
				"authorize_publish and intercept_publish_* are timed one call in 16, at random, the others every call.",
			[]string{"extension", "callback"}, nil),
		instances: prometheus.NewDesc("propolis_extension_instances",
			"Instances in the extension's pool now (limits.pool_size, more while grown).",
			[]string{"extension"}, nil),
		waits: prometheus.NewDesc("propolis_extension_instance_waits_total",
			"Calls that found no idle instance of the extension and waited for one.",
			[]string{"extension"}, nil),
		crashLoopStops: prometheus.NewDesc("propolis_extension_crash_loop_stops_total",
			"Times the extension was stopped after a crash loop (10 failures within 10 s).",
			[]string{"extension"}, nil),
		reloads: prometheus.NewDesc("propolis_extension_reloads_total",
			"Times a new version of the extension replaced the running one (hot reload).",
			[]string{"extension"}, nil),
		serviceCalls: prometheus.NewDesc("propolis_extension_service_calls_total",
			"Host service calls of the extension by service and status code (ABI.md section 6: OK, RATE_LIMITED, NOT_PERMITTED, ...).",
			[]string{"extension", "service", "status"}, nil),
		authCacheHits: prometheus.NewDesc("propolis_extension_auth_cache_hits_total",
			"CONNECTs answered from the extension's authentication cache: no call made, so not in propolis_extension_calls_total. "+
				"Kept per loaded version: a reload or a restart starts it from 0 (a counter reset).",
			[]string{"extension"}, nil),
		authorizeCacheHits: prometheus.NewDesc("propolis_extension_authorize_cache_hits_total",
			"PUBLISH and SUBSCRIBE authorizations answered from connections' kept answers (cache_result in an authorize callback): "+
				"no call made, so not in propolis_extension_calls_total. Kept per loaded version: a reload or a restart starts it from 0.",
			[]string{"extension"}, nil),
		eventsDropped: prometheus.NewDesc("propolis_extension_events_dropped_total",
			"Events not delivered to the extension (queue full, no instance, or record too large). "+
				"Kept per loaded version: a reload or a restart starts it from 0 (a counter reset).",
			[]string{"extension"}, nil),
		states: prometheus.NewDesc("propolis_extensions",
			"Extension folders by state (running, disabled, failed).",
			[]string{"state"}, nil),
		security: prometheus.NewDesc("propolis_security_extensions",
			"Security extensions serving CONNECTs (in the chain and not stopped after a crash loop); 0 when every CONNECT is refused: none, or the first one the chain asks was stopped after a crash loop.",
			nil, nil),
	}
	for _, b := range callBuckets {
		x.bounds = append(x.bounds, b.Seconds())
	}
	empty := map[string]*extCalls{}
	x.byExt.Store(&empty)
	return x
}

// Watch makes Collect read h's status at each scrape.
func (x *Extensions) Watch(h ExtensionHost) { x.host.Store(&h) }

// ObserveCall counts one call's outcome, and its duration when the host
// timed it. The host calls it on the calling goroutine (often a client's
// hot path) for an extension it did not get an observer for
// (ForExtension): a lookup by id, then as extCalls.ObserveCall.
func (x *Extensions) ObserveCall(c host.Call) {
	e := (*x.byExt.Load())[c.Extension]
	if e == nil || e.folder != c.Folder {
		e = x.entry(c.Extension, c.Folder)
	}
	e.ObserveCall(c)
}

// ForExtension returns the observer of extension id's calls: its
// counters for its folder. The host asks once per loaded extension.
func (x *Extensions) ForExtension(id string, folder uint64) host.CallObserver {
	return x.entry(id, folder)
}

// ObserveCall counts one call of e's extension: its outcome, and its
// duration when the host timed it.
func (e *extCalls) ObserveCall(c host.Call) {
	if c.Callback >= abi.NumCallbacks || c.Outcome >= host.NumOutcomes {
		return // a later host's callback or outcome: nothing to file it under
	}
	if e.dropped.Load() {
		e.x.resurrect(e)
	}
	cc := e.cbs[c.Callback].Load()
	if cc == nil {
		cc = e.x.slot(e, c.Callback)
	}
	cc.outcomes[c.Outcome].Add(1)
	if !c.Timed { // one in sixteen per-message calls is timed (host.Call)
		return
	}
	i := 0
	for i < len(callBuckets) && c.Took > callBuckets[i] {
		i++
	}
	cc.buckets[i].Add(1)
	cc.sumNs.Add(int64(c.Took))
}

// entry returns the counters of id's folder, creating them (and
// publishing a new map) on first use. Those of an earlier folder of the
// same id are replaced: that folder was removed.
func (x *Extensions) entry(id string, folder uint64) *extCalls {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := *x.byExt.Load()
	if e := old[id]; e != nil {
		if e.folder == folder {
			return e
		}
		e.dropped.Store(true)
	}
	e := &extCalls{x: x, id: id, folder: folder}
	m := maps.Clone(old)
	m[id] = e
	x.byExt.Store(&m)
	return e
}

// slot returns the counters of e's callback cb, creating them on first
// use.
func (x *Extensions) slot(e *extCalls, cb abi.Callback) *cbCalls {
	x.mu.Lock()
	defer x.mu.Unlock()
	if cc := e.cbs[cb].Load(); cc != nil {
		return cc // another goroutine made it meanwhile
	}
	cc := &cbCalls{}
	e.cbs[cb].Store(cc)
	return cc
}

// resurrect puts back counters Collect dropped that a call still uses:
// the extension's folder was not listed at a scrape but its extension
// still runs (a scrape between its load and its status), or a removed
// extension's call was late (the next scrape drops them again). A newer
// entry of the same id (a folder added again) wins; e's counts then stay
// out of the registry.
func (x *Extensions) resurrect(e *extCalls) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !e.dropped.Load() {
		return
	}
	e.dropped.Store(false)
	old := *x.byExt.Load()
	if old[e.id] != nil {
		return
	}
	m := maps.Clone(old)
	m[e.id] = e
	x.byExt.Store(&m)
}

// Describe sends the descriptions of every extension metric.
func (x *Extensions) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{x.calls, x.duration, x.instances, x.waits, x.crashLoopStops, x.reloads,
		x.serviceCalls, x.states, x.security, x.authCacheHits, x.authorizeCacheHits, x.eventsDropped} {
		ch <- d
	}
}

// Collect reads the host's status, drops the call series of extensions
// it no longer lists, and sends every metric.
func (x *Extensions) Collect(ch chan<- prometheus.Metric) {
	var sts []host.Status
	if hp := x.host.Load(); hp != nil {
		h := *hp
		sts = h.Status()
		x.prune(sts)
		n, _ := h.SecurityServing()
		x.collectStatus(ch, sts, n)
	}
	for id, e := range *x.byExt.Load() {
		for cb := range e.cbs {
			cc := e.cbs[cb].Load()
			if cc == nil {
				continue
			}
			name := abi.Callbacks[cb].Name
			for o := range cc.outcomes {
				if n := cc.outcomes[o].Load(); n > 0 {
					ch <- prometheus.MustNewConstMetric(x.calls, prometheus.CounterValue, float64(n), id, name, host.Outcome(o).String())
				}
			}
			// Cumulative buckets; the count is their total, read once,
			// so that count and buckets agree within a scrape.
			buckets := make(map[float64]uint64, len(x.bounds))
			var total uint64
			for i := range cc.buckets {
				total += cc.buckets[i].Load()
				if i < len(x.bounds) {
					buckets[x.bounds[i]] = total
				}
			}
			ch <- prometheus.MustNewConstHistogram(x.duration, total, time.Duration(cc.sumNs.Load()).Seconds(), buckets, id, name)
		}
	}
}

// prune drops the call series of the extensions sts does not list, and
// of the folders it lists under a new number (removed and added again
// since the last scrape: the host's folder counters start afresh).
func (x *Extensions) prune(sts []host.Status) {
	listed := make(map[string]uint64, len(sts))
	for _, st := range sts {
		listed[st.ID] = st.Folder
	}
	gone := func(e *extCalls) bool {
		folder, ok := listed[e.id]
		return !ok || folder != e.folder
	}
	cur := *x.byExt.Load()
	stale := false
	for _, e := range cur {
		stale = stale || gone(e)
	}
	if !stale {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	m := maps.Clone(*x.byExt.Load())
	maps.DeleteFunc(m, func(_ string, e *extCalls) bool {
		if !gone(e) {
			return false
		}
		e.dropped.Store(true)
		return true
	})
	x.byExt.Store(&m)
}

// collectStatus sends the metrics read from the host's status.
func (x *Extensions) collectStatus(ch chan<- prometheus.Metric, sts []host.Status, security int) {
	states := map[host.State]int{host.StateRunning: 0, host.StateDisabled: 0, host.StateFailed: 0}
	for _, st := range sts {
		states[st.State]++
		ch <- prometheus.MustNewConstMetric(x.instances, prometheus.GaugeValue, float64(st.Instances), st.ID)
		ch <- prometheus.MustNewConstMetric(x.waits, prometheus.CounterValue, float64(st.InstanceWaits), st.ID)
		ch <- prometheus.MustNewConstMetric(x.crashLoopStops, prometheus.CounterValue, float64(st.CrashLoopStops), st.ID)
		ch <- prometheus.MustNewConstMetric(x.reloads, prometheus.CounterValue, float64(st.Reloads), st.ID)
		ch <- prometheus.MustNewConstMetric(x.authCacheHits, prometheus.CounterValue, float64(st.AuthCacheHits), st.ID)
		ch <- prometheus.MustNewConstMetric(x.authorizeCacheHits, prometheus.CounterValue, float64(st.AuthorizeCacheHits), st.ID)
		ch <- prometheus.MustNewConstMetric(x.eventsDropped, prometheus.CounterValue, float64(st.Dropped), st.ID)
		for _, sc := range st.ServiceCalls {
			ch <- prometheus.MustNewConstMetric(x.serviceCalls, prometheus.CounterValue, float64(sc.Calls), st.ID, sc.Service, sc.Status)
		}
	}
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(x.states, prometheus.GaugeValue, float64(n), string(state))
	}
	ch <- prometheus.MustNewConstMetric(x.security, prometheus.GaugeValue, float64(security))
}
