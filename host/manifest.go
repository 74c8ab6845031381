package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

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
	// ABI is the ABI version the module was built for, "1.0" style;
	// default: the host's.
	ABI string `yaml:"abi"`
	// Limits bounds the extension's resources.
	Limits Limits `yaml:"limits"`
	// Services lists the host services the extension may call. ABI 1.1
	// has none yet: a non-empty list is accepted and logged as ignored.
	Services []string `yaml:"services"`
	// Config is free-form: any YAML value, handed to the extension at
	// start as JSON. It must be representable as JSON (string keys, finite
	// numbers). Default nil, sent as {}.
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
}

// Defaults for Limits.
const (
	DefaultMemory       = 64 << 20
	DefaultCallDeadline = 100 * time.Millisecond
	DefaultPoolSize     = 4
)

// Ranges of Limits, checked by ParseManifest.
const (
	minMemory       = 64 << 10
	maxMemory       = 4 << 30
	minCallDeadline = yamlconf.Duration(time.Millisecond)
	maxCallDeadline = yamlconf.Duration(time.Minute)
	minPoolSize     = 1
	maxPoolSize     = 256
)

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
	data, err := readRegular(path, maxManifest)
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
		var major, minor int
		if _, err := fmt.Sscanf(m.ABI, "%d.%d", &major, &minor); err != nil || fmt.Sprintf("%d.%d", major, minor) != m.ABI {
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
	if _, err := configJSON(m.Config); err != nil {
		bad("config", "cannot be represented as JSON: %v", err)
	}
	return errs
}

// configJSON renders the manifest's config section as JSON for the START
// record. yaml.v3 decodes mappings as map[string]any, which encoding/json
// handles.
func configJSON(v any) (string, error) {
	if v == nil {
		return "{}", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// peekManifest reads the id and module of the manifest at path leniently,
// without validating anything: for the scanner, which must notice a
// change to (or name the owner of) a manifest that does not load. Both are
// "" when the file cannot be read or parsed.
func peekManifest(path string) (id, module string) {
	data, err := readRegular(path, maxManifest)
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
