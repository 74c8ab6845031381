package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker/config"
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
	// Services lists the host services the extension may call. ABI 1.0
	// has none yet: a non-empty list is accepted and logged as ignored.
	Services []string `yaml:"services"`
	// Config is handed to the extension at start, as JSON.
	Config any `yaml:"config"`
}

// Limits are an extension's resource limits.
type Limits struct {
	// Memory is each instance's linear-memory limit; default 64 MiB,
	// rounded up to whole 64 KiB pages.
	Memory config.ByteSize `yaml:"memory"`
	// CallDeadline bounds every call into the extension; default 100ms,
	// 1ms to 1m.
	CallDeadline config.Duration `yaml:"call_deadline"`
	// PoolSize is how many instances run at once; default 4.
	PoolSize int `yaml:"pool_size"`
}

// Defaults for Limits.
const (
	DefaultMemory       = 64 << 20
	DefaultCallDeadline = 100 * time.Millisecond
	DefaultPoolSize     = 4
)

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ErrManifest wraps every problem with a manifest.
var ErrManifest = errors.New("bad manifest")

// LoadManifest reads and validates dir/propolis-extension.yaml. Errors
// name the file, and the line and key where yaml reports them.
func LoadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	data, err := readRegular(path, maxManifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrManifest, err)
	}
	m, err := ParseManifest(path, data)
	if err != nil {
		return nil, err
	}
	if base := filepath.Base(dir); m.ID != base {
		return nil, fmt.Errorf("%w: %s: id %q differs from its folder name %q", ErrManifest, path, m.ID, base)
	}
	return m, nil
}

// ParseManifest decodes and validates a manifest read from path.
func ParseManifest(path string, data []byte) (*Manifest, error) {
	m := &Manifest{}
	var problems []string
	if err := decodeManifest(path, data, m); err != nil {
		return nil, err
	}
	bad := func(key, format string, a ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s: %s", path, key, fmt.Sprintf(format, a...)))
	}
	if !idPattern.MatchString(m.ID) {
		bad("id", "%q: want 1-64 of a-z 0-9 . _ -, starting with a letter or digit", m.ID)
	}
	if m.Version == "" {
		bad("version", "required")
	}
	if m.Module == "" {
		bad("module", "required")
	} else if filepath.IsAbs(m.Module) || strings.Contains(filepath.ToSlash(m.Module), "..") {
		bad("module", "%q: must be a file inside the extension folder", m.Module)
	}
	if m.ABI != "" {
		var major, minor int
		if _, err := fmt.Sscanf(m.ABI, "%d.%d", &major, &minor); err != nil || fmt.Sprintf("%d.%d", major, minor) != m.ABI {
			bad("abi", "%q: want MAJOR.MINOR, e.g. %q", m.ABI, abi.Version)
		} else if major != abi.Major || minor > abi.Minor {
			bad("abi", "%q is not supported: this broker runs ABI %d.0 to %s", m.ABI, abi.Major, abi.Version)
		}
	}
	if m.Limits.Memory == 0 {
		m.Limits.Memory = DefaultMemory
	} else if m.Limits.Memory < 64<<10 || m.Limits.Memory > 4<<30 {
		bad("limits.memory", "%v out of range 64KiB-4GiB", m.Limits.Memory)
	}
	if m.Limits.CallDeadline == 0 {
		m.Limits.CallDeadline = config.Duration(DefaultCallDeadline)
	} else if d := time.Duration(m.Limits.CallDeadline); d < time.Millisecond || d > time.Minute {
		bad("limits.call_deadline", "%v out of range 1ms-1m", m.Limits.CallDeadline)
	}
	if m.Limits.PoolSize == 0 {
		m.Limits.PoolSize = DefaultPoolSize
	} else if m.Limits.PoolSize < 1 || m.Limits.PoolSize > 256 {
		bad("limits.pool_size", "%d out of range 1-256", m.Limits.PoolSize)
	}
	if m.Config != nil {
		if _, err := configJSON(m.Config); err != nil {
			bad("config", "cannot be represented as JSON: %v", err)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrManifest, strings.Join(problems, "; "))
	}
	return m, nil
}

// decodeManifest decodes data into m key by key, so that an unknown key or
// a value of the wrong type is reported as FILE:LINE:COLUMN: KEY: problem.
// Every problem is reported, not just the first.
func decodeManifest(path string, data []byte, m *Manifest) error {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return fmt.Errorf("%w: %s: %s", ErrManifest, path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%w: %s: want a mapping of keys (id, name, version, ...)", ErrManifest, path)
	}
	top := map[string]any{"id": &m.ID, "name": &m.Name, "version": &m.Version, "author": &m.Author,
		"priority": &m.Priority, "start-priority": &m.StartPriority, "module": &m.Module, "abi": &m.ABI,
		"limits": nil, "services": &m.Services, "config": &m.Config}
	limits := map[string]any{"memory": &m.Limits.Memory, "call_deadline": &m.Limits.CallDeadline, "pool_size": &m.Limits.PoolSize}
	var problems []string
	var walk func(n *yaml.Node, prefix string, fields map[string]any)
	walk = func(n *yaml.Node, prefix string, fields map[string]any) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := prefix + k.Value
			target, known := fields[k.Value]
			switch {
			case !known:
				problems = append(problems, fmt.Sprintf("%s:%d:%d: %s: unknown key (allowed: %s)", path, k.Line, k.Column, key, keyList(fields)))
			case k.Value == "limits" && prefix == "":
				if v.Kind != yaml.MappingNode {
					problems = append(problems, fmt.Sprintf("%s:%d:%d: %s: want a mapping", path, v.Line, v.Column, key))
					continue
				}
				walk(v, "limits.", limits)
			default:
				if err := v.Decode(target); err != nil {
					msg := err.Error()
					if i := strings.LastIndex(msg, ": "); i >= 0 {
						msg = msg[i+2:]
					}
					problems = append(problems, fmt.Sprintf("%s:%d:%d: %s: %s", path, v.Line, v.Column, key, msg))
				}
			}
		}
	}
	walk(doc.Content[0], "", top)
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrManifest, strings.Join(problems, "; "))
	}
	return nil
}

// keyList lists a mapping's allowed keys, sorted.
func keyList(fields map[string]any) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
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
