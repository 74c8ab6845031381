// Package config loads and validates the Propolis broker's YAML
// configuration file.
//
// A file is read on top of Default, so keys it leaves out keep their
// default values; a listeners list in the file replaces the default list.
// Every problem found is reported at once as Errors, each with file, line,
// column and the dotted key path (decoding and positions come from
// internal/yamlconf, shared with the extension manifest), such as
//
//	propolis.yaml:14:3: listeners[1].address: port 70000 out of range 0-65535
package config

import (
	_ "embed"
	"os"
	"strconv"
	"time"

	"github.com/propolis-mqtt/propolis/internal/yamlconf"
)

// Config is the whole broker configuration.
type Config struct {
	// Listeners are the network endpoints clients connect to; at least one
	// is required. Default: one tcp listener named "tcp" on 127.0.0.1:1883.
	Listeners []Listener `yaml:"listeners"`
	// DataDir is the directory for persistent broker state, relative to the
	// working directory unless absolute. Default "./data".
	DataDir string `yaml:"data_dir"`
	// ExtensionsDir is the directory extensions are loaded from, relative to
	// the working directory unless absolute. Default "./extensions".
	ExtensionsDir string `yaml:"extensions_dir"`
	// Durability controls when persistent state is flushed to disk.
	Durability Durability `yaml:"durability"`
	// Store holds the limits of the data folder's store.
	Store Store `yaml:"store"`
	// MQTT holds protocol limits.
	MQTT MQTT `yaml:"mqtt"`
	// ExtensionServices caps every extension's host service calls.
	ExtensionServices ExtensionServices `yaml:"extension_services"`
	// Log controls the broker's own log output.
	Log Log `yaml:"log"`
	// HTTP is the operator's HTTP endpoint (/metrics, /healthz, /readyz).
	HTTP HTTP `yaml:"http"`
	// Overload is the node's stress level and the throttling of the
	// clients that overload it (package broker/overload).
	Overload Overload `yaml:"overload"`
	// ClientLimits are the limits every client is held to.
	ClientLimits ClientLimits `yaml:"client_limits"`
	// Admin is who may use the admin API and control center (admin.go).
	Admin Admin `yaml:"admin"`
	// Trace holds the limits of trace recordings (trace.go).
	Trace Trace `yaml:"trace"`
	// Cluster makes this broker a node of a cluster (cluster.go); nil, the
	// default, runs it alone.
	Cluster *Cluster `yaml:"cluster"`
	// Source is the file name the configuration came from, or
	// "<embedded default>" for Default.
	Source string `yaml:"-"`
}

// Listener is one network endpoint.
type Listener struct {
	// Name identifies the listener; required, unique, made of [a-z0-9_-].
	// No default.
	Name string `yaml:"name"`
	// Type is "tcp", "tls" or "websocket". Required, no default.
	Type string `yaml:"type"`
	// Address is host:port to listen on; the port is 0-65535, where 0 picks
	// a free port (used by tests) and an empty host means all interfaces.
	// Required, no default.
	Address string `yaml:"address"`
	// Path is the HTTP path of a websocket listener; it must start with "/".
	// Websocket only. Default "/mqtt", filled in by Parse when the key is
	// absent (Validate rejects an empty path).
	Path string `yaml:"path"`
	// TLS is required for type tls, optional for websocket (making it wss)
	// and not allowed for tcp. Default nil (no TLS).
	TLS *TLS `yaml:"tls"`
	// OverloadProtection lets the broker throttle this listener's clients
	// when the node is under stress (overload.*); the client_limits apply
	// either way. Default true, filled in by Parse when the key is absent;
	// nil (a Listener built in Go) also means true, see Protected.
	OverloadProtection *bool `yaml:"overload_protection"`
}

// Protected reports whether the listener's clients may be throttled for
// the node's stress: OverloadProtection, true when nil.
func (l *Listener) Protected() bool { return l.OverloadProtection == nil || *l.OverloadProtection }

// TLS is the TLS setup of a listener.
type TLS struct {
	// CertFile is the PEM certificate chain file; required, must be
	// readable. No default.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key file; required, must be readable.
	// No default.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile is a PEM file of CA certificates client certificates are
	// verified against. Optional; default "" (client certificates are not
	// requested).
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert rejects clients without a certificate verified
	// against ClientCAFile, which it needs. Default false.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Durability controls when persistent state is flushed to disk.
type Durability struct {
	// Mode is "sync" (flush before acknowledging), "periodic" (flush every
	// FlushInterval) or "none" (leave it to the operating system).
	// Default "sync".
	Mode string `yaml:"mode"`
	// FlushInterval is the time between flushes in periodic mode, 1ms to 1m;
	// ignored in other modes. Default 100ms.
	FlushInterval Duration `yaml:"flush_interval"`
}

// Store holds the limits of the data folder's store.
type Store struct {
	// MinFreeSpace is the free space, in bytes, kept free on the data
	// folder's file system: below it the broker refuses new QoS 1/2
	// messages (MQTT 5 gets PUBACK/PUBREC 0x97, 3.1.1 senders are
	// disconnected), retained messages and new subscriptions, and resumes
	// by itself when space returns. The reserve is left to the store's own
	// flushes and compactions, which must not hit a full disk. 0 turns the
	// guard off (a full disk then stops the broker). At least 0.
	// Default 64 MiB.
	MinFreeSpace ByteSize `yaml:"min_free_space"`
}

// MQTT holds protocol limits.
type MQTT struct {
	// MaxPacketSize is the largest packet accepted, in bytes, from 64 B to
	// 268435455 B (the MQTT maximum). Default 1 MiB (1048576).
	MaxPacketSize ByteSize `yaml:"max_packet_size"`
	// MaxSessionExpiry caps the session expiry interval clients may ask for,
	// from 0 (no persistent sessions) to 4294967295s. Default 168h.
	MaxSessionExpiry Duration `yaml:"max_session_expiry"`
	// MaxMessageExpiry caps the message expiry interval, 0 (no limit) or at
	// least 1s. Default 0.
	MaxMessageExpiry Duration `yaml:"max_message_expiry"`
	// ReceiveMaximum is the number of unacknowledged QoS 1 and 2 messages a
	// client may send at once, 1 to 65535. Default 1024.
	ReceiveMaximum int `yaml:"receive_maximum"`
	// MaxQueuedMessages is the number of messages queued per client,
	// 1 to 65535. Default 1000.
	MaxQueuedMessages int `yaml:"max_queued_messages"`
	// QueueFullPolicy says what happens when a client's queue is full:
	// "drop-new" drops the incoming message. Default "drop-new".
	QueueFullPolicy string `yaml:"queue_full_policy"`
	// ConnectTimeout is the time allowed between accepting a connection and
	// receiving a complete CONNECT packet, and again for authenticating it
	// (the Authenticator's context), 100ms to 5m. Default 10s. Keep it above
	// the extensions' limits.authenticate_deadline (default 2s), or a slow
	// authentication is cut short by the broker.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// MaxKeepalive is the longest keepalive granted to a client, a whole
	// number of seconds from 1s to 65535s (the largest MQTT can carry). A
	// client asking for more, or for none (0), is given MaxKeepalive: an
	// MQTT 5 client is told in the CONNACK (Server Keep Alive); an MQTT
	// 3.1.1 client cannot be, and is held to it all the same. Either is
	// disconnected after 1.5 times its keepalive without a packet.
	// Default 65535s.
	MaxKeepalive Duration `yaml:"max_keepalive"`
	// MaxClients is the number of clients connected at once, 0 meaning
	// unlimited. Default 0.
	MaxClients int `yaml:"max_clients"`
	// WriteTimeout is how long one socket write of up to 64 KiB to a client
	// may take, 100ms to 24h; a client that does not take it in that time is
	// disconnected as a slow consumer (its persistent session keeps its
	// queue). Default 30s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxOutboundBuffer is how many bytes the broker holds for one client
	// beyond what its socket accepts, 64KiB to 1GiB; a client that would need
	// more is disconnected as a slow consumer. One packet is always accepted
	// into an empty buffer, whatever its size, and the queue a resumed session
	// gets right after its CONNACK is not limited. Default 4MiB.
	MaxOutboundBuffer ByteSize `yaml:"max_outbound_buffer"`
}

// ExtensionServices caps the host service calls of each extension (ABI.md
// section 5): a token bucket per extension, which an extension's manifest
// may make stricter (limits.service_rate, service_burst) but not looser.
type ExtensionServices struct {
	// Rate is the calls per second one extension may make, 1 to 1,000,000.
	// Default DefaultServiceRate.
	Rate int `yaml:"rate"`
	// Burst is how many calls one extension may make at once beyond the
	// rate, 1 to 1,000,000. Default DefaultServiceBurst.
	Burst int `yaml:"burst"`
}

// Defaults of ExtensionServices. Rate limiting is on by default: a guest
// stuck in a loop of service calls could otherwise make about a million of
// them a second, each taking a broker lock or a store write. 10,000 a
// second per extension is several times what an extension writing two
// session attributes per CONNECT needs at the connect rates we measure.
const (
	DefaultServiceRate  = 10000
	DefaultServiceBurst = 1000
)

// Log controls the broker's own log output.
type Log struct {
	// Level is the least severe level written: "debug", "info", "warn" or
	// "error". Default "info".
	Level string `yaml:"level"`
	// Format is "text" or "json". Default "text".
	Format string `yaml:"format"`
}

// HTTP is the operator's HTTP endpoint: /metrics (Prometheus), /healthz
// and /readyz (package opshttp).
type HTTP struct {
	// Address is host:port to listen on; port 0 picks a free port (used by
	// tests), an empty host means all interfaces, and "" turns the endpoint
	// off. Default "127.0.0.1:9090".
	Address string `yaml:"address"`
	// TLS, when set, serves HTTPS: cert_file and key_file are required;
	// client_ca_file verifies client certificates, and
	// require_client_cert refuses clients without one. Default nil (plain
	// HTTP).
	TLS *TLS `yaml:"tls"`
}

// DefaultHTTPAddress is HTTP.Address in Default: loopback only, so that
// metrics are not exposed beyond the machine unless the operator says so.
const DefaultHTTPAddress = "127.0.0.1:9090"

// Overload is the node's stress level, 0 (idle) to 10 (overloaded), and the
// throttling of the clients that send the most while it is high (see the
// package doc of broker/overload for the signals and their weights).
type Overload struct {
	// Enabled turns the stress level and the throttling on; off, no client
	// is ever throttled for stress (client_limits still apply). Default
	// true.
	Enabled bool `yaml:"enabled"`
	// Interval is the time between two samples of the signals, 100ms to 1m.
	// Default 1s.
	Interval Duration `yaml:"interval"`
	// ThrottleLevel is the stress level at or above which the heaviest
	// senders are throttled, a whole number from 1 to 9 (the level tends to
	// 10 and never reaches it). Default 7.
	ThrottleLevel int `yaml:"throttle_level"`
	// ReleaseLevel is the stress level below which throttled clients get
	// their rate back, step by step, 1 to throttle_level (the level is
	// never below 0, so at 0 nothing would be released). Default 4.
	ReleaseLevel int `yaml:"release_level"`
	// MinClientRate, in bytes per second: clients sending less are never
	// throttled, and nobody is throttled below it; 1KiB to 1GiB. Default
	// 64KiB.
	MinClientRate ByteSize `yaml:"min_client_rate"`
	// MemoryLimit is the memory the memory signal measures the Go runtime's
	// against, in bytes; 0 means the runtime's GOMEMLIMIT when set, else
	// no memory signal. At least 0. Default 0.
	MemoryLimit ByteSize `yaml:"memory_limit"`
}

// ClientLimits are the limits every client is held to, whatever the
// node's stress; a zero value is no limit. Rates are enforced by reading
// the client's socket more slowly: nothing is dropped and nobody is
// disconnected for them.
type ClientLimits struct {
	// PublishRate is the PUBLISH packets per second a client may send, 0
	// (no limit) to 1,000,000. Default 0.
	PublishRate int `yaml:"publish_rate"`
	// PublishBurst is how many PUBLISH packets a client may send at once
	// beyond publish_rate, 1 to 1,000,000. Default 100.
	PublishBurst int `yaml:"publish_burst"`
	// BytesRate is the bytes per second read from a client, 0 (no limit)
	// or 1KiB to 1GiB. Default 0.
	BytesRate ByteSize `yaml:"bytes_rate"`
	// MaxSubscriptions is the number of subscriptions one client may hold,
	// 0 (no limit) to 1,000,000; a SUBSCRIBE filter beyond it is refused
	// (MQTT 5: SUBACK 0x97 quota exceeded; 3.1.1: 0x80). Default 0.
	MaxSubscriptions int `yaml:"max_subscriptions"`
}

// DefaultYAML is the embedded default configuration file text. It is also
// the documented example configuration, with a comment for every key.
//
//go:embed default.yaml
var DefaultYAML []byte

// defaultSource is Config.Source for the configuration returned by Default.
const defaultSource = "<embedded default>"

// Default returns the embedded default configuration: one tcp listener named
// "tcp" on 127.0.0.1:1883, and every documented default. Each call returns a
// new Config the caller may modify.
func Default() *Config {
	return &Config{
		Listeners:     []Listener{{Name: "tcp", Type: "tcp", Address: "127.0.0.1:1883", OverloadProtection: ptr(true)}},
		DataDir:       "./data",
		ExtensionsDir: "./extensions",
		Durability: Durability{
			Mode:          "sync",
			FlushInterval: Duration(100 * time.Millisecond),
		},
		Store: Store{MinFreeSpace: 64 << 20},
		MQTT: MQTT{
			MaxPacketSize:     1 << 20,
			MaxSessionExpiry:  Duration(168 * time.Hour),
			MaxMessageExpiry:  0,
			ReceiveMaximum:    1024,
			MaxQueuedMessages: 1000,
			QueueFullPolicy:   "drop-new",
			ConnectTimeout:    Duration(10 * time.Second),
			MaxKeepalive:      Duration(65535 * time.Second),
			MaxClients:        0,
			WriteTimeout:      Duration(30 * time.Second),
			MaxOutboundBuffer: 4 << 20,
		},
		ExtensionServices: ExtensionServices{Rate: DefaultServiceRate, Burst: DefaultServiceBurst},
		Log:               Log{Level: "info", Format: "text"},
		HTTP:              HTTP{Address: DefaultHTTPAddress},
		Overload: Overload{Enabled: true, Interval: Duration(time.Second), ThrottleLevel: 7, ReleaseLevel: 4,
			MinClientRate: 64 << 10},
		ClientLimits: ClientLimits{PublishBurst: 100},
		Admin: Admin{Enabled: true, Users: []AdminUser{}, Roles: map[string]any{}, Tokens: []AdminToken{}, Hosts: []string{},
			SessionTTL: Duration(12 * time.Hour), AuditLog: "audit.log"},
		Trace:  Trace{MaxFileSize: DefaultTraceMaxFileSize, MaxTotalSize: DefaultTraceMaxTotalSize},
		Source: defaultSource,
	}
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// Load reads and validates the file at path. Every problem is reported in
// one pass, as Errors; a file that cannot be read gives the error from
// os.ReadFile.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse validates data as if read from a file named name, which becomes
// Config.Source and Error.File. Keys data leaves out keep their Default
// values. The error, if any, is Errors.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	c.Source = name
	doc := yamlconf.Decode(name, data, c)
	for i := range c.Listeners {
		// A websocket listener without a path key gets the default path.
		l := &c.Listeners[i]
		if l.Type == "websocket" && !doc.Has("listeners["+strconv.Itoa(i)+"].path") {
			l.Path = "/mqtt"
		}
		if l.OverloadProtection == nil {
			l.OverloadProtection = ptr(true)
		}
	}
	if c.Cluster != nil {
		c.Cluster.fillDefaults(func(key string) bool { return doc.Has("cluster." + key) })
	}
	doc.Add(c.validate()...)
	if err := doc.Err(); err != nil {
		return nil, err
	}
	return c, nil
}
