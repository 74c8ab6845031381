package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
	"github.com/propolis-mqtt/propolis/internal/scrape"
	"github.com/propolis-mqtt/propolis/opshttp"
)

// dashboardFile is the Grafana dashboard that ships.
const dashboardFile = "../../deploy/grafana/propolis.json"

// Pieces of PromQL that name no metric, removed before the metric names
// are read: Grafana variables, string literals, label matchers, range
// and subquery brackets, and the label lists of grouping clauses.
var (
	promVars     = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	// promTokens are numbers and durations (skipped), and identifiers with
	// an opening parenthesis after them when they are a function.
	promTokens = regexp.MustCompile(`[0-9][0-9a-zA-Z_.]*|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?`)
	// labelValues is Grafana's variable query label_values(SELECTOR, LABEL).
	labelValues = regexp.MustCompile(`^\s*label_values\(\s*([^,]*),`)
)

// promKeywords are the identifiers of PromQL that are not metric names.
var promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
	"and", "or", "unless", "atan2", "inf", "nan", "Inf", "NaN"}

// promMetrics returns the metric names a PromQL expression selects, in
// order, without repeats.
func promMetrics(expr string) []string {
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = m[1]
	}
	expr = promVars.ReplaceAllString(expr, " ")
	expr = promStrings.ReplaceAllString(expr, `""`)
	expr = promMatchers.ReplaceAllString(expr, " ")
	expr = promRanges.ReplaceAllString(expr, " ")
	expr = promGrouping.ReplaceAllString(expr, " ")
	var names []string
	for _, m := range promTokens.FindAllStringSubmatch(expr, -1) {
		name, call := m[1], m[2]
		if name == "" || call != "" || slices.Contains(promKeywords, name) || slices.Contains(names, name) {
			continue
		}
		names = append(names, name)
	}
	return names
}

func TestPromMetrics(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`rate(process_cpu_seconds_total{instance=~"$instance"}[$__rate_interval])`, []string{"process_cpu_seconds_total"}},
		{`histogram_quantile(0.99, sum by (le, instance) (rate(go_sched_latencies_seconds_bucket{a="b{c}"}[5m])))`, []string{"go_sched_latencies_seconds_bucket"}},
		{`sum(rate(x_total[1m])) by (mode) / ignoring(kind) group_left y{kind="swap_free"} offset 5m`, []string{"x_total", "y"}},
		{`a - on(job) b > bool 0.5e3 and c unless d or e`, []string{"a", "b", "c", "d", "e"}},
		{`time() - process_start_time_seconds{instance=~"${instance:regex}"}`, []string{"process_start_time_seconds"}},
		{`max_over_time(m:recorded[1h:5m]) * -Inf`, []string{"m:recorded"}},
		{`label_values(propolis_build_info{job="x"}, instance)`, []string{"propolis_build_info"}},
		{`count without (le) (h_bucket) + h_bucket`, []string{"h_bucket"}},
	} {
		if got := promMetrics(tt.expr); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("promMetrics(%s) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// served reports whether the scraped families serve metric name: a family
// of that name, or a histogram's _bucket, _sum or _count, or a summary's
// _sum or _count.
func served(fams map[string]*dto.MetricFamily, name string) bool {
	if fams[name] != nil {
		return true
	}
	for _, s := range []struct {
		suffix string
		types  []dto.MetricType
	}{
		{"_bucket", []dto.MetricType{dto.MetricType_HISTOGRAM}},
		{"_sum", []dto.MetricType{dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY}},
		{"_count", []dto.MetricType{dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY}},
	} {
		if base, ok := strings.CutSuffix(name, s.suffix); ok && fams[base] != nil && slices.Contains(s.types, fams[base].GetType()) {
			return true
		}
	}
	return false
}

// dashboardQuery is one PromQL query of the dashboard and where it is.
type dashboardQuery struct{ where, expr string }

// dashboardQueries reads every PromQL expression of a Grafana dashboard:
// each panel's targets (inside rows too) and each query variable.
func dashboardQueries(t *testing.T, file string) []dashboardQuery {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string  `json:"title"`
		Type    string  `json:"type"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var qs []dashboardQuery
	var walk func(ps []panel, row string)
	walk = func(ps []panel, row string) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels, p.Title)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q (row %q) has no query", file, p.Title, row)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q (row %q) query %s has no expression", file, p.Title, row, tg.RefID)
				}
				qs = append(qs, dashboardQuery{fmt.Sprintf("panel %q (row %q) query %s", p.Title, row, tg.RefID), tg.Expr})
			}
		}
	}
	walk(d.Panels, "")
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			_ = json.Unmarshal(v.Query, &q.Query) // a plain string
		}
		qs = append(qs, dashboardQuery{fmt.Sprintf("variable %q", v.Name), q.Query})
	}
	return qs
}

// trafficSession gives a broker a little of everything, so that metrics
// whose series appear with their first event have one: a subscriber, QoS
// 0, 1 and 2 publishes delivered, a clean DISCONNECT, a dropped TCP
// connection and a CONNECT refused (an unknown protocol level).
func trafficSession(t *testing.T, addr string) {
	t.Helper()
	opts := func(id string) *paho3.ClientOptions {
		return paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(poll.Timeout).SetWriteTimeout(poll.Timeout)
	}
	wait := func(what string, tok paho3.Token) {
		t.Helper()
		if !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
			t.Fatalf("%s: %v", what, tok.Error())
		}
	}
	got := make(chan struct{}, 3)
	sub := paho3.NewClient(opts("dash-sub"))
	wait("connect sub", sub.Connect())
	defer sub.Disconnect(100)
	wait("subscribe", sub.Subscribe("dash/#", 2, func(paho3.Client, paho3.Message) { got <- struct{}{} }))
	pub := paho3.NewClient(opts("dash-pub"))
	wait("connect pub", pub.Connect())
	for qos := byte(0); qos <= 2; qos++ {
		wait(fmt.Sprintf("publish qos %d", qos), pub.Publish("dash/t", qos, false, []byte("hello")))
	}
	for range 3 {
		select {
		case <-got:
		case <-time.After(poll.Timeout):
			t.Fatal("a publish was not delivered")
		}
	}
	pub.Disconnect(100)
	dropped, err := rawmqtt.Dial(addr, "dash-dropped")
	if err != nil {
		t.Fatal(err)
	}
	_ = dropped.Drop()

	// Protocol level 7 does not exist: the broker answers with a refusing
	// CONNACK (3.1.1: 0x01) and closes.
	bad, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Write([]byte{0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x07, 0x02, 0x00, 0x3c, 0x00, 0x03, 'b', 'a', 'd'}); err != nil {
		t.Fatal(err)
	}
	_ = bad.SetReadDeadline(time.Now().Add(poll.Timeout))
	if _, err := io.ReadAll(bad); err != nil {
		t.Fatalf("the refused connection was not closed: %v", err)
	}
}

// TestDashboardMetricsExist: every metric a query of the shipped Grafana
// dashboard selects is served by a real broker (serve, the allow-all
// extension) after a little traffic, scraped over HTTP. A failure names
// the panel, the query and the metric. A metric vector whose series
// appear only with an event the session does not cause should create its
// known label values up front (at 0), as Prometheus advises anyway.
func TestDashboardMetricsExist(t *testing.T) {
	qs := dashboardQueries(t, dashboardFile)
	if len(qs) == 0 {
		t.Fatalf("%s: no query found", dashboardFile)
	}
	addr, base, _, _ := startAllowAll(t)
	trafficSession(t, addr)
	body, _, err := scrape.Get(base+opshttp.MetricsPath, scrape.AcceptText, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := scrape.Text(body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	// served itself: a histogram's series are served, a gauge has none,
	// an unknown name is not.
	for name, want := range map[string]bool{"go_sched_latencies_seconds_bucket": true, "go_sched_latencies_seconds_count": true,
		"go_goroutines_bucket": false, "propolis_no_such_metric": false} {
		if served(fams, name) != want {
			t.Fatalf("served(%s) = %v", name, !want)
		}
	}
	checked := map[string]bool{}
	for _, q := range qs {
		names := promMetrics(q.expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", q.where, q.expr)
		}
		for _, name := range names {
			checked[name] = true
			if !served(fams, name) {
				t.Errorf("%s: metric %s is not served by the broker (query %q)", q.where, name, q.expr)
			}
		}
	}
	names := make([]string, 0, len(checked))
	for n := range checked {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d queries, %d metrics checked: %s", len(qs), len(names), strings.Join(names, " "))
}

// TestMetricsBothFormats: a real broker's /metrics parses in the
// Prometheus text format (the client library's parser) and in OpenMetrics
// (strictly), with the same families, each with help text, and the
// OpenMetrics answer is what Prometheus's own Accept header gets.
func TestMetricsBothFormats(t *testing.T) {
	_, base, _, _ := startAllowAll(t)
	url := base + opshttp.MetricsPath
	textBody, ctype, err := scrape.Get(url, "", poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type without Accept: %q", ctype)
	}
	text, err := scrape.Text(textBody)
	if err != nil {
		t.Fatalf("text format: %v", err)
	}
	omBody, ctype, err := scrape.Get(url, scrape.AcceptPrometheus, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "application/openmetrics-text; version=0.0.1; charset=utf-8" {
		t.Errorf("Content-Type for Prometheus's Accept: %q", ctype)
	}
	om, err := scrape.OpenMetrics(omBody)
	if err != nil {
		t.Fatalf("OpenMetrics: %v", err)
	}
	for name, f := range text {
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
		omName := name
		if f.GetType() == dto.MetricType_COUNTER {
			omName = strings.TrimSuffix(name, "_total")
		}
		if om[omName] == nil {
			t.Errorf("%s (%s) is in the text format but not in OpenMetrics", name, f.GetType())
		} else if want := strings.ToLower(f.GetType().String()); om[omName].Type != want && !(want == "untyped" && om[omName].Type == "unknown") {
			t.Errorf("%s is a %s in OpenMetrics, a %s in the text format", name, om[omName].Type, want)
		}
	}
	if len(om) != len(text) {
		t.Errorf("%d families in OpenMetrics, %d in the text format", len(om), len(text))
	}
	for _, name := range []string{"propolis_ready", "propolis_build_info", "propolis_host_cpu_seconds_total", "process_open_fds", "go_goroutines"} {
		if text[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if v, _ := scrape.Value(text, "propolis_ready"); v != 1 {
		t.Errorf("propolis_ready = %v with allow-all loaded", v)
	}
}

// TestPrometheusConfig: deploy/prometheus.yml is valid YAML and scrapes
// the default http.address on the path /metrics is served on.
func TestPrometheusConfig(t *testing.T) {
	b, err := os.ReadFile("../../deploy/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatalf("deploy/prometheus.yml: %v", err)
	}
	if len(p.ScrapeConfigs) != 1 || p.ScrapeConfigs[0].JobName != "propolis" || p.ScrapeConfigs[0].MetricsPath != opshttp.MetricsPath ||
		len(p.ScrapeConfigs[0].StaticConfigs) != 1 || !slices.Equal(p.ScrapeConfigs[0].StaticConfigs[0].Targets, []string{config.DefaultHTTPAddress}) {
		t.Errorf("deploy/prometheus.yml scrapes %+v, want job propolis on %s%s", p.ScrapeConfigs, config.DefaultHTTPAddress, opshttp.MetricsPath)
	}
}
