package trace

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// Spec says what a recording takes: the packets of which clients, on which
// topics, of which types, and for how long. The zero Spec takes every
// packet of every client for 10 minutes or 64 MiB.
type Spec struct {
	// ClientID is a pattern over client ids in path.Match syntax ("*",
	// "sensor-?", "[ab]*"; "*" does not match "/"); "" takes every
	// client. A CONNECT is matched on the client id it carries.
	ClientID string
	// TopicFilter is an MQTT topic filter narrowing the packets that carry
	// topics: a PUBLISH is taken when its topic matches it, a SUBSCRIBE or
	// UNSUBSCRIBE when one of its filters intersects it (some topic
	// matches both). Packets without a topic (CONNECT, acknowledgements,
	// PINGREQ...) are not narrowed by it: narrow them with Packets. ""
	// takes every topic.
	TopicFilter string
	// Packets are the packet types taken, named as broker.PacketTypeName
	// spells them ("PUBLISH", "SUBACK"; lowercase is accepted); empty
	// takes every type.
	Packets []string
	// Duration is how long the recording runs before it stops with reason
	// "duration", 1s to 24h; 0 means 10 minutes.
	Duration time.Duration
	// MaxSize is the size of the recording's files at which it stops with
	// reason "size limit", 1KiB to the configured trace.max_total_size; 0
	// means 64 MiB, or trace.max_total_size if that is smaller.
	MaxSize int64
}

// Defaults and limits of a Spec.
const (
	DefaultDuration = 10 * time.Minute
	MinDuration     = time.Second
	MaxDuration     = 24 * time.Hour
	DefaultMaxSize  = 64 << 20
	MinMaxSize      = 1 << 10
)

// ErrInvalidSpec is wrapped by every *SpecError.
var ErrInvalidSpec = errors.New("invalid trace recording")

// SpecError is a Spec refused by Start: Field is the field's JSON name
// ("topic_filter", "packets[2]", ...).
type SpecError struct {
	Field, Msg string
}

// Error is "field: problem", such as `topic_filter: "a/#/b" is not a valid topic filter`.
func (e *SpecError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap returns ErrInvalidSpec.
func (e *SpecError) Unwrap() error { return ErrInvalidSpec }

// specJSON is Spec as JSON: the body of the admin API's POST
// /api/v1/traces, and the spec in meta.json.
type specJSON struct {
	ClientID        string   `json:"client_id"`
	TopicFilter     string   `json:"topic_filter"`
	Packets         []string `json:"packets"`
	DurationSeconds float64  `json:"duration_seconds"`
	MaxBytes        int64    `json:"max_bytes"`
}

// MarshalJSON writes s with the keys client_id, topic_filter, packets,
// duration_seconds and max_bytes.
func (s Spec) MarshalJSON() ([]byte, error) {
	p := s.Packets
	if p == nil {
		p = []string{}
	}
	return json.Marshal(specJSON{ClientID: s.ClientID, TopicFilter: s.TopicFilter, Packets: p,
		DurationSeconds: s.Duration.Seconds(), MaxBytes: s.MaxSize})
}

// specKeys are the keys of a Spec in JSON, in the order MarshalJSON writes
// them.
var specKeys = []string{"client_id", "topic_filter", "packets", "duration_seconds", "max_bytes"}

// UnmarshalJSON reads what MarshalJSON writes; absent keys are zero. A key
// it does not know is refused, naming it (a typo must not widen a
// recording to every packet), and so is a duration_seconds outside
// MinDuration-MaxDuration (0 is the default): errors are *SpecError.
func (s *Spec) UnmarshalJSON(data []byte) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return err
	}
	var unknown []string
	for k := range keys {
		if !slices.Contains(specKeys, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return &SpecError{strings.Join(unknown, ", "), "unknown key (the keys are " + strings.Join(specKeys, ", ") + ")"}
	}
	var j specJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	d := j.DurationSeconds
	if d != 0 && (d < MinDuration.Seconds() || d > MaxDuration.Seconds()) {
		return &SpecError{"duration_seconds", fmt.Sprintf("%g out of range %g-%g", d, MinDuration.Seconds(), MaxDuration.Seconds())}
	}
	*s = Spec{ClientID: j.ClientID, TopicFilter: j.TopicFilter, Packets: j.Packets,
		Duration: time.Duration(d * float64(time.Second)), MaxSize: j.MaxBytes}
	return nil
}

// matcher is a checked Spec, compiled for the packet path.
type matcher struct {
	pattern string // "" takes every client
	// prefix is the pattern's literal start, before its first *, ?, [ or
	// \; literal says that it is the whole pattern. A client id without
	// the prefix is refused without path.Match.
	prefix  string
	literal bool
	filter  string // "" takes every topic
	types   uint16 // bit 1<<type for each packet type taken
}

// allTypes has the bit of every packet type, 1 to 15.
const allTypes = 0xfffe

// normalize checks s against the recorder's limits and returns it with
// its defaults filled in, and its matcher; the error is a *SpecError.
func normalize(s Spec, limits Limits) (Spec, matcher, error) {
	m := matcher{pattern: s.ClientID, filter: s.TopicFilter}
	if len(s.ClientID) > 65535 {
		return s, m, &SpecError{"client_id", "longer than 65535 bytes"}
	}
	if _, err := path.Match(s.ClientID, ""); err != nil {
		return s, m, &SpecError{"client_id", fmt.Sprintf("%q is not a valid pattern (path.Match syntax: *, ?, [a-z], \\)", s.ClientID)}
	}
	if s.ClientID == "*" {
		m.pattern = ""
	}
	if i := strings.IndexAny(m.pattern, `*?[\`); i >= 0 {
		m.prefix = m.pattern[:i]
	} else {
		m.prefix, m.literal = m.pattern, true
	}
	if f := s.TopicFilter; f != "" {
		if _, _, shared := topic.SplitShared(f); shared {
			return s, m, &SpecError{"topic_filter", fmt.Sprintf("%q is a shared subscription; give the topic filter without $share/<group>/", f)}
		}
		if !topic.ValidFilter(f) {
			return s, m, &SpecError{"topic_filter", fmt.Sprintf("%q is not a valid topic filter", f)}
		}
	}
	if len(s.Packets) == 0 {
		m.types = allTypes
	}
	names := make([]string, len(s.Packets))
	for i, name := range s.Packets {
		code, ok := broker.PacketTypeCode(strings.ToUpper(name))
		if !ok {
			return s, m, &SpecError{fmt.Sprintf("packets[%d]", i), fmt.Sprintf("unknown packet type %q (allowed: %s)", name, strings.Join(packetTypes(), ", "))}
		}
		names[i] = broker.PacketTypeName(code)
		m.types |= 1 << code
	}
	if len(s.Packets) > 0 {
		s.Packets = names
	}
	switch {
	case s.Duration == 0:
		s.Duration = DefaultDuration
	case s.Duration < MinDuration || s.Duration > MaxDuration:
		return s, m, &SpecError{"duration_seconds", fmt.Sprintf("%s out of range %s-%s", s.Duration, MinDuration, MaxDuration)}
	}
	switch {
	case s.MaxSize == 0:
		s.MaxSize = min(DefaultMaxSize, limits.MaxTotalSize)
	case s.MaxSize < MinMaxSize || s.MaxSize > limits.MaxTotalSize:
		return s, m, &SpecError{"max_bytes", fmt.Sprintf("%d out of range %d-%d (trace.max_total_size %s)",
			s.MaxSize, MinMaxSize, limits.MaxTotalSize, config.ByteSize(limits.MaxTotalSize))}
	}
	return s, m, nil
}

// packetTypes lists the packet type names, CONNECT to AUTH.
func packetTypes() []string {
	var names []string
	for c := byte(1); broker.PacketTypeName(c) != ""; c++ {
		names = append(names, broker.PacketTypeName(c))
	}
	return names
}

// takes is the prefilter: whether packets of type typ from clientID may be
// taken (all but the topic filter).
func (m *matcher) takes(clientID string, typ byte) bool {
	if m.types&(1<<typ) == 0 {
		return false
	}
	switch {
	case m.pattern == "":
		return true
	case !strings.HasPrefix(clientID, m.prefix):
		return false
	case m.literal:
		return len(clientID) == len(m.prefix)
	}
	ok, _ := path.Match(m.pattern, clientID)
	return ok
}

// matches reports whether the recording takes p.
func (m *matcher) matches(p *broker.TracedPacket) bool {
	if !m.takes(p.ClientID, p.TypeCode) {
		return false
	}
	if m.filter == "" {
		return true
	}
	switch p.Type {
	case "PUBLISH":
		return topic.Match(m.filter, p.Topic)
	case "SUBSCRIBE", "UNSUBSCRIBE":
		for _, f := range p.Filters {
			sub := f.Filter
			if _, plain, shared := topic.SplitShared(sub); shared {
				sub = plain
			}
			if topic.Intersects(m.filter, sub) {
				return true
			}
		}
		return false
	}
	return true
}
