// Command session-tracker is a Propolis extension that records, for every
// client, when it last connected and disconnected and whether that
// disconnect was graceful (the client sent DISCONNECT). It shows three
// parts of ABI 1.1:
//
//   - session attributes written with PutSessionAttributeIfNewer, stamped
//     with the event's own time, so a late or replayed event never
//     overwrites a newer one: session-tracker.last_connect,
//     session-tracker.last_disconnect and session-tracker.graceful (the
//     times as RFC 3339 text). They live as long as the session does;
//   - the extension's own storage, which outlives sessions: one JSON
//     record per client under the key "client/<client id>";
//   - a retained message per client on tracker/<client id>, the same JSON
//     record, published as the broker with PublishMessage: a subscriber
//     to tracker/# sees every client's state at once and each change as it
//     happens;
//   - a tick that forgets the records of clients gone for longer than
//     forget_after, a page of keys at a time, and clears their retained
//     messages.
//
// It authenticates nobody: combine it with a security extension. Its
// manifest grants it the session_attributes, storage and publish services.
//
// Configuration:
//
//	config:
//	  forget_after: 720h   # forget clients gone this long (Go duration); 0 never
package main

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, OnEvent: onEvent, Tick: tick})
}

func main() {}

// The session attribute keys, prefixed with the extension id: every
// extension sees a session's attributes.
const (
	attrLastConnect    = "session-tracker.last_connect"
	attrLastDisconnect = "session-tracker.last_disconnect"
	attrGraceful       = "session-tracker.graceful"
)

// recordPrefix starts the storage key of every client's record.
const recordPrefix = "client/"

// State is what the tracker knows of one client, stored as JSON under
// recordPrefix + client id.
type State struct {
	ClientID       string    `json:"client_id"`
	LastConnect    time.Time `json:"last_connect,omitzero"`
	LastDisconnect time.Time `json:"last_disconnect,omitzero"`
	// Graceful is true when the last disconnect was the client's own
	// DISCONNECT; Disconnect says who ended it ("client", "lost",
	// "server") and ReasonCode with which code.
	Graceful   bool   `json:"graceful"`
	Disconnect string `json:"disconnect,omitempty"`
	ReasonCode byte   `json:"reason_code"`
}

// apply updates s with e, and reports whether it changed: a connect or
// disconnect older than the one recorded is ignored.
func (s *State) apply(e *propolis.Event) bool {
	switch e.Kind {
	case propolis.EventAuthSucceeded:
		if !e.Time.After(s.LastConnect) {
			return false
		}
		s.LastConnect = e.Time
	case propolis.EventDisconnect:
		if !e.Time.After(s.LastDisconnect) {
			return false
		}
		s.LastDisconnect = e.Time
		s.Graceful = e.DisconnectKind == propolis.DisconnectByClient
		s.Disconnect = e.DisconnectKind.String()
		s.ReasonCode = e.ReasonCode
	default:
		return false
	}
	return true
}

// lastSeen is when the client was last known to be there: now while it is
// connected (its last connect is later than its last disconnect).
func (s *State) lastSeen(now time.Time) time.Time {
	if s.LastConnect.After(s.LastDisconnect) {
		return now
	}
	return s.LastDisconnect
}

// config is the manifest's config section.
type config struct {
	ForgetAfter string `json:"forget_after"`
}

// forgetAfter is how long a client's record outlives its last disconnect.
var forgetAfter = 30 * 24 * time.Hour

func start(info propolis.StartInfo) error {
	c := config{ForgetAfter: forgetAfter.String()}
	if err := info.DecodeConfig(&c); err != nil {
		return err
	}
	d, err := time.ParseDuration(c.ForgetAfter)
	if err != nil || d < 0 {
		return errors.New("config: forget_after must be a Go duration such as 720h, 0 for never")
	}
	forgetAfter = d
	if info.Instance == 0 {
		propolis.Infof("tracking sessions; records forgotten %v after the last disconnect", d)
	}
	return nil
}

// onEvent records connects and disconnects. Events reach the extension one
// at a time, in order, so the read-modify-write of a record is safe;
// PutSessionAttributeIfNewer keeps the attributes right whatever else
// writes them.
func onEvent(e *propolis.Event) {
	if e.Kind != propolis.EventAuthSucceeded && e.Kind != propolis.EventDisconnect {
		return
	}
	key := recordPrefix + e.ClientID
	s := State{ClientID: e.ClientID}
	if v, err := propolis.StoredValue(key); err == nil {
		if err := json.Unmarshal(v, &s); err != nil {
			propolis.Warnf("record of %q unreadable, starting anew: %v", e.ClientID, err)
			s = State{ClientID: e.ClientID}
		}
	} else if !errors.Is(err, propolis.ErrNotFound) {
		propolis.Errorf("read record of %q: %v", e.ClientID, err)
		return
	}
	if !s.apply(e) {
		return
	}
	v, err := json.Marshal(&s)
	if err != nil {
		propolis.Errorf("encode record of %q: %v", e.ClientID, err)
		return
	}
	if err := propolis.PutStoredValue(key, v); err != nil {
		propolis.Errorf("store record of %q: %v", e.ClientID, err)
	}
	putAttributes(e)
	announce(e.ClientID, v)
}

// statusTopic is where the retained record of clientID goes; "" for a
// client id that cannot be a topic level ("+", "#", "/" in it).
func statusTopic(clientID string) string {
	if clientID == "" || strings.ContainsAny(clientID, "+#/") {
		return ""
	}
	return "tracker/" + clientID
}

// announce publishes a client's record, retained, as the broker; an empty
// record clears the retained message. A failure is logged: the stored
// record stays the source of truth.
func announce(clientID string, record []byte) {
	topic := statusTopic(clientID)
	if topic == "" {
		return
	}
	m := propolis.Message{Topic: topic, Payload: record, QoS: 1, Retain: true, PayloadFormat: 1, ContentType: "application/json"}
	if len(record) == 0 {
		m.PayloadFormat, m.ContentType = 0, ""
	}
	if err := propolis.PublishMessage(m); err != nil {
		propolis.Warnf("publish %s: %v", topic, err)
	}
}

// putAttributes writes the session attributes of e, each only if e is
// newer than what the session holds. A session that ended with its
// connection has none left to write to (ErrNotFound): that is expected.
func putAttributes(e *propolis.Event) {
	stamp := []byte(e.Time.UTC().Format(time.RFC3339Nano))
	attrs := [][2]string{{attrLastConnect, string(stamp)}}
	if e.Kind == propolis.EventDisconnect {
		graceful := "false"
		if e.DisconnectKind == propolis.DisconnectByClient {
			graceful = "true"
		}
		attrs = [][2]string{{attrLastDisconnect, string(stamp)}, {attrGraceful, graceful}}
	}
	for _, a := range attrs {
		_, _, err := propolis.PutSessionAttributeIfNewer(e.ClientID, a[0], []byte(a[1]), e.Time, false)
		if err != nil && !errors.Is(err, propolis.ErrNotFound) {
			propolis.Warnf("session attribute %s of %q: %v", a[0], e.ClientID, err)
		}
	}
}

// Housekeeping: each tick looks at up to sweepPage records, resuming
// where the previous tick stopped (the cursor is kept in storage, since
// any instance may run the next tick), and removes those of clients gone
// for longer than forgetAfter.
const (
	sweepPage   = 100
	cursorKey   = "sweep-cursor"
	cursorStart = ""
)

func tick() {
	if forgetAfter == 0 {
		return
	}
	cursor := cursorStart
	if v, err := propolis.StoredValue(cursorKey); err == nil {
		cursor = string(v)
	}
	keys, more, err := propolis.StoredKeys(recordPrefix, cursor, sweepPage)
	if err != nil {
		propolis.Warnf("sweep: %v", err)
		return
	}
	now := time.Now()
	for _, k := range keys {
		v, err := propolis.StoredValue(k)
		if err != nil {
			continue // removed meanwhile
		}
		var s State
		if json.Unmarshal(v, &s) == nil && now.Sub(s.lastSeen(now)) <= forgetAfter {
			continue
		}
		if err := propolis.RemoveStoredValue(k); err != nil {
			propolis.Warnf("sweep: remove %s: %v", k, err)
			return
		}
		announce(strings.TrimPrefix(k, recordPrefix), nil)
	}
	next := cursorStart
	if more {
		next = keys[len(keys)-1]
	}
	if err := propolis.PutStoredValue(cursorKey, []byte(next)); err != nil {
		propolis.Warnf("sweep: %v", err)
	}
}
