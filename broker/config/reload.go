package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Reloading a running broker's configuration (SIGHUP).
//
// reloadRules says, for every key of the file, whether a running broker can
// take a new value; it is the one list of live keys (README.md's table of
// them is checked against it, TestReadmeListsLiveKeys). A key is live only
// if what reads it reads the configuration in effect each time it needs
// the value, so the new value truly applies; each live line names that
// reader. Anything else is fixed at start and a reload changing it is
// refused as a whole. TestReloadRulesCoverEveryKey fails for a key without
// a rule, so adding a key to Config means adding its line here.

// reloadRule is whether keys may change while the broker runs.
type reloadRule struct {
	// key is a key path, or the path of a section or list covering every
	// key under it ("listeners" covers "listeners[1].tls.cert_file").
	key string
	// live says that a running broker applies a new value; when to is set
	// it says from when (it is logged with the change).
	live bool
	to   string
	// logger says that the value is applied by whoever built the broker's
	// logger, through the function it gave (broker.Options.ApplyLog); a
	// broker given none cannot change it, and the key is fixed with why.
	logger bool
	// why says, for a key that cannot change, what holds its value.
	why string
}

// reloadRules is one line per key, in the order of the configuration
// reference.
var reloadRules = []reloadRule{
	{key: "listeners", why: "its sockets are bound at start"},
	{key: "data_dir", why: "the store is open"},
	{key: "extensions_dir", why: "the extension host watches it"},
	{key: "durability.mode", why: "the store is opened with it"},
	{key: "durability.flush_interval", why: "the store is opened with it"},
	{key: "store.min_free_space", why: "the store's free-space guard is built with it"},
	{key: "mqtt.max_packet_size", why: "mochi's capabilities are fixed at start"},
	{key: "mqtt.max_session_expiry", why: "mochi's capabilities are fixed at start"},
	{key: "mqtt.max_message_expiry", live: true, to: "messages published from now on"}, // hook.maxMsgExpiry, per PUBLISH and per message an extension publishes
	{key: "mqtt.receive_maximum", why: "mochi's capabilities are fixed at start"},
	{key: "mqtt.max_queued_messages", why: "mochi's capabilities are fixed at start"},
	{key: "mqtt.queue_full_policy", why: "one policy exists"},
	{key: "mqtt.connect_timeout", live: true, to: "connections accepted from now on"}, // Server.connectTimeout at accept, hook.connectTimeout at authentication
	{key: "mqtt.max_keepalive", live: true, to: "CONNECTs from now on"},               // hook.maxKeepalive, when a CONNECT is authenticated
	{key: "mqtt.max_clients", why: "mochi's capabilities are fixed at start"},
	{key: "mqtt.write_timeout", live: true, to: "connections accepted from now on"},       // Server.wrapConn, at accept
	{key: "mqtt.max_outbound_buffer", live: true, to: "connections accepted from now on"}, // Server.wrapConn, at accept
	{key: "extension_services.rate", why: "each extension's rate limiter is built with it when the extension loads"},
	{key: "extension_services.burst", why: "each extension's rate limiter is built with it when the extension loads"},
	{key: "log.level", live: true, to: "now", logger: true, why: "the broker was given no way to change its logger (broker.Options.ApplyLog)"},
	{key: "log.format", live: true, to: "now", logger: true, why: "the broker was given no way to change its logger (broker.Options.ApplyLog)"},
	{key: "http", why: "its socket is bound at start (package opshttp)"},
	{key: "overload.enabled", why: "the sampling loop is started with it"},
	{key: "overload.interval", why: "the sampling loop is started with it"},
	{key: "overload.throttle_level", live: true, to: "the next sample"},                // Server.overloadPolicy, every sample
	{key: "overload.release_level", live: true, to: "the next sample"},                 // Server.overloadPolicy, every sample
	{key: "overload.min_client_rate", live: true, to: "the next sample"},               // Server.overloadPolicy, every sample
	{key: "overload.memory_limit", live: true, to: "the next sample"},                  // Server.memoryLimit, every sample
	{key: "client_limits.publish_rate", live: true, to: "CONNECTs from now on"},        // Server.clientLimits, when a CONNECT is accepted
	{key: "client_limits.publish_burst", live: true, to: "CONNECTs from now on"},       // Server.clientLimits, when a CONNECT is accepted
	{key: "client_limits.bytes_rate", live: true, to: "CONNECTs from now on"},          // Server.clientLimits, when a CONNECT is accepted
	{key: "client_limits.max_subscriptions", live: true, to: "SUBSCRIBEs from now on"}, // hook.maxSubscriptions, per SUBSCRIBE
	{key: "admin.enabled", why: "the admin API is mounted at start"},
	{key: "admin.users_file", live: true, to: "admin API requests from now on"}, // access.Access.Use, by serve's reload (cmd/propolis)
	{key: "admin.users", live: true, to: "admin API requests from now on"},      // access.Access.Use
	{key: "admin.roles", live: true, to: "admin API requests from now on"},      // access.Access.Use
	{key: "admin.tokens", live: true, to: "admin API requests from now on"},     // access.Access.Use
	{key: "admin.hosts", live: true, to: "admin API requests from now on"},      // access.Access.Use
	{key: "admin.session_ttl", live: true, to: "logins from now on"},            // access.Access.Use
	{key: "admin.audit_log", why: "the audit log is open"},
	{key: "trace.max_file_size", why: "the trace recorder is opened with it (package trace)"},
	{key: "trace.max_total_size", why: "the trace recorder is opened with it (package trace)"},
	{key: "cluster", why: "the cluster node is started with it (package cluster)"},
}

// Change is one key whose value differs between two configurations.
type Change struct {
	// Key is the dotted key path, such as "mqtt.write_timeout" or
	// "listeners[0].address".
	Key string
	// Old and New are the values as a configuration file writes them,
	// strings unquoted; "(none)" when the key is absent (a listener added
	// or removed, a tls block).
	Old, New string
	// Live says that a running broker applies the new value; AppliesTo
	// then says to what ("connections accepted from now on").
	Live      bool
	AppliesTo string
	// Logger says that the key is a setting of the broker's logger
	// (log.*), which the broker applies through the function it was given
	// for it (broker.Options.ApplyLog).
	Logger bool
	// Why says, for a key that cannot change, what holds its value.
	Why string
	// str says that the values are strings, which Refusal quotes.
	str bool
}

// absent is Change.Old or Change.New for a key one side does not have.
const absent = "(none)"

// Diff returns every key whose value differs between old and cur, in the
// order of the configuration reference. It looks at values only, not at
// Source or at files a value names (a TLS certificate replaced on disk is
// no change).
func Diff(old, cur *Config) []Change {
	a, b := old.values(), cur.values()
	var changes []Change
	for _, r := range reloadRules {
		for _, key := range unionKeys(a.keys, b.keys, r.key) {
			ov, ok := a.vals[key]
			if !ok {
				ov = absent
			}
			nv, ok := b.vals[key]
			if !ok {
				nv = absent
			}
			if ov != nv {
				changes = append(changes, Change{Key: key, Old: ov, New: nv, Live: r.live, AppliesTo: r.to, Logger: r.logger,
					Why: r.why, str: a.strs[key] || b.strs[key]})
			}
		}
	}
	return changes
}

// ErrReloadRefused is wrapped by ReloadError.
var ErrReloadRefused = errors.New("reload refused")

// ReloadError is a reload refused because it changes keys a running broker
// cannot change; the broker keeps its configuration entirely.
type ReloadError struct {
	// File is the file of the refused configuration (its Source).
	File string
	// Fixed are the changes of keys that cannot change while running.
	Fixed []Change
}

// Error gives one line per key, each naming the file, such as
// `reload propolis.yaml: data_dir cannot change while running (old "./data", new "./data2"): the store is open`.
func (e *ReloadError) Error() string {
	prefix := "reload: "
	if e.File != "" {
		prefix = "reload " + e.File + ": "
	}
	lines := make([]string, len(e.Fixed))
	for i, c := range e.Fixed {
		lines[i] = prefix + c.Refusal()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns ErrReloadRefused.
func (e *ReloadError) Unwrap() error { return ErrReloadRefused }

// Refusal is the message for a change that cannot be applied.
func (c Change) Refusal() string {
	return fmt.Sprintf("%s cannot change while running (old %s, new %s): %s", c.Key, c.quote(c.Old), c.quote(c.New), c.Why)
}

// quote quotes v if it is a string value.
func (c Change) quote(v string) string {
	if c.str && v != absent {
		return strconv.Quote(v)
	}
	return v
}

// CheckReload returns the changes from old to cur (Diff) if a running
// broker can apply them all, or a *ReloadError naming cur's file and each
// key that cannot change; cur must be valid. applyLog says that the broker
// can change its logger: without it the log.* keys cannot change either.
func CheckReload(old, cur *Config, applyLog bool) ([]Change, error) {
	changes := Diff(old, cur)
	var fixed []Change
	for i, c := range changes {
		if c.Logger && !applyLog {
			c.Live, c.AppliesTo = false, ""
			changes[i] = c
		}
		if !c.Live {
			fixed = append(fixed, c)
		}
	}
	if len(fixed) > 0 {
		return nil, &ReloadError{File: cur.Source, Fixed: fixed}
	}
	return changes, nil
}

// flat is a configuration as key path -> value, with its keys in order.
type flat struct {
	keys []string
	vals map[string]string
	strs map[string]bool // keys with string values
}

// values flattens c by its yaml tags: one entry per value, lists indexed
// ("listeners[0].address"), nil pointers left out.
func (c *Config) values() flat {
	f := flat{vals: map[string]string{}, strs: map[string]bool{}}
	f.add("", reflect.ValueOf(c).Elem())
	return f
}

// add adds v, found at path, and what it holds.
func (f *flat) add(path string, v reflect.Value) {
	switch {
	case v.Kind() == reflect.Pointer:
		if !v.IsNil() {
			f.add(path, v.Elem())
		}
	case v.Kind() == reflect.Slice:
		for i := range v.Len() {
			f.add(path+"["+strconv.Itoa(i)+"]", v.Index(i))
		}
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			field := v.Type().Field(i)
			name, _, _ := strings.Cut(field.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if path != "" {
				name = path + "." + name
			}
			if k := field.Tag.Get("key"); k != "" && field.Type.Kind() == reflect.Slice {
				f.addKeyed(name, k, v.Field(i))
				continue
			}
			if field.Tag.Get("secret") == "true" {
				// A secret (a password hash, a token digest) is never
				// logged: a change shows as a different fingerprint.
				f.keys = append(f.keys, name)
				f.vals[name] = Redact(v.Field(i).String())
				continue
			}
			f.add(name, v.Field(i))
		}
	default:
		f.keys = append(f.keys, path)
		f.vals[path] = fmt.Sprint(v.Interface())
		f.strs[path] = v.Kind() == reflect.String
	}
}

// addKeyed adds the list v (of structs), found at path, indexing each
// element by its field whose yaml name is key rather than by position
// (admin.users[alice].roles): inserting an element before another then
// changes only the keys of the new one, and the reload log reads as an
// element added, removed or changed. An element without that key, or one
// whose key another element already has, is indexed by position.
func (f *flat) addKeyed(path, key string, v reflect.Value) {
	seen := map[string]bool{}
	for i := range v.Len() {
		e := v.Index(i)
		idx := strconv.Itoa(i)
		for j := range e.NumField() {
			name, _, _ := strings.Cut(e.Type().Field(j).Tag.Get("yaml"), ",")
			if name == key {
				if s := e.Field(j).String(); s != "" && !seen[s] {
					seen[s], idx = true, s
				}
				break
			}
		}
		f.add(path+"["+idx+"]", e)
	}
}

// Redacted is what Redact writes for a secret, and what the admin API
// shows of one.
const Redacted = "REDACTED"

// Redact returns what a log line or a reload shows of a secret value (a
// field tagged secret:"true"): "" when empty, else Redacted with a short
// fingerprint of the value (the first 8 hex digits of its SHA-256), so that
// a change can be seen without the value.
func Redact(v string) string {
	if v == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(v))
	return Redacted + " " + hex.EncodeToString(sum[:4])
}

// unionKeys returns the keys of a then those only in b that rule covers.
func unionKeys(a, b []string, rule string) []string {
	var keys []string
	seen := map[string]bool{}
	for _, list := range [][]string{a, b} {
		for _, k := range list {
			if covers(rule, k) && !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// covers reports whether the rule for key path rule applies to key.
func covers(rule, key string) bool {
	return key == rule || strings.HasPrefix(key, rule+".") || strings.HasPrefix(key, rule+"[")
}
