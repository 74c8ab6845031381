package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// config is the configuration in effect.
type config struct {
	// Topics are the topic filters whose PUBLISH packets are enriched.
	Topics []string
	// TimeProperty and ClientProperty are the keys of the user properties
	// stamped with the time and the client id; "" adds none.
	TimeProperty, ClientProperty string
	// WrapText wraps plain-text payloads in JSON.
	WrapText bool
	// MaxText is the longest text wrapped, in bytes.
	MaxText int
}

// rawConfig is the manifest's config section as written: a key left out is
// nil, and takes its default.
type rawConfig struct {
	Topics         []string `json:"topics"`
	TimeProperty   *string  `json:"time_property"`
	ClientProperty *string  `json:"client_property"`
	WrapText       *bool    `json:"wrap_text"`
	MaxText        *int     `json:"max_text"`
}

// Defaults.
const (
	defaultTimeProperty   = "received-at"
	defaultClientProperty = "client-id"
	defaultMaxText        = 64 << 10
	// maxMaxText keeps a wrapped payload (up to six bytes per byte of text,
	// escaped) within the 16 MiB a payload change may carry.
	maxMaxText = 2 << 20
)

func defaultConfig() config {
	return config{Topics: []string{"#"}, TimeProperty: defaultTimeProperty, ClientProperty: defaultClientProperty,
		WrapText: true, MaxText: defaultMaxText}
}

// configError returns an error naming the config key at fault.
func configError(format string, args ...any) error {
	return errors.New("payload-enricher: config: " + fmt.Sprintf(format, args...))
}

// parseConfig reads the config section (JSON; empty means every default).
// Unknown keys are refused, so a misspelt key is not silently ignored.
func parseConfig(raw []byte) (config, error) {
	c := defaultConfig()
	if len(bytes.TrimSpace(raw)) > 0 {
		var in rawConfig
		if err := (propolis.StartInfo{Config: raw}).DecodeConfig(&in); err != nil {
			return config{}, errors.New("payload-enricher: " + err.Error())
		}
		if in.Topics != nil {
			c.Topics = in.Topics
		}
		if in.TimeProperty != nil {
			c.TimeProperty = *in.TimeProperty
		}
		if in.ClientProperty != nil {
			c.ClientProperty = *in.ClientProperty
		}
		if in.WrapText != nil {
			c.WrapText = *in.WrapText
		}
		if in.MaxText != nil {
			c.MaxText = *in.MaxText
		}
	}
	if len(c.Topics) == 0 {
		return config{}, configError("topics: empty; list at least one topic filter (\"#\" for every topic)")
	}
	for i, f := range c.Topics {
		if err := checkFilter(f); err != nil {
			return config{}, configError("topics[%d]: %q: %v", i, f, err)
		}
	}
	for _, k := range []struct{ name, v string }{{"time_property", c.TimeProperty}, {"client_property", c.ClientProperty}} {
		if !utf8.ValidString(k.v) || strings.ContainsRune(k.v, 0) || len(k.v) > 1024 {
			return config{}, configError("%s: %q is not a user property key (UTF-8, no U+0000, at most 1,024 bytes)", k.name, k.v)
		}
	}
	if c.TimeProperty != "" && c.TimeProperty == c.ClientProperty {
		return config{}, configError("time_property and client_property are both %q", c.TimeProperty)
	}
	if c.MaxText < 1 || c.MaxText > maxMaxText {
		return config{}, configError("max_text: %d out of range 1-%d", c.MaxText, maxMaxText)
	}
	return c, nil
}

// checkFilter checks a topic filter of the configuration: the SDK's
// syntax check, and no shared subscription prefix (a message's topic is
// matched, not a subscription).
func checkFilter(f string) error {
	if strings.HasPrefix(f, "$share/") {
		return errors.New("a shared subscription is not a topic filter here")
	}
	return propolis.CheckTopicFilter(f)
}
