package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// sessionBroker is a real `propolis serve` for the scripted session: the
// allow-all extension, and svc-bad-args (testdata/wasm/ok/svc_bad_args,
// priority 10: it authenticates first, allowing every CONNECT, and each
// PUBLISH it authorizes makes 16 service calls answered INVALID_ARGUMENT,
// so that the service call series exist; its calls name client "c1", the
// publisher of the session, which must exist for the arguments to be
// checked). extDir is the watched
// extensions folder.
func sessionBroker(t *testing.T) (addr, base, extDir string) {
	t.Helper()
	tmp := t.TempDir()
	extDir = filepath.Join(tmp, "ext")
	installAllowAll(t, extDir)
	installFixture(t, extDir, "svc-bad-args", "ok/svc_bad_args", 10, "services: [subscriptions, retained, connection_attributes]\n")
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0",
		"--data", filepath.Join(tmp, "data"), "--extensions", extDir)
	addr, base, _ = runServeOps(t, cmd)
	return addr, base, extDir
}

// installFixture installs the hand-written module testdata/wasm/<fixture>.wasm
// as extension id with the given priority and manifest lines. The folder
// is written aside and renamed into extDir, so that a watching broker
// never sees it half written.
func installFixture(t *testing.T, extDir, id, fixture string, priority int, extra string) {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", fixture+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	aside := filepath.Join(t.TempDir(), id)
	writeFile(t, filepath.Join(aside, "ext.wasm"), string(bin))
	writeFile(t, filepath.Join(aside, "propolis-extension.yaml"),
		fmt.Sprintf("id: %s\nname: %s\nversion: 1.0.0\npriority: %d\nmodule: ext.wasm\n%s", id, id, priority, extra))
	if err := os.MkdirAll(extDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, filepath.Join(extDir, id)); err != nil {
		t.Fatal(err)
	}
}

// scrapeText fetches base's /metrics in the text format and parses it with
// the client library's parser (expfmt).
func scrapeText(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	body, _, err := scrape.Get(base+opshttp.MetricsPath, scrape.AcceptText, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := scrape.Text(body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// refusedConnect sends a raw CONNECT and returns the CONNACK's code (MQTT
// 3.1.1's return code or MQTT 5's reason code), then waits for the broker
// to close the connection.
func refusedConnect(t *testing.T, addr string, connect []byte) byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(poll.Timeout))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the refused connection was not closed: %v", err)
	}
	if len(b) < 4 || b[0] != 0x20 {
		t.Fatalf("no CONNACK: % x", b)
	}
	return b[3]
}

// trafficSession gives a broker a little of everything, so that metrics
// whose series appear with their first event have one: a subscriber, QoS
// 0, 1 and 2 publishes delivered, a clean DISCONNECT, a dropped TCP
// connection and a CONNECT refused (an unknown protocol level, 3.1.1 code
// 0x01). Then it installs the trapping extension
// (testdata/wasm/error/trap, priority 20: first in every chain) in the
// watched folder and sends an MQTT 5 CONNECT, which its authenticate
// refuses with 0x80 when it traps. Three CONNECTs are accepted; the
// subscriber stays connected.
func trafficSession(t *testing.T, addr, base, extDir string) {
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
	t.Cleanup(func() { sub.Disconnect(100) })
	wait("subscribe", sub.Subscribe("dash/#", 2, func(paho3.Client, paho3.Message) { got <- struct{}{} }))
	pub := paho3.NewClient(opts("c1")) // the client svc-bad-args names in its calls
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
	if code := refusedConnect(t, addr, []byte{0x10, 0x0f, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x07, 0x02, 0x00, 0x3c, 0x00, 0x03, 'b', 'a', 'd'}); code != 0x01 {
		t.Fatalf("CONNECT at protocol level 7: CONNACK %#x, want 0x01", code)
	}

	installFixture(t, extDir, "trap", "error/trap", 20, "")
	poll.Until(t, "the trapping extension to be loaded", func() bool {
		v, _ := scrape.Value(scrapeText(t, base), "propolis_extension_instances", "extension", "trap")
		return v > 0
	})
	// MQTT 5, clean start, keepalive 60, no properties, client id "trap".
	if code := refusedConnect(t, addr, []byte{0x10, 0x11, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x04, 't', 'r', 'a', 'p'}); code != 0x80 {
		t.Fatalf("CONNECT through the trapping extension: CONNACK %#x, want 0x80", code)
	}
}

// total sums the samples of family name whose labels include every pair
// of labels (name, value, ...), as PromQL's sum over a selector would.
func total(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var sum float64
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
				continue next
			}
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// sessionWant is what the scripted session moves, from a broker started
// for it: each series (name, then label pairs) and its value.
// Sums over the series that match, as a dashboard's sum() does.
var sessionWant = []struct {
	name   string
	labels []string
	want   float64
}{
	{"propolis_connects_accepted_total", nil, 3},
	{"propolis_connects_refused_total", []string{"reason_code", "0x01"}, 1},
	{"propolis_connects_refused_total", []string{"reason_code", "0x80"}, 1},
	{"propolis_disconnects_total", []string{"kind", "client"}, 1},
	{"propolis_disconnects_total", []string{"kind", "lost"}, 1},
	{"propolis_disconnects_total", []string{"kind", "server"}, 0},
	{"propolis_disconnects_total", []string{"kind", "takeover"}, 0},
	{"propolis_clients_connected", nil, 1},
	{"propolis_messages_received_total", []string{"qos", "0"}, 1},
	{"propolis_messages_received_total", []string{"qos", "1"}, 1},
	{"propolis_messages_received_total", []string{"qos", "2"}, 1},
	{"propolis_messages_sent_total", []string{"qos", "0"}, 1},
	{"propolis_messages_sent_total", []string{"qos", "1"}, 1},
	{"propolis_messages_sent_total", []string{"qos", "2"}, 1},
	{"propolis_messages_dropped_total", []string{"reason", "not_authorized"}, 0},
	{"propolis_extension_calls_total", []string{"extension", "trap", "callback", "authenticate", "outcome", "trap"}, 1},
	{"propolis_extension_calls_total", []string{"extension", "svc-bad-args", "callback", "authenticate", "outcome", "allow"}, 3},
	{"propolis_extension_calls_total", []string{"extension", "svc-bad-args", "callback", "authorize_publish", "outcome", "allow"}, 3},
	{"propolis_extension_service_calls_total", []string{"extension", "svc-bad-args", "status", "INVALID_ARGUMENT"}, 48},
	{"propolis_extensions", []string{"state", "running"}, 3},
	{"propolis_security_extensions", nil, 3},
}

// closedSets are the label values of the metrics whose label takes a
// known, closed set of values: each must be served from the first scrape
// (at 0 before its first event), so that rate() sees the first one.
var closedSets = []struct {
	name, label string
	values      []string
}{
	{"propolis_disconnects_total", "kind", []string{"client", "lost", "server", "takeover"}},
	{"propolis_messages_received_total", "qos", []string{"0", "1", "2"}},
	{"propolis_received_bytes_total", "qos", []string{"0", "1", "2"}},
	{"propolis_messages_sent_total", "qos", []string{"0", "1", "2"}},
	{"propolis_sent_bytes_total", "qos", []string{"0", "1", "2"}},
	{"propolis_sessions", "state", []string{"online", "offline"}},
	{"propolis_messages_dropped_total", "reason", []string{"queue_full", "pending_writes_full", "expired", "too_large", "not_authorized", "prevented"}},
	{"propolis_client_limit_hits_total", "limit", []string{"publish_rate", "bytes_rate", "subscriptions"}},
	{"propolis_stress_signal", "signal", []string{"backlog", "sched_latency", "gc_cpu", "store_latency", "memory"}},
	{"propolis_extensions", "state", []string{"running", "disabled", "failed"}},
}

// TestDashboardMetricsExist: a real `propolis serve` goes through a
// scripted session (trafficSession), scraped over HTTP and parsed with the
// client library's parser (expfmt): the key metrics moved as the session
// says; every metric a query of the shipped Grafana dashboard selects is
// served (a failure names the panel, the query and the metric); and the
// metrics whose labels take a closed set of values serve all of them. A
// metric vector whose series appear only with an event the session does
// not cause must create its known label values up front (at 0).
func TestDashboardMetricsExist(t *testing.T) {
	qs := dashboardQueries(t, dashboardFile)
	if len(qs) == 0 {
		t.Fatalf("%s: no query found", dashboardFile)
	}
	addr, base, extDir := sessionBroker(t)
	// Before any traffic: the closed sets are there, at 0.
	fams := scrapeText(t, base)
	for _, c := range closedSets {
		for _, v := range c.values {
			if got, ok := scrape.Value(fams, c.name, c.label, v); !ok {
				t.Errorf("before the session: no %s{%s=%q}", c.name, c.label, v)
			} else if got != 0 && c.name != "propolis_stress_signal" && c.name != "propolis_extensions" {
				t.Errorf("before the session: %s{%s=%q} = %v, want 0", c.name, c.label, v, got)
			}
		}
	}
	trafficSession(t, addr, base, extDir)
	// Disconnects and deliveries are counted on the broker's goroutines:
	// poll until the session's figures are all there.
	poll.Settle(t, "the session's figures", func() string {
		fams = scrapeText(t, base)
		var bad []string
		for _, w := range sessionWant {
			if got := total(fams, w.name, w.labels...); got != w.want {
				bad = append(bad, fmt.Sprintf("%s%q = %v, want %v", w.name, w.labels, got, w.want))
			}
		}
		return strings.Join(bad, "; ")
	})
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
	for _, c := range closedSets {
		for _, v := range c.values {
			if _, ok := scrape.Value(fams, c.name, c.label, v); !ok {
				t.Errorf("after the session: no %s{%s=%q}", c.name, c.label, v)
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
