package opshttp

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths of the endpoints Routes mounts.
const (
	// MetricsPath serves every metric of the Gatherer, in the Prometheus
	// text format or OpenMetrics, as the scraper's Accept header asks.
	MetricsPath = "/metrics"
	// HealthzPath answers 200 while the process serves HTTP at all
	// (liveness: restart the process when it stops answering).
	HealthzPath = "/healthz"
	// ReadyzPath answers 200 when Ready returns nil, else 503 with the
	// reasons (readiness: send no clients while it fails).
	ReadyzPath = "/readyz"
)

// Routes is what the operator's endpoints read.
type Routes struct {
	// Gatherer is the registry /metrics serves (package metrics builds
	// it). Required.
	Gatherer prometheus.Gatherer
	// Ready says whether the broker should get clients: nil, or an error
	// with one line per condition that fails. /readyz and the metric
	// propolis_ready ask the same function. Required.
	Ready func() error
	// Logger receives the errors of collectors during a scrape (at warn;
	// the scrape still serves every other metric); nil means
	// slog.Default().
	Logger *slog.Logger
}

// Mux returns a mux with /metrics, /healthz and /readyz mounted (GET and
// HEAD; another method gets 405, another path 404), to which a caller may
// add its own handlers.
func (r Routes) Mux() *http.ServeMux {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	// Scrapes are never refused (a 503 is a failed scrape, an alert):
	// those that arrive while a collection runs share its result
	// (coalescing), so however many come at once, one collection at a
	// time reads /proc and the broker's state.
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(&coalescing{g: r.Gatherer}, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// A collector that fails (a /proc file unreadable) costs its own
		// metrics, not the whole scrape.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET "+HealthzPath, func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET "+ReadyzPath, func(w http.ResponseWriter, _ *http.Request) {
		if err := r.Ready(); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready:\n"+err.Error()+"\n")
			return
		}
		plain(w, http.StatusOK, "ready\n")
	})
	return mux
}

// plain writes body as an uncached plain-text response with code.
func plain(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
