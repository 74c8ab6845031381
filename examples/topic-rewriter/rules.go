package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// maxWildcards bounds the wildcards of one rule's from: the captures of a
// match live in a fixed array, so matching allocates nothing.
const maxWildcards = 16

// maxTopic is the longest topic name MQTT can carry, in bytes.
const maxTopic = 65535

// rule is one compiled mapping.
type rule struct {
	// from is the topic filter as configured, levels its levels.
	from   string
	levels []string
	// to is the template, as literal pieces and captures: piece i is
	// literal text when capture[i] is 0, else the capture of that number.
	pieces   []string
	captures []int
}

// config is the configuration in effect.
type config struct {
	Rules []rule
	// OriginalProperty is the key of a user property that keeps the
	// original topic of a rewritten message; "" adds none.
	OriginalProperty string
}

// rawConfig is the manifest's config section as written.
type rawConfig struct {
	Rules []struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"rules"`
	OriginalProperty string `json:"original_topic_property"`
}

// configError returns an error naming the config key at fault.
func configError(format string, args ...any) error {
	return errors.New("topic-rewriter: config: " + fmt.Sprintf(format, args...))
}

// parseConfig reads the config section (JSON). Unknown keys are refused,
// so a misspelt key is not silently ignored; at least one rule is needed.
func parseConfig(raw []byte) (config, error) {
	var in rawConfig
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := (propolis.StartInfo{Config: raw}).DecodeConfig(&in); err != nil {
			return config{}, errors.New("topic-rewriter: " + err.Error())
		}
	}
	if len(in.Rules) == 0 {
		return config{}, configError("rules: none; give at least one {from, to} rule")
	}
	c := config{OriginalProperty: in.OriginalProperty}
	for i, r := range in.Rules {
		cr, err := compile(r.From, r.To)
		if err != nil {
			return config{}, configError("rules[%d].%v", i, err)
		}
		c.Rules = append(c.Rules, cr)
	}
	if p := c.OriginalProperty; !utf8.ValidString(p) || strings.ContainsRune(p, 0) || len(p) > 1024 {
		return config{}, configError("original_topic_property: %q is not a user property key (UTF-8, no U+0000, at most 1,024 bytes)", p)
	}
	return c, nil
}

// compile checks and compiles one rule. Its errors start with the key at
// fault ("from: ..." or "to: ...").
func compile(from, to string) (rule, error) {
	if err := checkFilter(from); err != nil {
		return rule{}, fmt.Errorf("from: %q: %v", from, err)
	}
	r := rule{from: from, levels: strings.Split(from, "/")}
	wildcards := strings.Count(from, "+") + strings.Count(from, "#")
	if wildcards > maxWildcards {
		return rule{}, fmt.Errorf("from: %q: %d wildcards, at most %d", from, wildcards, maxWildcards)
	}
	switch {
	case to == "":
		return rule{}, errors.New("to: empty")
	case !utf8.ValidString(to) || strings.ContainsRune(to, 0):
		return rule{}, fmt.Errorf("to: %q: not UTF-8 without U+0000", to)
	case strings.ContainsAny(to, "+#"):
		return rule{}, fmt.Errorf("to: %q: a topic name has no wildcards; write {1}, {2}, ... for what from's wildcards matched", to)
	case strings.HasPrefix(to, "$"):
		return rule{}, fmt.Errorf("to: %q: topics starting with $ are the broker's", to)
	}
	pieces, captures, err := parseTemplate(to)
	if err != nil {
		return rule{}, fmt.Errorf("to: %q: %v", to, err)
	}
	for _, n := range captures {
		if n > wildcards {
			return rule{}, fmt.Errorf("to: %q: {%d}, but from %q has %d wildcards", to, n, from, wildcards)
		}
	}
	r.pieces, r.captures = pieces, captures
	return r, nil
}

// parseTemplate splits a to template into pieces: literal text (capture
// 0) and "{N}", N a decimal number from 1 (capture N). A "{" that does not
// start a "{N}" is literal.
func parseTemplate(to string) (pieces []string, captures []int, err error) {
	lit := 0 // start of the literal text not yet added
	for i := 0; i < len(to); i++ {
		if to[i] != '{' {
			continue
		}
		j := strings.IndexByte(to[i:], '}')
		if j < 2 || !allDigits(to[i+1:i+j]) {
			continue
		}
		n, err := strconv.Atoi(to[i+1 : i+j])
		if err != nil || n < 1 {
			return nil, nil, fmt.Errorf("%s: wildcards are numbered from {1}", to[i:i+j+1])
		}
		if lit < i {
			pieces, captures = append(pieces, to[lit:i]), append(captures, 0)
		}
		pieces, captures = append(pieces, ""), append(captures, n)
		i += j
		lit = i + 1
	}
	if lit < len(to) {
		pieces, captures = append(pieces, to[lit:]), append(captures, 0)
	}
	return pieces, captures, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// rewrite returns the new topic of topic under the first rule whose from
// matches it, and whether one did. A result that is no topic name (empty,
// too long) leaves the topic as it is.
func (c *config) rewrite(topic string) (string, bool) {
	var caps [maxWildcards]string
	for i := range c.Rules {
		r := &c.Rules[i]
		if !r.match(topic, &caps) {
			continue
		}
		var b strings.Builder
		for j, p := range r.pieces {
			if n := r.captures[j]; n > 0 {
				b.WriteString(caps[n-1])
			} else {
				b.WriteString(p)
			}
		}
		out := b.String()
		if out == "" || len(out) > maxTopic || out == topic {
			return "", false
		}
		return out, true
	}
	return "", false
}

// match reports whether topic matches the rule's from, and puts what its
// wildcards matched, in order, into caps: a "+" one level (perhaps empty),
// a "#" the remaining levels, at least one (a rule's "#" does not match
// the parent level alone: "legacy/#" does not rewrite "legacy"). A topic
// starting with "$" does not match a leading wildcard (MQTT 4.7.2).
func (r *rule) match(topic string, caps *[maxWildcards]string) bool {
	if strings.HasPrefix(topic, "$") && (r.levels[0] == "+" || r.levels[0] == "#") {
		return false
	}
	rest, more, n := topic, true, 0
	for _, l := range r.levels {
		if !more {
			return false
		}
		if l == "#" {
			caps[n] = rest
			return true
		}
		var level string
		level, rest, more = strings.Cut(rest, "/")
		if l == "+" {
			caps[n] = level
			n++
		} else if l != level {
			return false
		}
	}
	return !more
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
