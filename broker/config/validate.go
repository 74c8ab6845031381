package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Allowed values of the enumerated fields, in the order they are listed in
// error messages.
var (
	listenerTypes     = []string{"tcp", "tls", "websocket"}
	durabilityModes   = []string{"sync", "periodic", "none"}
	queueFullPolicies = []string{"drop-new"}
	logLevels         = []string{"debug", "info", "warn", "error"}
	logFormats        = []string{"text", "json"}
)

// Limits enforced by Validate.
const (
	minPacketSize     = 64
	maxPacketSize     = 268435455 // the largest size the MQTT remaining length can encode
	maxExpiry         = Duration(4294967295 * time.Second)
	minFlushInterval  = Duration(time.Millisecond)
	maxFlushInterval  = Duration(time.Minute)
	minConnectTimeout = Duration(100 * time.Millisecond)
	maxConnectTimeout = Duration(5 * time.Minute)
	minWriteTimeout   = Duration(100 * time.Millisecond)
	maxWriteTimeout   = Duration(24 * time.Hour)
	minOutboundBuffer = 64 << 10
	maxOutboundBuffer = 1 << 30
	maxKeepalive      = Duration(65535 * time.Second) // the largest two-byte Keep Alive
)

// listenerName is the syntax of Listener.Name.
var listenerName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// Validate checks the rules that span fields (unique listener names, TLS
// rules) and the range of every value; Parse calls it. After changing fields,
// for example from command-line flags, call it again: its Errors then have
// File set to c.Source, Line 0 and the dotted Key of each problem.
func (c *Config) Validate() error {
	errs := c.validate()
	if len(errs) == 0 {
		return nil
	}
	for _, e := range errs {
		e.File = c.Source
	}
	return errs
}

// checker collects problems without positions.
type checker struct{ errs Errors }

// addf records a problem with key.
func (ch *checker) addf(key, format string, args ...any) {
	ch.errs = append(ch.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// enum checks that v is one of allowed.
func (ch *checker) enum(key, v string, allowed []string) {
	switch {
	case v == "":
		ch.addf(key, "required (allowed: %s)", strings.Join(allowed, ", "))
	case !slices.Contains(allowed, v):
		ch.addf(key, "unknown value %q (allowed: %s)", v, strings.Join(allowed, ", "))
	}
}

// intRange checks that lo <= v <= hi.
func (ch *checker) intRange(key string, v, lo, hi int) {
	if v < lo || v > hi {
		ch.addf(key, "%d out of range %d-%d", v, lo, hi)
	}
}

// durationRange checks that lo <= v <= hi.
func (ch *checker) durationRange(key string, v, lo, hi Duration) {
	if v < lo || v > hi {
		ch.addf(key, "%s out of range %s-%s", v, lo, hi)
	}
}

// required checks that v is not empty.
func (ch *checker) required(key, v string) {
	if v == "" {
		ch.addf(key, "required")
	}
}

// validate returns every problem in c, without File or positions.
func (c *Config) validate() Errors {
	ch := &checker{}
	c.validateListeners(ch)
	ch.required("data_dir", c.DataDir)
	ch.required("extensions_dir", c.ExtensionsDir)

	ch.enum("durability.mode", c.Durability.Mode, durabilityModes)
	if c.Durability.Mode == "periodic" {
		ch.durationRange("durability.flush_interval", c.Durability.FlushInterval, minFlushInterval, maxFlushInterval)
	}

	if c.Store.MinFreeSpace < 0 {
		ch.addf("store.min_free_space", "%s is negative (0 turns the guard off)", c.Store.MinFreeSpace)
	}

	m := &c.MQTT
	if m.MaxPacketSize < minPacketSize || m.MaxPacketSize > maxPacketSize {
		ch.addf("mqtt.max_packet_size", "%s out of range %dB-%dB", m.MaxPacketSize, minPacketSize, maxPacketSize)
	}
	if m.MaxSessionExpiry < 0 || m.MaxSessionExpiry > maxExpiry {
		v := m.MaxSessionExpiry.String()
		if m.MaxSessionExpiry%Duration(time.Second) == 0 {
			v = strconv.FormatInt(int64(m.MaxSessionExpiry/Duration(time.Second)), 10) + "s"
		}
		ch.addf("mqtt.max_session_expiry", "%s out of range 0s-4294967295s", v)
	}
	if m.MaxMessageExpiry < 0 || m.MaxMessageExpiry > 0 && m.MaxMessageExpiry < Duration(time.Second) {
		ch.addf("mqtt.max_message_expiry", "%s is neither 0 (no limit) nor at least 1s", m.MaxMessageExpiry)
	}
	ch.intRange("mqtt.receive_maximum", m.ReceiveMaximum, 1, 65535)
	ch.intRange("mqtt.max_queued_messages", m.MaxQueuedMessages, 1, 65535)
	ch.enum("mqtt.queue_full_policy", m.QueueFullPolicy, queueFullPolicies)
	ch.durationRange("mqtt.connect_timeout", m.ConnectTimeout, minConnectTimeout, maxConnectTimeout)
	switch k := m.MaxKeepalive; {
	case k%Duration(time.Second) != 0:
		ch.addf("mqtt.max_keepalive", "%s is not a whole number of seconds", k)
	case k < Duration(time.Second) || k > maxKeepalive:
		ch.addf("mqtt.max_keepalive", "%ds out of range 1s-65535s", int64(k/Duration(time.Second)))
	}
	if m.MaxClients < 0 {
		ch.addf("mqtt.max_clients", "%d is negative (0 means unlimited)", m.MaxClients)
	}
	ch.durationRange("mqtt.write_timeout", m.WriteTimeout, minWriteTimeout, maxWriteTimeout)
	if m.MaxOutboundBuffer < minOutboundBuffer || m.MaxOutboundBuffer > maxOutboundBuffer {
		ch.addf("mqtt.max_outbound_buffer", "%s out of range %s-%s", m.MaxOutboundBuffer, ByteSize(minOutboundBuffer), ByteSize(maxOutboundBuffer))
	}

	ch.intRange("extension_services.rate", c.ExtensionServices.Rate, 1, 1000000)
	ch.intRange("extension_services.burst", c.ExtensionServices.Burst, 1, 1000000)

	ch.enum("log.level", c.Log.Level, logLevels)
	ch.enum("log.format", c.Log.Format, logFormats)

	c.validateHTTP(ch)
	c.validateOverload(ch)
	c.validateAdmin(ch)
	c.validateTrace(ch)
	c.validateCluster(ch)
	return ch.errs
}

// Limits of the overload and client_limits keys.
const (
	minOverloadInterval = Duration(100 * time.Millisecond)
	maxOverloadInterval = Duration(time.Minute)
	minRateBytes        = 1 << 10
	maxRateBytes        = 1 << 30
	maxLimitCount       = 1000000
)

// validateOverload checks the overload and client_limits sections.
func (c *Config) validateOverload(ch *checker) {
	o := &c.Overload
	ch.durationRange("overload.interval", o.Interval, minOverloadInterval, maxOverloadInterval)
	ch.intRange("overload.throttle_level", o.ThrottleLevel, 1, 9) // the level never reaches 10 (overload/doc.go)
	if o.ReleaseLevel < 1 || o.ReleaseLevel > o.ThrottleLevel {
		ch.addf("overload.release_level", "%d out of range 1-%d (overload.throttle_level; at 0 nothing would ever be released)", o.ReleaseLevel, o.ThrottleLevel)
	}
	if o.MinClientRate < minRateBytes || o.MinClientRate > maxRateBytes {
		ch.addf("overload.min_client_rate", "%s out of range %s-%s", o.MinClientRate, ByteSize(minRateBytes), ByteSize(maxRateBytes))
	}
	if o.MemoryLimit < 0 {
		ch.addf("overload.memory_limit", "%s is negative (0 means GOMEMLIMIT, or no memory signal)", o.MemoryLimit)
	}

	l := &c.ClientLimits
	ch.intRange("client_limits.publish_rate", l.PublishRate, 0, maxLimitCount)
	ch.intRange("client_limits.publish_burst", l.PublishBurst, 1, maxLimitCount)
	if l.BytesRate != 0 && (l.BytesRate < minRateBytes || l.BytesRate > maxRateBytes) {
		ch.addf("client_limits.bytes_rate", "%s is neither 0 (no limit) nor in range %s-%s", l.BytesRate, ByteSize(minRateBytes), ByteSize(maxRateBytes))
	}
	ch.intRange("client_limits.max_subscriptions", l.MaxSubscriptions, 0, maxLimitCount)
}

// validateListeners checks each listener and that names and fixed addresses
// are unique.
func (c *Config) validateListeners(ch *checker) {
	if len(c.Listeners) == 0 {
		ch.addf("listeners", "at least one listener is required")
	}
	names := map[string]string{}     // name -> key of the listener using it
	addresses := map[string]string{} // address -> key of the listener using it
	for i := range c.Listeners {
		l := &c.Listeners[i]
		key := "listeners[" + strconv.Itoa(i) + "]"

		switch {
		case l.Name == "":
			ch.addf(key+".name", "required")
		case !listenerName.MatchString(l.Name):
			ch.addf(key+".name", "invalid name %q (use lowercase letters, digits, _ and -)", l.Name)
		case names[l.Name] != "":
			ch.addf(key+".name", "duplicate listener name %q (also used by %s)", l.Name, names[l.Name])
		default:
			names[l.Name] = key
		}

		ch.enum(key+".type", l.Type, listenerTypes)

		if port, ok := checkAddress(ch, key+".address", l.Address); ok && port != 0 {
			if other := addresses[l.Address]; other != "" {
				ch.addf(key+".address", "%q is also used by %s", l.Address, other)
			} else if addr, other := overlapping(l.Address, c.Listeners[:i]); other >= 0 {
				ch.addf(key+".address", "%q overlaps %q of listeners[%d]", l.Address, addr, other)
			} else {
				addresses[l.Address] = key
			}
		}

		switch {
		case l.Type == "websocket" && !strings.HasPrefix(l.Path, "/"):
			ch.addf(key+".path", "must start with \"/\", got %q", l.Path)
		case l.Type != "websocket" && l.Path != "":
			ch.addf(key+".path", "only allowed for websocket listeners")
		}

		switch {
		case l.Type == "tls" && l.TLS == nil:
			ch.addf(key+".tls", "required for type tls")
		case l.Type == "tcp" && l.TLS != nil:
			ch.addf(key+".tls", "not allowed for type tcp (use type tls)")
		case l.TLS != nil:
			l.TLS.validate(ch, key+".tls")
		}
	}
}

// validateHTTP checks the http section: an address like a listener's (or
// "", which turns the endpoint off) that no listener uses, and its TLS
// block like a listener's.
func (c *Config) validateHTTP(ch *checker) {
	h := &c.HTTP
	if h.Address == "" {
		if h.TLS != nil {
			ch.addf("http.tls", "set while http.address is \"\" (the endpoint is off)")
		}
		return
	}
	if port, ok := checkAddress(ch, "http.address", h.Address); ok && port != 0 {
		if addr, i := overlapping(h.Address, c.Listeners); i >= 0 {
			if addr == h.Address {
				ch.addf("http.address", "%q is also used by listeners[%d]", h.Address, i)
			} else {
				ch.addf("http.address", "%q overlaps %q of listeners[%d]", h.Address, addr, i)
			}
		}
	}
	if h.TLS != nil {
		h.TLS.validate(ch, "http.tls")
	}
}

// checkAddress checks that addr is host:port with a numeric port in range,
// and returns the port.
func checkAddress(ch *checker, key, addr string) (port int, ok bool) {
	if addr == "" {
		ch.addf(key, "required")
		return 0, false
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil || p == "" {
		ch.addf(key, "want host:port, got %q", addr)
		return 0, false
	}
	if strings.Trim(p, "0123456789") != "" {
		ch.addf(key, "port %q is not a number", p)
		return 0, false
	}
	port, err = strconv.Atoi(p)
	if err != nil || port > 65535 {
		ch.addf(key, "port %s out of range 0-65535", p)
		return 0, false
	}
	return port, true
}

// validate checks t, whose key path is key; the certificate and key files
// must be readable.
func (t *TLS) validate(ch *checker, key string) {
	checkFile(ch, key+".cert_file", t.CertFile)
	checkFile(ch, key+".key_file", t.KeyFile)
	if t.RequireClientCert && t.ClientCAFile == "" {
		ch.addf(key+".require_client_cert", "needs client_ca_file")
	}
}

// checkFile checks that path is given and names a readable file.
func checkFile(ch *checker, key, path string) {
	if path == "" {
		ch.addf(key, "required")
		return
	}
	f, err := os.Open(path)
	if err == nil {
		_, err = f.Read(make([]byte, 1))
		f.Close()
		if errors.Is(err, io.EOF) {
			err = nil // empty, but readable
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		ch.addf(key, "cannot read %q: %v", path, err)
	}
}

// overlapping returns the address and index of the first of listeners
// whose socket would collide with one bound at addr (both valid host:port
// with a port above 0), or -1: the same port, and hosts that name the same
// interface or of which one is a wildcard ("", 0.0.0.0 or ::, which on
// Linux also takes IPv4). "localhost" stands for both loopback addresses;
// another name is compared as written (validation does not use DNS).
func overlapping(addr string, listeners []Listener) (string, int) {
	host, port, _ := net.SplitHostPort(addr)
	for i, l := range listeners {
		h, p, err := net.SplitHostPort(l.Address)
		if err != nil || p != port {
			continue
		}
		if p, _ := strconv.Atoi(p); p == 0 {
			continue
		}
		if hostsOverlap(host, h) {
			return l.Address, i
		}
	}
	return "", -1
}

// hostsOverlap says whether sockets bound on hosts a and b with the same
// port would collide (see overlapping).
func hostsOverlap(a, b string) bool {
	ia, ib := hostIPs(a), hostIPs(b)
	if ia == nil || ib == nil {
		return true // a wildcard
	}
	for _, x := range ia {
		for _, y := range ib {
			if x.Equal(y) {
				return true
			}
		}
	}
	return len(ia) == 0 && len(ib) == 0 && strings.EqualFold(a, b)
}

// hostIPs returns the addresses host names: nil for a wildcard, an empty
// slice for a name other than localhost.
func hostIPs(host string) []net.IP {
	if strings.EqualFold(host, "localhost") {
		return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	if host == "" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return []net.IP{}
	}
	if ip.IsUnspecified() {
		return nil
	}
	return []net.IP{ip}
}
