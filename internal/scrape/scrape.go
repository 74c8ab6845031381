// Package scrape reads a Prometheus endpoint the way a scraper does, for
// tests: Get fetches /metrics over HTTP with a chosen Accept header, Text
// parses the Prometheus text format with the client library's parser
// (expfmt.TextParser), and OpenMetrics parses the OpenMetrics text
// format strictly (openmetrics.go), since the client library of our
// version has no parser for it. Value looks a sample up.
package scrape

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Accept headers a scraper sends.
const (
	// AcceptText asks for the Prometheus text format 0.0.4.
	AcceptText = "text/plain;version=0.0.4"
	// AcceptOpenMetrics asks for OpenMetrics 0.0.1.
	AcceptOpenMetrics = "application/openmetrics-text;version=0.0.1"
	// AcceptPrometheus is what Prometheus 2.x sends: OpenMetrics 1.0.0
	// first, then 0.0.1, then the text format.
	AcceptPrometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

// Get fetches url with the Accept header accept and returns the body and
// its Content-Type; a status other than 200 is an error with the body.
// It gives up after timeout.
func Get(url, accept string, timeout time.Duration) (body []byte, contentType string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, resp.Header.Get("Content-Type"), nil
}

// Text parses the Prometheus text format (expfmt.TextParser), by family
// name as the text format writes it (a counter's with its _total).
func Text(body []byte) (map[string]*dto.MetricFamily, error) {
	var p expfmt.TextParser
	return p.TextToMetricFamilies(bytes.NewReader(body))
}

// Value returns the value of the sample of family name whose labels
// include every pair of labels (name, value, name, value...): a counter's,
// gauge's or untyped value, or a histogram's or summary's sample count.
// ok is false when no sample matches.
func Value(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount()), true
		}
	}
	return 0, false
}
