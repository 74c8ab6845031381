package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/overload"
)

// OverloadSource is what the overload collector reads at every scrape:
// *broker.Server's Overload.
type OverloadSource interface {
	Overload() broker.OverloadStats
}

var _ OverloadSource = (*broker.Server)(nil)

// overloadCollector reports the node's stress level and the throttling of
// its clients (broker/overload), reading the broker's figures at scrape
// time: nothing is added to the publish path for it.
type overloadCollector struct {
	src       OverloadSource
	level     *prometheus.Desc
	signal    *prometheus.Desc
	throttled *prometheus.Desc
	waited    *prometheus.Desc
	hits      *prometheus.Desc
}

// NewOverloadCollector returns the collector of the overload metrics of
// src (see README.md, "Overload protection").
func NewOverloadCollector(src OverloadSource) prometheus.Collector {
	return &overloadCollector{
		src: src,
		level: prometheus.NewDesc("propolis_stress_level",
			"The node's stress level at the last sample, from 0 (idle) to 10 (overloaded); 0 while overload.enabled is false.", nil, nil),
		signal: prometheus.NewDesc("propolis_stress_signal",
			"Each stress signal's smoothed value at the last sample, from 0 (fine) to 1 (saturated).", []string{"signal"}, nil),
		throttled: prometheus.NewDesc("propolis_clients_throttled",
			"Clients whose socket is read more slowly because of the node's stress level.", nil, nil),
		waited: prometheus.NewDesc("propolis_throttled_seconds_total",
			"Time client readers waited for their token buckets (stress throttling and client_limits rates), summed over clients.", nil, nil),
		hits: prometheus.NewDesc("propolis_client_limit_hits_total",
			"Times a client was held to one of its client_limits: a read that waited for publish_rate or bytes_rate, a subscription refused for max_subscriptions.",
			[]string{"limit"}, nil),
	}
}

// RegisterOverload registers the overload collector of s with reg.
func RegisterOverload(reg prometheus.Registerer, s *broker.Server) error {
	return reg.Register(NewOverloadCollector(s))
}

// Describe sends the descriptors of the overload metrics.
func (c *overloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.level
	ch <- c.signal
	ch <- c.throttled
	ch <- c.waited
	ch <- c.hits
}

// Collect reads the broker's overload figures once and sends them.
func (c *overloadCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Overload()
	ch <- prometheus.MustNewConstMetric(c.level, prometheus.GaugeValue, st.Level)
	for _, s := range st.Signals {
		ch <- prometheus.MustNewConstMetric(c.signal, prometheus.GaugeValue, s.Value, s.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.throttled, prometheus.GaugeValue, float64(st.Throttling.Throttled))
	ch <- prometheus.MustNewConstMetric(c.waited, prometheus.CounterValue, st.Throttling.Waited.Seconds())
	for _, l := range []overload.Limit{overload.LimitPublishRate, overload.LimitBytesRate, overload.LimitSubscriptions} {
		ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(st.Throttling.Hit(l)), l.String())
	}
}
