package metrics

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/propolis-mqtt/propolis/broker"
)

// brokerCollector is the broker's part of /metrics: at each scrape it
// reads one broker.Counters and one broker.Levels snapshot and turns them
// into constant metrics, so the broker itself only adds to atomic fields
// and knows nothing of Prometheus. Its series are listed in README.md
// ("Broker").
type brokerCollector struct {
	srv *broker.Server

	clientsConnected   *prometheus.Desc
	connectionsOpened  *prometheus.Desc
	connectsAccepted   *prometheus.Desc
	connectsRefused    *prometheus.Desc
	disconnects        *prometheus.Desc
	keepaliveTimeouts  *prometheus.Desc
	messagesReceived   *prometheus.Desc
	messagesSent       *prometheus.Desc
	bytesReceived      *prometheus.Desc
	bytesSent          *prometheus.Desc
	retained           *prometheus.Desc
	sessions           *prometheus.Desc
	queued             *prometheus.Desc
	subscriptions      *prometheus.Desc
	dropped            *prometheus.Desc
	windowFull         *prometheus.Desc
	slowConsumers      *prometheus.Desc
	storeWriteDuration *prometheus.Desc
	storeFsyncDuration *prometheus.Desc
	storeSize          *prometheus.Desc
}

// RegisterBroker registers the broker's metrics (connections, CONNECTs,
// disconnects, messages and bytes by QoS, drops, sessions, the store's
// latencies and size) with reg, read from srv at each scrape. cmd/propolis
// calls it once srv exists; it fails only if reg already has metrics of
// these names.
func RegisterBroker(reg prometheus.Registerer, srv *broker.Server) error {
	if err := reg.Register(newBrokerCollector(srv)); err != nil {
		return fmt.Errorf("register broker metrics: %w", err)
	}
	return nil
}

// newBrokerCollector describes every broker metric once.
func newBrokerCollector(srv *broker.Server) *brokerCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("propolis_"+name, help, labels, nil)
	}
	return &brokerCollector{
		srv:               srv,
		clientsConnected:  d("clients_connected", "Connections past their success CONNACK and not yet ended."),
		connectionsOpened: d("connections_opened_total", "Network connections accepted, by listener, whatever became of them.", "listener"),
		connectsAccepted:  d("connects_accepted_total", "CONNECTs answered with a success CONNACK."),
		connectsRefused: d("connects_refused_total",
			"CONNECTs answered with a refusing CONNACK, by the reason code sent (hex; 3.1.1 clients get 0x01-0x05).", "reason_code"),
		disconnects: d("disconnects_total",
			"Ends of accepted connections, by kind: client (DISCONNECT), lost (no DISCONNECT: network error, keepalive timeout), server (the broker closed it), takeover (a new connection took the session).", "kind"),
		keepaliveTimeouts: d("keepalive_timeouts_total", "Connections closed because the client sent nothing for 1.5 times its keepalive (counted in kind=\"lost\" too)."),
		messagesReceived:  d("messages_received_total", "PUBLISH packets read from clients, by QoS, before authorization.", "qos"),
		messagesSent:      d("messages_sent_total", "PUBLISH packets written to clients, by QoS.", "qos"),
		bytesReceived:     d("received_bytes_total", "Bytes of the PUBLISH packets read from clients (whole packets, fixed header included), by QoS.", "qos"),
		bytesSent:         d("sent_bytes_total", "Bytes of the PUBLISH packets written to clients (whole encoded packets), by QoS.", "qos"),
		retained:          d("retained_messages", "Retained messages held."),
		sessions:          d("sessions", "Sessions held, by state: online (a live connection) or offline (persistent, waiting for its client or its expiry).", "state"),
		queued:            d("queued_messages", "QoS 1/2 messages the sessions hold: queued for offline sessions, in flight or held back for online ones."),
		subscriptions:     d("subscriptions", "Subscriptions the sessions hold, online and offline (a shared subscription once per member)."),
		dropped: d("messages_dropped_total",
			"Messages not delivered, by reason: queue_full, pending_writes_full, expired, too_large, not_authorized, prevented (by an interceptor).", "reason"),
		windowFull:         d("inflight_window_full_total", "QoS 1/2 deliveries held back because the client's in-flight window (Receive Maximum) was full."),
		slowConsumers:      d("slow_consumer_disconnects_total", "Clients disconnected because they did not read what was sent to them in time (mqtt.write_timeout, mqtt.max_outbound_buffer)."),
		storeWriteDuration: d("store_write_duration_seconds", "Duration of each store write (one pebble write or batch commit; a durable write in sync mode includes its fsync wait)."),
		storeFsyncDuration: d("store_fsync_duration_seconds", "Duration of each fsync of the store's write-ahead log."),
		storeSize:          d("store_size_bytes", "Size of the store's files on disk (tables, write-ahead logs, manifest)."),
	}
}

// Describe sends every descriptor.
func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.clientsConnected, c.connectionsOpened, c.connectsAccepted, c.connectsRefused,
		c.disconnects, c.keepaliveTimeouts, c.messagesReceived, c.messagesSent,
		c.bytesReceived, c.bytesSent, c.retained, c.sessions, c.queued, c.subscriptions, c.dropped,
		c.windowFull, c.slowConsumers, c.storeWriteDuration, c.storeFsyncDuration, c.storeSize,
	} {
		ch <- d
	}
}

// qosLabels are the values of the qos label.
var qosLabels = [3]string{"0", "1", "2"}

// Collect reads the broker's snapshot once and sends every series.
func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.srv.Counters()
	l := c.srv.Levels()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}

	gauge(c.clientsConnected, l.ClientsConnected)
	for name, v := range n.ConnectionsOpened {
		counter(c.connectionsOpened, v, name)
	}
	counter(c.connectsAccepted, n.ConnectsAccepted)
	for code, v := range n.ConnectsRefused {
		counter(c.connectsRefused, v, reasonCode(code))
	}
	counter(c.disconnects, n.Disconnects.Client, "client")
	counter(c.disconnects, n.Disconnects.Lost, "lost")
	counter(c.disconnects, n.Disconnects.Server, "server")
	counter(c.disconnects, n.Disconnects.TakenOver, "takeover")
	counter(c.keepaliveTimeouts, n.KeepaliveTimeouts)
	for q, label := range qosLabels {
		counter(c.messagesReceived, n.Received[q].Messages, label)
		counter(c.bytesReceived, n.Received[q].Bytes, label)
		counter(c.messagesSent, n.Sent[q].Messages, label)
		counter(c.bytesSent, n.Sent[q].Bytes, label)
	}
	gauge(c.retained, l.RetainedMessages)
	gauge(c.sessions, l.SessionsOnline, "online")
	gauge(c.sessions, l.SessionsOffline, "offline")
	gauge(c.queued, l.QueuedMessages)
	gauge(c.subscriptions, l.Subscriptions)
	counter(c.dropped, n.Dropped.QueueFull, "queue_full")
	counter(c.dropped, n.Dropped.WritesPending, "pending_writes_full")
	counter(c.dropped, n.Dropped.Expired, "expired")
	counter(c.dropped, n.Dropped.TooLarge, "too_large")
	counter(c.dropped, n.Dropped.NotAuthorized, "not_authorized")
	counter(c.dropped, n.Dropped.Prevented, "prevented")
	counter(c.dropped, n.Dropped.ClusterNotForwarded, "cluster_not_forwarded")
	counter(c.windowFull, n.InflightWindowFull)
	counter(c.slowConsumers, uint64(n.SlowConsumerDisconnects))
	ch <- latencyHistogram(c.storeWriteDuration, n.StoreWrites)
	ch <- latencyHistogram(c.storeFsyncDuration, n.StoreFsyncs)
	if l.StoreSized {
		gauge(c.storeSize, int64(l.StoreBytes))
	}
}

// reasonCode is the reason_code label of a CONNACK code: "0x86".
func reasonCode(code byte) string {
	return "0x" + strconv.FormatUint(uint64(code)|0x100, 16)[1:]
}

// latencyHistogram turns one of the broker's histograms into a Prometheus
// histogram in seconds.
func latencyHistogram(d *prometheus.Desc, h broker.LatencyHistogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b.Seconds()] = h.Counts[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets)
}
