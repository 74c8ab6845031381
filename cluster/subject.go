package cluster

import (
	"encoding/base32"
	"strings"
)

// This file maps MQTT topics and filters to NATS subjects (see
// docs/cluster.md, "Subjects").
//
// A topic's routing subject is the prefix "pm." followed by its first
// levels (the cluster's topic_level_distribution), one NATS token per
// level. A level that is a non-empty run of [A-Za-z0-9_-] not starting with
// '~' is its own token; any other level (the empty one included) becomes
// '~' followed by the lower-case base32hex of its bytes without padding.
// The two forms cannot meet (a plain token never starts with '~') and the
// base32hex of distinct byte strings differs, so the encoding is injective.
// A topic with fewer levels than the depth is padded with the token "~~",
// which neither form produces ("~" + base32hex of at least one byte has at
// least two characters from [0-9a-v]).

// Subject prefixes of the routing and retained subjects.
const (
	// messagePrefix starts every routing subject of a QoS 1/2 message
	// (stream PROPOLIS_MESSAGES).
	messagePrefix = "pm"
	// volatilePrefix starts every routing subject of a QoS 0 message: the
	// same tokens as its messagePrefix subject, under a prefix no stream
	// captures, so that QoS 0 is never stored. It has messagePrefix's
	// length, so the two subjects of a topic or filter are as long.
	volatilePrefix = "pz"
	// retainedPrefix starts every retained subject (stream PROPOLIS_RETAINED).
	retainedPrefix = "pr"
	// padToken stands for a level a topic does not have.
	padToken = "~~"
)

// levelEncoding is base32hex, lower case, without padding: its alphabet
// [0-9a-v] is legal in a NATS token.
var levelEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// plainLevel reports whether level is its own token: a non-empty run of
// [A-Za-z0-9_-] that does not start with '~' (none of those characters is
// '~', so the first condition implies the second; it is spelled out because
// the injectivity rests on it).
func plainLevel(level string) bool {
	if level == "" || level[0] == '~' {
		return false
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Why two token encodings: a topic level here ('~' and base32hex) and a
// client id, shared group or filter in owner.go and shared.go
// (escapeToken: '=' and two hex digits). They cannot be one without
// changing what docs/cluster.md documents and what running clusters hold:
// the routing and retained subjects are in the streams (a rolling upgrade
// must read them), and the client keys are bucket keys, whose alphabet
// ([-/_=.A-Za-z0-9]) has no '~', so appendToken cannot make them; while
// escapeToken's output for a level could collide with nothing but would
// make every stored pr. subject unreadable to older nodes. Each stays
// injective on its own, which is all either job needs.

// appendToken appends the token of one topic level to b.
func appendToken(b []byte, level string) []byte {
	if plainLevel(level) {
		return append(b, level...)
	}
	b = append(b, '~')
	return levelEncoding.AppendEncode(b, []byte(level))
}

// decodeToken is appendToken's inverse, for one token; ok is false for a
// token appendToken does not produce (the padding token among them): a
// token is decoded only if encoding its level gives it back.
func decodeToken(tok string) (level string, ok bool) {
	if tok == "" || tok == padToken {
		return "", false
	}
	if tok[0] != '~' {
		return tok, plainLevel(tok)
	}
	raw, err := levelEncoding.DecodeString(tok[1:])
	if err != nil || string(appendToken(nil, string(raw))) != tok {
		return "", false
	}
	return string(raw), true
}

// routingSubject is the subject a message on topic is published to:
// "pm." and the first depth levels of topic, padded to depth tokens.
func routingSubject(topic string, depth int) string {
	b := make([]byte, 0, len(messagePrefix)+len(topic)+depth*3+8)
	b = append(b, messagePrefix...)
	rest, more := topic, true
	for range depth {
		b = append(b, '.')
		if !more {
			b = append(b, padToken...)
			continue
		}
		var level string
		level, rest, more = strings.Cut(rest, "/")
		b = appendToken(b, level)
	}
	return string(b)
}

// volatileSubject is the QoS 0 twin of subject, a routing or
// subscription subject: volatilePrefix in place of messagePrefix.
func volatileSubject(subject string) string {
	return volatilePrefix + subject[len(messagePrefix):]
}

// retainedSubject is the subject of topic's retained message in stream
// PROPOLIS_RETAINED: "pr." and every level of topic, encoded as above.
func retainedSubject(topic string) string {
	b := make([]byte, 0, len(retainedPrefix)+len(topic)+8)
	b = append(b, retainedPrefix...)
	for level := range strings.SplitSeq(topic, "/") {
		b = append(b, '.')
		b = appendToken(b, level)
	}
	return string(b)
}

// topicOfRetained is retainedSubject's inverse; ok is false for a subject
// retainedSubject does not produce.
func topicOfRetained(subject string) (topic string, ok bool) {
	rest, found := strings.CutPrefix(subject, retainedPrefix+".")
	if !found {
		return "", false
	}
	levels := strings.Split(rest, ".")
	for i, tok := range levels {
		if levels[i], ok = decodeToken(tok); !ok {
			return "", false
		}
	}
	return strings.Join(levels, "/"), true
}

// filterSubject is the subscription subject covering every routing
// subject of a topic filter matches, from its first depth levels: '+'
// becomes '*', '#' becomes '>', other levels are encoded as topic levels,
// and a filter shorter than depth is padded. "a/#" also matches its parent
// "a": the parent's routing subject is "pm.a" and padding, which the '>'
// of "pm.a.>" matches, since padding fills every level up to depth. Levels
// beyond depth are not in the subject; the receiving broker matches the
// full topic itself (and applies MQTT's rule that wildcards at the first
// level do not match '$' topics).
func filterSubject(filter string, depth int) string {
	b := make([]byte, 0, len(messagePrefix)+len(filter)+depth*3+8)
	b = append(b, messagePrefix...)
	rest, more := filter, true
	for range depth {
		if !more {
			b = append(b, '.')
			b = append(b, padToken...)
			continue
		}
		var level string
		level, rest, more = strings.Cut(rest, "/")
		switch level {
		case "#":
			return string(append(b, ".>"...))
		case "+":
			b = append(b, ".*"...)
		default:
			b = append(b, '.')
			b = appendToken(b, level)
		}
	}
	return string(b)
}
