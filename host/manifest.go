package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/internal/yamlconf"
)

// ManifestFile is the name of the manifest in an extension folder.
const ManifestFile = "propolis-extension.yaml"

// Manifest describes one extension (the folder's propolis-extension.yaml).
type Manifest struct {
	// ID names the extension; it must equal the folder name.
	ID string `yaml:"id"`
	// Name is a human-readable name.
	Name string `yaml:"name"`
	// Version is the extension's version (shown, and told to a replacing
	// version on hot reload).
	Version string `yaml:"version"`
	// Author is who wrote it.
	Author string `yaml:"author"`
	// Priority orders every chain: higher first, ties by id. Default 0.
	Priority int `yaml:"priority"`
	// StartPriority orders start-up: higher first. Default 0.
	StartPriority int `yaml:"start-priority"`
	// Module is the .wasm file, relative to the folder.
	Module string `yaml:"module"`
	// ABI is the oldest ABI version the extension needs, "1.0" style: a
	// broker older than it refuses the folder before reading the module,
	// and a module whose marker answers an older minor is refused at
	// load (ABI.md section 2). Default: none asked for.
	ABI string `yaml:"abi"`
	// Limits bounds the extension's resources.
	Limits Limits `yaml:"limits"`
	// Services lists the host services the extension may call (the names
	// of abi.ServiceNames). Default none.
	Services []string `yaml:"services"`
	// Tick is how often the host calls the module's propolis_tick export,
	// 100ms to 24h; 0 (the default) never. The module must export (and
	// declare) propolis_tick when it is set.
	Tick yamlconf.Duration `yaml:"tick"`
	// HTTP says where the extension's outbound HTTP (service http) may go.
	HTTP HTTPAccess `yaml:"http"`
	// Files is "read" to let the module read its own folder, read-only,
	// through WASI at FolderMount (its user and rule files, say); "" or
	// "none" (the default): the module sees no file system.
	Files string `yaml:"files"`
	// Config is free-form: any YAML value, handed to the extension at
	// start as JSON (see configValue for the conversion, abi/MANIFEST.md
	// for its rules), at most MaxConfig bytes of it. Default nil, sent as
	// {}.
	Config any `yaml:"config"`
}

// Limits are an extension's resource limits. A limit that is absent or 0
// takes its default.
type Limits struct {
	// Memory is each instance's linear-memory limit, 64 KiB to 4 GiB,
	// rounded up to whole 64 KiB pages. Default 64 MiB.
	Memory yamlconf.ByteSize `yaml:"memory"`
	// CallDeadline bounds every call into the extension, 1ms to 1m.
	// Default 100ms.
	CallDeadline yamlconf.Duration `yaml:"call_deadline"`
	// PoolSize is how many instances run at once, 1 to 256. Default 4.
	PoolSize int `yaml:"pool_size"`
	// ServiceRate is the host service calls per second the extension asks
	// for, and ServiceBurst how many it may make at once beyond that rate;
	// the broker's caps (extension_services) apply when these are absent
	// or higher. 0 to 1,000,000 each.
	ServiceRate  int `yaml:"service_rate"`
	ServiceBurst int `yaml:"service_burst"`
	// AuthenticateDeadline bounds a call of propolis_authenticate, which
	// may wait on an identity service, 1ms to 1m. Default 2s. The broker's
	// mqtt.connect_timeout (default 10s) still ends a CONNECT that takes
	// longer than it.
	AuthenticateDeadline yamlconf.Duration `yaml:"authenticate_deadline"`
	// MaxPoolSize is how many instances the pool may grow to when every
	// instance is busy, PoolSize to 1024. Default 4 x PoolSize (at most
	// 1024). Authenticate calls hold at most MaxPoolSize - PoolSize of
	// them when the extension also authorizes (see pool.go).
	MaxPoolSize int `yaml:"max_pool_size"`
	// AuthCacheEntries bounds the answers the host keeps for the
	// extension's cache_result, 1 to 1,000,000. Default 10,000.
	AuthCacheEntries int `yaml:"auth_cache_entries"`
	// AuthorizeCacheEntries bounds the authorize answers (cache_result,
	// ABI 1.4) the host keeps for the extension per connection, 1 to
	// 1,024. Default 32.
	AuthorizeCacheEntries int `yaml:"authorize_cache_entries"`
}

// HTTPAccess is the manifest's http section: the hosts http_request may
// reach and how large an answer it takes.
type HTTPAccess struct {
	// Hosts are the allowed hosts, as HOST or HOST:PORT (HOST alone: the
	// scheme's port, 80 or 443); HOST is a DNS name, an IP address
	// ([::1] for IPv6) or *.DOMAIN for any name below DOMAIN. Default none.
	Hosts []string `yaml:"hosts"`
	// MaxResponse bounds a response (status, headers and body), 1KiB to
	// 16MiB. Default 1MiB. A larger one is TOO_LARGE.
	MaxResponse yamlconf.ByteSize `yaml:"max_response"`
	// CAFile is a PEM file inside the extension folder whose certificates
	// are trusted for https besides the system's (a private identity
	// service's CA). Default none.
	CAFile string `yaml:"ca_file"`
}

// Defaults for Limits.
const (
	DefaultMemory       = 64 << 20
	DefaultCallDeadline = 100 * time.Millisecond
	DefaultPoolSize     = 4
	// DefaultAuthenticateDeadline is limits.authenticate_deadline's default.
	DefaultAuthenticateDeadline = 2 * time.Second
	// DefaultAuthCacheEntries is limits.auth_cache_entries's default.
	DefaultAuthCacheEntries = 10000
	// DefaultAuthorizeCacheEntries is limits.authorize_cache_entries's
	// default.
	DefaultAuthorizeCacheEntries = 32
	// DefaultMaxResponse is http.max_response's default.
	DefaultMaxResponse = 1 << 20
)

// Ranges of Limits, checked by ParseManifest.
const (
	minMemory       = 64 << 10
	maxMemory       = 4 << 30
	minCallDeadline = yamlconf.Duration(time.Millisecond)
	maxCallDeadline = yamlconf.Duration(time.Minute)
	minPoolSize     = 1
	maxPoolSize     = 256
	maxServiceRate  = 1000000
	minTick         = yamlconf.Duration(100 * time.Millisecond)
	maxTick         = yamlconf.Duration(24 * time.Hour)
	// maxMaxPoolSize bounds limits.max_pool_size; its default is
	// poolGrowth x pool_size, at most maxMaxPoolSize.
	maxMaxPoolSize           = 1024
	poolGrowth               = 4
	maxAuthCacheEntries      = 1000000
	maxAuthorizeCacheEntries = 1024
	minMaxResponse           = 1 << 10
	maxMaxResponse           = 16 << 20
)

// Values of the manifest's files key.
const (
	// FilesNone gives the module no file system (also the empty value).
	FilesNone = "none"
	// FilesRead mounts the extension's folder read-only at FolderMount.
	FilesRead = "read"
)

// FolderMount is where a module whose manifest says "files: read" finds
// its extension folder, read-only, through WASI (Go: os.ReadFile(
// "/extension/users")). The host mounts nothing else.
const FolderMount = "/extension"

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ErrManifest wraps every problem with a manifest.
var ErrManifest = errors.New("bad manifest")

// LoadManifest reads and validates dir/propolis-extension.yaml, whose id
// must equal the folder's name. The folder scanner and Inspect call it; it
// reads at most 1 MiB. A file that cannot be read gives
// ErrManifest wrapping the read error; a bad file gives what ParseManifest
// gives.
func LoadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	data, err := readRegular(path, maxManifest, os.ReadFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	return parseManifest(path, data, filepath.Base(dir))
}

// ParseManifest decodes and validates a manifest read from path, and fills
// in the default limits. Every problem is reported at once: the error
// wraps ErrManifest and yamlconf.Errors, one line per problem, as
//
//	bad manifest: PATH:LINE:COLUMN: KEY: problem
//	PATH:LINE:COLUMN: KEY: problem
func ParseManifest(path string, data []byte) (*Manifest, error) {
	return parseManifest(path, data, "")
}

// parseManifest is ParseManifest; a non-empty folder is the name the id
// must equal.
func parseManifest(path string, data []byte, folder string) (*Manifest, error) {
	m := &Manifest{}
	doc := yamlconf.Decode(path, data, m)
	doc.Add(m.validate(folder)...)
	if err := doc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	return m, nil
}

// parseABI reads an abi value, "MAJOR.MINOR" written exactly so.
func parseABI(s string) (major, minor uint32, ok bool) {
	if _, err := fmt.Sscanf(s, "%d.%d", &major, &minor); err != nil || fmt.Sprintf("%d.%d", major, minor) != s {
		return 0, 0, false
	}
	return major, minor, true
}

// neededMinor returns the ABI minor version the manifest's abi asks for,
// and false when it asks for none (or is malformed: validate reports that).
func (m *Manifest) neededMinor() (uint32, bool) {
	major, minor, ok := parseABI(m.ABI)
	return minor, ok && major == abi.Major
}

// validate fills in the default limits and returns every problem in m,
// without positions; a non-empty folder is the name the id must equal.
func (m *Manifest) validate(folder string) yamlconf.Errors {
	var errs yamlconf.Errors
	bad := func(key, format string, a ...any) {
		errs = append(errs, &yamlconf.Error{Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	switch {
	case m.ID == "":
		bad("id", "required")
	case !idPattern.MatchString(m.ID):
		bad("id", "want 1-64 of a-z 0-9 . _ -, starting with a letter or digit, got %q", m.ID)
	case folder != "" && m.ID != folder:
		bad("id", "%q differs from its folder name %q", m.ID, folder)
	}
	if m.Version == "" {
		bad("version", "required")
	}
	if m.Module == "" {
		bad("module", "required")
	} else if filepath.IsAbs(m.Module) || strings.Contains(filepath.ToSlash(m.Module), "..") {
		bad("module", "must be a file inside the extension folder, got %q", m.Module)
	}
	if m.ABI != "" {
		if major, minor, ok := parseABI(m.ABI); !ok {
			bad("abi", "want MAJOR.MINOR such as %q, got %q", abi.Version, m.ABI)
		} else if major != abi.Major || minor > abi.Minor {
			bad("abi", "%q is not supported (this broker runs ABI %d.0 to %s)", m.ABI, abi.Major, abi.Version)
		}
	}
	l := &m.Limits
	if l.Memory == 0 {
		l.Memory = DefaultMemory
	} else if l.Memory < minMemory || l.Memory > maxMemory {
		bad("limits.memory", "%v out of range %v-%v", l.Memory, yamlconf.ByteSize(minMemory), yamlconf.ByteSize(maxMemory))
	}
	if l.CallDeadline == 0 {
		l.CallDeadline = yamlconf.Duration(DefaultCallDeadline)
	} else if l.CallDeadline < minCallDeadline || l.CallDeadline > maxCallDeadline {
		bad("limits.call_deadline", "%v out of range %v-%v", l.CallDeadline, minCallDeadline, maxCallDeadline)
	}
	if l.PoolSize == 0 {
		l.PoolSize = DefaultPoolSize
	} else if l.PoolSize < minPoolSize || l.PoolSize > maxPoolSize {
		bad("limits.pool_size", "%d out of range %d-%d", l.PoolSize, minPoolSize, maxPoolSize)
	}
	if l.ServiceRate < 0 || l.ServiceRate > maxServiceRate {
		bad("limits.service_rate", "%d out of range 0-%d calls per second", l.ServiceRate, maxServiceRate)
	}
	if l.ServiceBurst < 0 || l.ServiceBurst > maxServiceRate {
		bad("limits.service_burst", "%d out of range 0-%d", l.ServiceBurst, maxServiceRate)
	}
	if m.Tick != 0 && (m.Tick < minTick || m.Tick > maxTick) {
		bad("tick", "%v out of range %v-%v", m.Tick, minTick, maxTick)
	}
	if l.AuthenticateDeadline == 0 {
		l.AuthenticateDeadline = yamlconf.Duration(DefaultAuthenticateDeadline)
	} else if l.AuthenticateDeadline < minCallDeadline || l.AuthenticateDeadline > maxCallDeadline {
		bad("limits.authenticate_deadline", "%v out of range %v-%v", l.AuthenticateDeadline, minCallDeadline, maxCallDeadline)
	}
	if l.MaxPoolSize == 0 {
		l.MaxPoolSize = min(poolGrowth*l.PoolSize, maxMaxPoolSize)
	} else if l.MaxPoolSize < 1 || l.MaxPoolSize > maxMaxPoolSize {
		bad("limits.max_pool_size", "%d out of range 1-%d", l.MaxPoolSize, maxMaxPoolSize)
	} else if l.MaxPoolSize < l.PoolSize {
		bad("limits.max_pool_size", "%d is less than limits.pool_size (%d)", l.MaxPoolSize, l.PoolSize)
	}
	if l.AuthCacheEntries == 0 {
		l.AuthCacheEntries = DefaultAuthCacheEntries
	} else if l.AuthCacheEntries < 1 || l.AuthCacheEntries > maxAuthCacheEntries {
		bad("limits.auth_cache_entries", "%d out of range 1-%d", l.AuthCacheEntries, maxAuthCacheEntries)
	}
	if l.AuthorizeCacheEntries == 0 {
		l.AuthorizeCacheEntries = DefaultAuthorizeCacheEntries
	} else if l.AuthorizeCacheEntries < 1 || l.AuthorizeCacheEntries > maxAuthorizeCacheEntries {
		bad("limits.authorize_cache_entries", "%d out of range 1-%d", l.AuthorizeCacheEntries, maxAuthorizeCacheEntries)
	}
	errs = append(errs, m.validateHTTP()...)
	if m.Files != "" && m.Files != FilesNone && m.Files != FilesRead {
		bad("files", "want %q or %q, got %q", FilesNone, FilesRead, m.Files)
	}
	seen := map[string]bool{}
	for i, name := range m.Services {
		key := fmt.Sprintf("services[%d]", i)
		if _, ok := abi.ServiceByName(name); !ok {
			bad(key, "unknown host service %q (ABI %s has: %s)", name, abi.Version, strings.Join(abi.ServiceNames[1:], ", "))
		} else if seen[name] {
			bad(key, "%q is listed twice", name)
		}
		seen[name] = true
	}
	if seen[abi.ServiceHTTP.String()] && len(m.HTTP.Hosts) == 0 {
		bad("services", "grants %s but http.hosts lists no host to call", abi.ServiceHTTP)
	}
	_, cerrs := renderConfig(m.Config)
	return append(errs, cerrs...)
}

// MaxConfig is the largest config section a manifest may have, as the
// JSON a START record carries: 1 MiB. (The manifest file itself is at most
// 1 MiB, but YAML aliases can repeat a value many times.)
const MaxConfig = 1 << 20

// configJSON renders the manifest's config section as JSON for the START
// record, by configValue's rules, without HTML escaping; nil (config
// absent or null) is "{}". Its error lists every problem renderConfig
// finds.
func configJSON(v any) (string, error) {
	s, probs := renderConfig(v)
	if len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Key + ": " + p.Msg
		}
		return "", errors.New(strings.Join(msgs, "; "))
	}
	return s, nil
}

// renderConfig is configJSON, returning the problems as manifest errors
// keyed by their path under "config" (config.ports, config.levels[2]).
func renderConfig(v any) (string, yamlconf.Errors) {
	if v == nil {
		return "{}", nil
	}
	var probs yamlconf.Errors
	norm := configValue(v, "config", &probs)
	if len(probs) > 0 {
		return "", probs
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(norm); err != nil { // configValue leaves nothing json refuses
		return "", yamlconf.Errors{{Key: "config", Msg: "cannot be represented as JSON: " + err.Error()}}
	}
	out := strings.TrimSuffix(b.String(), "\n")
	if len(out) > MaxConfig {
		return "", yamlconf.Errors{{Key: "config", Msg: fmt.Sprintf("%d bytes as JSON, more than the limit of %d (1 MiB)", len(out), MaxConfig)}}
	}
	return out, nil
}

// configValue turns a YAML value, as yamlconf decodes it into an any,
// into one encoding/json writes without loss, and records a problem for
// each part JSON cannot represent faithfully:
//
//   - mappings become objects; a key that is not a string but an integer,
//     a float or a boolean becomes its decimal or true/false text (1 -> "1");
//     a null or non-scalar key, or two keys with the same text, is a problem;
//   - sequences become arrays, null null, booleans and strings themselves;
//   - integers are exact (int64 or uint64); an integer beyond 64 bits and a
//     float are float64 (17 significant digits); .inf and .nan are problems;
//   - an unquoted timestamp (2024-01-02, 2024-01-02T10:00:00Z) becomes an
//     RFC 3339 string ("2024-01-02T00:00:00Z"); quote it to keep it as
//     written;
//   - a !!binary value becomes the string of its bytes, which must be
//     UTF-8 (JSON would replace invalid bytes).
func configValue(v any, path string, probs *yamlconf.Errors) any {
	bad := func(format string, a ...any) {
		*probs = append(*probs, &yamlconf.Error{Key: path, Msg: fmt.Sprintf(format, a...)})
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) { // problems in a stable order
			out[k] = configValue(x[k], path+"."+k, probs)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		keys := slices.SortedFunc(maps.Keys(x), func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		for _, k := range keys {
			e := x[k]
			key, ok := configKey(k)
			if !ok {
				bad("key %s is not a string, a number or a boolean: JSON object keys are strings", describeConfig(k))
				continue
			}
			if _, dup := out[key]; dup {
				bad("two keys read as %q (a key that is not a string becomes its text)", key)
				continue
			}
			out[key] = configValue(e, path+"."+key, probs)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = configValue(e, fmt.Sprintf("%s[%d]", path, i), probs)
		}
		return out
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			bad("%v has no JSON form", x)
		}
		return x
	case string:
		if !utf8.ValidString(x) {
			bad("not valid UTF-8 (a !!binary value?): JSON strings are text")
		}
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case nil, bool, int, int64, uint64:
		return x
	}
	bad("unsupported value %s", describeConfig(v))
	return nil
}

// configKey returns the JSON object key for a YAML mapping key.
func configKey(k any) (string, bool) {
	switch x := k.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return "", false
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// describeConfig names a YAML value in an error.
func describeConfig(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any, map[any]any:
		return "(a mapping)"
	case []any:
		return "(a sequence)"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

// peekManifest reads the id and module of the manifest at path leniently,
// without validating anything: for the scanner, which must notice a
// change to (or name the owner of) a manifest that does not load. Both are
// "" when the file cannot be read or parsed.
func peekManifest(path string) (id, module string) {
	data, err := readRegular(path, maxManifest, os.ReadFile)
	if err != nil {
		return "", ""
	}
	return peekManifestData(data)
}

// peekManifestData is peekManifest on the file's bytes.
func peekManifestData(data []byte) (id, module string) {
	var m Manifest
	_ = yamlconf.Decode("", data, &m) // problems are reported when it is loaded
	return m.ID, m.Module
}
