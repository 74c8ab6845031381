// Package strictcfg decodes a shipped extension's configuration (the
// manifest's config section, handed over as JSON) strictly: an unknown key
// or a value of the wrong type is an error naming the key, so that a typo
// in a security extension's configuration refuses the start instead of
// being ignored.
package strictcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// Decode unmarshals the JSON config into v (a pointer to a struct with
// json tags) with the SDK's strict StartInfo.DecodeConfig: an unknown key
// or a mistyped value refuses the start, with its place under config
// named. An empty config or "null" leaves v as it was, so fields set
// before the call are defaults.
func Decode(config []byte, v any) error {
	config = bytes.TrimSpace(config)
	if len(config) == 0 || string(config) == "null" {
		return nil
	}
	return propolis.StartInfo{Config: config}.DecodeConfig(v)
}

// Duration parses a duration value of the config: a Go duration string
// ("30s", "1h30m") or a whole number of seconds, as the manifest's own
// durations. An empty string is def. The error names key and the bounds.
func Duration(key string, text DurationText, def, lo, hi time.Duration) (time.Duration, error) {
	s := string(text)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseUint(s, 10, 32)
		if nerr != nil {
			return 0, fmt.Errorf("config.%s: %q is not a duration such as \"30s\" or a whole number of seconds", key, s)
		}
		d = time.Duration(n) * time.Second
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("config.%s: %s out of range %s-%s", key, d, lo, hi)
	}
	return d, nil
}

// Strings is a config value that may be one string or a list of strings
// (an issuer, an audience).
type Strings []string

// UnmarshalJSON accepts "a" or ["a", "b"].
func (s *Strings) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = Strings{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want a string or a list of strings")
	}
	*s = many
	return nil
}

// DurationText is a duration value of the config as written: a string
// ("30s") or a whole number of seconds (YAML `ttl: 0`), kept as text for
// Duration to parse and check with the key's name.
type DurationText string

// UnmarshalJSON accepts a string or a whole number.
func (d *DurationText) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*d = DurationText(s)
		return nil
	}
	var n uint32
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New(`want a duration such as "30s" or a whole number of seconds`)
	}
	*d = DurationText(strconv.FormatUint(uint64(n), 10))
	return nil
}
