package cluster

// TEMPORARY (H3's branch only): minimal stand-ins for what H2 writes in
// subject.go and route.go, so that shared.go and its tests compile and run
// before the merge. The lead deletes this file when merging H2's branch,
// whose filterSubject and decodeMessage replace these, and whose Forward
// replaces encodeMessageH3tmp in shared_test.go's test cluster.

import (
	"encoding/base32"
	"errors"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/propolis-mqtt/propolis/broker"
)

var levelEncodingH3tmp = base32.HexEncoding.WithPadding(base32.NoPadding)

// levelTokenH3tmp encodes one topic level as one NATS token.
func levelTokenH3tmp(l string) string {
	plain := l != "" && l[0] != '~'
	for i := 0; plain && i < len(l); i++ {
		c := l[i]
		plain = c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
	}
	if plain {
		return l
	}
	return "~" + strings.ToLower(levelEncodingH3tmp.EncodeToString([]byte(l)))
}

// topicSubjectH3tmp is the routing subject of a topic name.
func topicSubjectH3tmp(topic string, levels int) string {
	parts := strings.Split(topic, "/")
	toks := []string{"pm"}
	for i := range levels {
		if i < len(parts) {
			toks = append(toks, levelTokenH3tmp(parts[i]))
		} else {
			toks = append(toks, "~~")
		}
	}
	return strings.Join(toks, ".")
}

// filterSubject is the subscription subject covering filter.
func filterSubject(filter string, levels int) string {
	parts := strings.Split(filter, "/")
	toks := []string{"pm"}
	for i := range levels {
		if i >= len(parts) {
			toks = append(toks, "~~")
			continue
		}
		switch parts[i] {
		case "#":
			return strings.Join(append(toks, ">"), ".")
		case "+":
			toks = append(toks, "*")
		default:
			toks = append(toks, levelTokenH3tmp(parts[i]))
		}
	}
	return strings.Join(toks, ".")
}

// encodeMessageH3tmp is the NATS message of m (tests only).
func encodeMessageH3tmp(m *broker.Message, publisher, origin string, levels int) *nats.Msg {
	msg := nats.NewMsg(topicSubjectH3tmp(m.Topic, levels))
	msg.Header.Set("Pm-Origin", origin)
	msg.Header.Set("Pm-Topic", m.Topic)
	msg.Header.Set("Pm-Publisher", publisher)
	msg.Header.Set("Pm-Qos", strconv.Itoa(int(m.QoS)))
	msg.Data = m.Payload
	return msg
}

// decodeMessage is the message a NATS message carries.
func decodeMessage(msg *nats.Msg) (m broker.Message, publisher, origin string, err error) {
	m.Topic = msg.Header.Get("Pm-Topic")
	if m.Topic == "" {
		return m, "", "", errors.New("no Pm-Topic header")
	}
	q, err := strconv.Atoi(msg.Header.Get("Pm-Qos"))
	if err != nil || q < 0 || q > 2 {
		return m, "", "", errors.New("bad Pm-Qos header")
	}
	m.QoS = byte(q)
	m.Payload = msg.Data
	return m, msg.Header.Get("Pm-Publisher"), msg.Header.Get("Pm-Origin"), nil
}
