// Command topic-lint is a Propolis extension that holds every PUBLISH
// topic to a naming convention: no empty level, at most a number of
// levels, each level short and made of lower-case letters, digits, '-',
// '_' and '.' (upper case too when configured), and optionally a first
// level from a list. A topic that breaks a rule is refused with 0x90
// (topic name invalid) and a reason naming the rule; any other is passed
// on (NEXT) to the next extension and the client's permissions. It does
// not authenticate, so it is combined with a security extension.
//
// SUBSCRIBE filters are held to the same rules, level by level, where a
// level may also be the wildcard '+', the last one '#' (a filter starting
// with a wildcard may match any first level). A shared subscription's
// "$share/<group>/" is not linted, nor a filter starting with '$' (the
// broker's own topics, such as $SYS/#). A filter that breaks a rule is
// refused with 0x8F (topic filter invalid).
//
// Its verdicts depend on the topic or filter alone, so it marks each one
// with CacheVerdict (ABI 1.4): the broker then answers the same topic or
// filter on the same connection without calling the extension, for
// cache_seconds. A device publishing to a few topics costs a few calls per
// period instead of one per message. It is the example of the
// authorization cache, and the benchmark harness's "Wasm
// authorize_publish, verdicts kept" case.
//
// Configuration:
//
//	config:
//	  max_levels: 8          # default 8
//	  max_level_length: 64   # bytes per level, default 64
//	  uppercase: false       # allow A-Z too; default false
//	  roots: [devices, apps] # allowed first levels; default: any
//	  cache_seconds: 300     # how long verdicts are kept; 0: never (a call per PUBLISH)
package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, AuthorizePublish: authorizePublish, AuthorizeSubscribe: authorizeSubscribe})
}

func main() {}

// rules is the manifest's config section.
type rules struct {
	MaxLevels      int      `json:"max_levels"`
	MaxLevelLength int      `json:"max_level_length"`
	Uppercase      bool     `json:"uppercase"`
	Roots          []string `json:"roots"`
	CacheSeconds   int      `json:"cache_seconds"`
}

// defaults are the rules without configuration.
var defaults = rules{MaxLevels: 8, MaxLevelLength: 64, CacheSeconds: 300}

var cfg = defaults

func start(info propolis.StartInfo) error {
	c := defaults
	if err := info.DecodeConfig(&c); err != nil {
		return errors.New("topic-lint: " + err.Error())
	}
	if err := c.check(); err != nil {
		return errors.New("topic-lint: " + err.Error())
	}
	cfg = c
	if info.Instance == 0 {
		propolis.Infof("topic-lint: at most %d levels of %d bytes, upper case %v, roots %v, verdicts kept %ds",
			c.MaxLevels, c.MaxLevelLength, c.Uppercase, c.Roots, c.CacheSeconds)
	}
	return nil
}

// check refuses a configuration no topic could meet, or that the broker
// would refuse.
func (r *rules) check() error {
	switch {
	case r.MaxLevels < 1:
		return fmt.Errorf("config.max_levels: %d, want at least 1", r.MaxLevels)
	case r.MaxLevelLength < 1:
		return fmt.Errorf("config.max_level_length: %d, want at least 1", r.MaxLevelLength)
	case r.CacheSeconds < 0 || time.Duration(r.CacheSeconds)*time.Second > propolis.MaxCacheFor:
		return fmt.Errorf("config.cache_seconds: %d, want 0 to %d", r.CacheSeconds, int(propolis.MaxCacheFor/time.Second))
	}
	for i, root := range r.Roots {
		if reason := r.level(root); reason != "" {
			return fmt.Errorf("config.roots[%d]: %q: %s", i, root, reason)
		}
	}
	return nil
}

// authorizePublish refuses a topic that breaks a rule and passes the rest
// on; either verdict is kept for cache_seconds.
func authorizePublish(p *propolis.Publish) propolis.Verdict {
	keep()
	if reason := cfg.lint(p.Topic, false); reason != "" {
		return propolis.Deny(propolis.CodeTopicNameInvalid, "topic-lint: "+reason)
	}
	return propolis.Next()
}

// authorizeSubscribe refuses a filter that breaks a rule and passes the
// rest on; either verdict is kept for cache_seconds.
func authorizeSubscribe(s *propolis.Subscribe) propolis.Verdict {
	keep()
	filter := s.Filter
	if s.Shared { // "$share/<group>/<filter>": the group is not a topic level
		if _, rest, ok := strings.Cut(strings.TrimPrefix(filter, "$share/"), "/"); ok {
			filter = rest
		}
	}
	if strings.HasPrefix(filter, "$") {
		return propolis.Next()
	}
	if reason := cfg.lint(filter, true); reason != "" {
		return propolis.Deny(propolis.CodeTopicFilterInvalid, "topic-lint: "+reason)
	}
	return propolis.Next()
}

// keep marks the verdict being decided to be kept for cache_seconds.
func keep() {
	if cfg.CacheSeconds > 0 {
		if err := propolis.CacheVerdict(time.Duration(cfg.CacheSeconds) * time.Second); err != nil {
			propolis.Warnf("topic-lint: keeping the verdict: %v", err) // not expected: the call is valid here
		}
	}
}

// lint returns why a topic, or a filter when filter is set (its levels may
// be the wildcards '+' and, last, '#'), breaks the rules, or "".
func (r *rules) lint(topic string, filter bool) string {
	n := strings.Count(topic, "/") + 1
	if n > r.MaxLevels {
		return strconv.Itoa(n) + " levels, at most " + strconv.Itoa(r.MaxLevels)
	}
	i := 0
	for level := range strings.SplitSeq(topic, "/") {
		i++
		if filter && (level == "+" || level == "#" && i == n) {
			continue
		}
		if reason := r.level(level); reason != "" {
			return "level " + strconv.Itoa(i) + " " + strconv.Quote(level) + ": " + reason
		}
	}
	root, _, _ := strings.Cut(topic, "/")
	if len(r.Roots) > 0 && !(filter && (root == "+" || root == "#")) {
		for _, allowed := range r.Roots {
			if root == allowed {
				return ""
			}
		}
		return "first level " + strconv.Quote(root) + " is not one of " + strings.Join(r.Roots, ", ")
	}
	return ""
}

// level returns why one level breaks the rules, or "".
func (r *rules) level(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > r.MaxLevelLength {
		return strconv.Itoa(len(s)) + " bytes, at most " + strconv.Itoa(r.MaxLevelLength)
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		case c >= 'A' && c <= 'Z' && r.Uppercase:
		default:
			return "character " + strconv.QuoteRune(c) + " is not allowed (" + r.allowed() + ")"
		}
	}
	return ""
}

// allowed names the characters a level may have.
func (r *rules) allowed() string {
	if r.Uppercase {
		return "a-z A-Z 0-9 - _ ."
	}
	return "a-z 0-9 - _ ."
}
