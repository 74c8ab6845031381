package metrics

import (
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/propolis-mqtt/propolis/internal/scrape"
)

// The scrape helpers of every test of this package: a registry is read as
// Prometheus reads it, through promhttp in the text format, parsed with
// the client library's parser (expfmt).

// families serves reg's /metrics through promhttp, as the operator's
// listener does (a registry that fails to gather fails the test), and
// parses the answer. Every family must have help text.
func families(t testing.TB, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: status %d: %s", rec.Code, rec.Body)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for name, f := range fams {
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
	}
	return fams
}

// sample returns the value of the first sample of family name whose
// labels include want (nil: the first sample), as scrape.Value reads it.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	pairs := make([]string, 0, 2*len(want))
	for k, v := range want {
		pairs = append(pairs, k, v)
	}
	return scrape.Value(fams, name, pairs...)
}

// value is sample, failing the test when there is no such sample.
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := sample(fams, name, want)
	if !ok {
		t.Fatalf("no sample of %s with labels %v", name, want)
	}
	return v
}

// hasLabels reports whether m has each label of want with its value.
func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// snapshot is one parsed /metrics answer: each sample by its series
// ("name{label=value,...}", labels sorted), histograms by their _count and
// _sum.
type snapshot map[string]float64

// scraper returns a function that scrapes reg (families) and flattens the
// answer into a snapshot.
func scraper(t *testing.T, reg *prometheus.Registry) func() snapshot {
	return func() snapshot {
		t.Helper()
		out := snapshot{}
		for name, f := range families(t, reg) {
			for _, m := range f.Metric {
				switch f.GetType() {
				case dto.MetricType_COUNTER:
					out[series(name, m.Label)] = m.GetCounter().GetValue()
				case dto.MetricType_GAUGE:
					out[series(name, m.Label)] = m.GetGauge().GetValue()
				case dto.MetricType_HISTOGRAM:
					out[series(name+"_count", m.Label)] = float64(m.GetHistogram().GetSampleCount())
					out[series(name+"_sum", m.Label)] = m.GetHistogram().GetSampleSum()
				}
			}
		}
		return out
	}
}

// series names one sample: name{a="x",b="y"}, labels sorted.
func series(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}
