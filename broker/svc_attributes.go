package broker

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/propolis-mqtt/propolis/broker/store"
)

// This file is the SessionAttributes service, on the store's attribute
// records (broker/store/attributes.go).
//
// The store keeps an attribute only beside a session record, and removes
// both together (DeleteSession, under one per-client lock). So attributes
// end with their session wherever the hook removes a stored session: a
// clean start, a session that ends with its connection, expiry; and
// InvalidateSession. A persistent session has its record already. A session
// that ends with its connection has none: its first attribute writes one
// (sessionRecordFor), marked MQTT 5 with expiry 0, and sets the hook's
// stored flag, so the hook removes it when the connection ends, and restore
// discards it (as expired) after a crash.
//
// With Options.Attributes in force (attributeStore), the attributes live
// there and the session record only marks the session for removal: the
// hook's removals of a stored session also call AttributeDeleteAll
// (hook.dropAttributes), and so does every CONNECT starting a new
// session, since that store may hold attributes of a session this node
// never held. That store has no per-client lock ordering a write with the
// removal, so attributeGone's check after each write decides alone.

// Attribute times are Unix nanoseconds in an int64: about 1678 to 2262.
var (
	minAttributeTime = time.Unix(0, math.MinInt64)
	maxAttributeTime = time.Unix(0, math.MaxInt64)
)

// attributeStore returns where attributes are kept now: Options.Attributes
// while it is in force (its AttributeGate open, if it has one), else
// Persistence (as localAttributes).
func (s *Server) attributeStore() AttributeStore {
	if a := s.hook.attrs; a != nil {
		if g, ok := a.(AttributeGate); !ok || g.AttributesOn() {
			return a
		}
	}
	return localAttributes{s.persist}
}

// attributeSession finds the session of clientID and the store keeping its
// attributes (attributeStore); what is the operation, for errors.
func (s *Server) attributeSession(what, clientID string) (*mqtt.Client, AttributeStore, error) {
	as := s.attributeStore()
	cl, ok := s.sessionClient(clientID)
	if !ok || (cl.Closed() && !persistent(cl)) { // the latter is ending now
		return nil, nil, fmt.Errorf("%s of %q: %w", what, clientID, ErrNoSession)
	}
	if f := s.hook.attributeFound; f != nil {
		f(clientID)
	}
	return cl, as, nil
}

// checkAttribute refuses a key or value beyond the documented limits.
func checkAttribute(key string, value []byte) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidArgument)
	case len(key) > MaxAttributeKeyLen:
		return fmt.Errorf("%w: key of %d bytes, at most %d", ErrInvalidArgument, len(key), MaxAttributeKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidArgument)
	case len(value) > MaxAttributeValueLen:
		return fmt.Errorf("%w: value of %d bytes, at most %d", ErrInvalidArgument, len(value), MaxAttributeValueLen)
	}
	return nil
}

// sessionRecordFor makes sure cl's session has a record in the store, so
// that attributes can be written under it (see the top of this file).
func (s *Server) sessionRecordFor(cl *mqtt.Client) error {
	if s.hook.isStored(cl.ID) {
		return nil
	}
	var rec *store.Session
	if persistent(cl) {
		rec = sessionRecord(cl, cl.StopTime())
	} else {
		// Without its will: this is not the client's goroutine (see
		// sessionRecordNoWill), and a session ending with its connection
		// leaves no will to publish after a crash.
		rec = sessionRecordNoWill(cl, cl.StopTime())
		rec.ProtocolVersion, rec.SessionExpiry, rec.SessionExpirySet = 5, 0, true
	}
	// Not durable: the attribute written next is, and the log keeps order.
	if err := s.persist.PutSession(rec, false); err != nil {
		return err
	}
	s.hook.setStored(cl.ID, true)
	return nil
}

// attributeErr maps the store's "no session record" (the session ended
// since attributeSession found it) to ErrNoSession.
func attributeErr(what, clientID, key string, err error) error {
	if errors.Is(err, store.ErrNoSession) {
		return fmt.Errorf("%s %q of %q: %w", what, key, clientID, ErrNoSession)
	}
	return err // the store's error names the operation, key and client
}

// Attribute implements SessionAttributes.
func (s *Server) Attribute(clientID, key string) ([]byte, bool, error) {
	_, as, err := s.attributeSession("get attribute", clientID)
	if err != nil {
		return nil, false, err
	}
	a, ok, err := as.AttributeGet(clientID, key)
	if err != nil {
		return nil, false, attributeErr("get attribute", clientID, key, err)
	}
	return a.Value, ok, nil
}

// PutAttribute implements SessionAttributes.
func (s *Server) PutAttribute(clientID, key string, value []byte) error {
	if err := checkAttribute(key, value); err != nil {
		return fmt.Errorf("put attribute %q of %q: %w", key, clientID, err)
	}
	cl, as, err := s.attributeSession("put attribute", clientID)
	if err != nil {
		return err
	}
	if err := s.sessionRecordFor(cl); err != nil {
		return attributeErr("put attribute", clientID, key, err)
	}
	a := store.Attribute{Key: key, Value: value, Time: time.Now().UnixNano()}
	if err := as.AttributePut(clientID, a, true); err != nil {
		return attributeErr("put attribute", clientID, key, err)
	}
	if s.attributeGone(cl, as, key) {
		return fmt.Errorf("put attribute %q of %q: %w (it ended meanwhile)", key, clientID, ErrNoSession)
	}
	return nil
}

// attributeGone undoes an attribute write that raced the end of cl's
// session (InvalidateSession, expiry): the write found the session before
// it was removed, and sessionRecordFor may have written a session record
// after the removal deleted it, which a restart would restore. Checked
// after the write, against the removal, which takes the client out of
// mochi before it deletes the stored session: one of the two deletes
// comes last. A session a new connection took over (inherited) is the
// same session and keeps the attribute; a new session of the client id
// does not get it. It reports whether cl's session is gone. as is the
// store the write went to.
//
// In Options.Attributes, a write is also undone when cl's session is over
// though cl is still in mochi's map (sessionOver): the hook removes such a
// session (OnDisconnect, OnClientExpired) before mochi takes it out of the
// map, and Persistence's ErrNoSession, which refuses a write after that
// removal, has no counterpart there.
func (s *Server) attributeGone(cl *mqtt.Client, as AttributeStore, key string) bool {
	_, local := as.(localAttributes)
	cur, ok := s.mochi.Clients.Get(cl.ID)
	if ok && (cur == cl || cl.IsTakenOver()) && (local || cur != cl || !s.sessionOver(cl)) {
		return false
	}
	if ok {
		s.hook.storeErr("delete attribute", cl.ID, as.AttributeDelete(cl.ID, key, true))
		return true
	}
	// The stored flag stays as the write left it (set): the client's
	// goroutine may be saving the session as its connection ends, and
	// then deletes it again only while the flag is set (sessionEnded).
	s.hook.storeErr("delete session", cl.ID, s.persist.DeleteSession(cl.ID, true))
	if !local {
		s.hook.dropAttributes(cl.ID)
	}
	return true
}

// sessionOver reports whether the session of cl, closed, has ended or is
// due to end: one that ends with its connection, or one offline for
// longer than its expiry (mochi's sweep rule, on sessionExpiry).
func (s *Server) sessionOver(cl *mqtt.Client) bool {
	if !cl.Closed() {
		return false
	}
	mu := s.hook.sessionLock(cl.ID)
	mu.Lock()
	defer mu.Unlock()
	if !persistent(cl) {
		return true
	}
	return cl.StopTime()+int64(s.sessionExpiry(cl)) < time.Now().Unix()
}

// PutAttributeIfNewer implements SessionAttributes.
func (s *Server) PutAttributeIfNewer(clientID, key string, value []byte, ts time.Time, orEqual bool) ([]byte, bool, error) {
	if err := checkAttribute(key, value); err != nil {
		return nil, false, fmt.Errorf("put attribute %q of %q if newer: %w", key, clientID, err)
	}
	if ts.Before(minAttributeTime) || ts.After(maxAttributeTime) {
		return nil, false, fmt.Errorf("put attribute %q of %q if newer: %w: time %s outside 1678-2262", key, clientID, ErrInvalidArgument, ts)
	}
	cl, as, err := s.attributeSession("put attribute if newer", clientID)
	if err != nil {
		return nil, false, err
	}
	if err := s.sessionRecordFor(cl); err != nil {
		return nil, false, attributeErr("put attribute if newer", clientID, key, err)
	}
	a := store.Attribute{Key: key, Value: value, Time: ts.UnixNano()}
	prev, had, replaced, err := as.AttributePutIfNewer(clientID, a, orEqual, true)
	if err != nil {
		return nil, false, attributeErr("put attribute if newer", clientID, key, err)
	}
	if s.attributeGone(cl, as, key) {
		return nil, false, fmt.Errorf("put attribute %q of %q if newer: %w (it ended meanwhile)", key, clientID, ErrNoSession)
	}
	if !had {
		return nil, replaced, nil
	}
	if prev.Value == nil {
		return []byte{}, replaced, nil // an empty value is still a value
	}
	return prev.Value, replaced, nil
}

// Attributes implements SessionAttributes.
func (s *Server) Attributes(clientID string) ([]Attribute, error) {
	_, as, err := s.attributeSession("list attributes", clientID)
	if err != nil {
		return nil, err
	}
	list, err := as.AttributeList(clientID)
	if err != nil {
		return nil, fmt.Errorf("list attributes of %q: %w", clientID, err)
	}
	out := make([]Attribute, len(list))
	for i, a := range list {
		out[i] = Attribute{Key: a.Key, Value: a.Value, Time: time.Unix(0, a.Time)}
	}
	return out, nil
}

// DeleteAttribute implements SessionAttributes.
func (s *Server) DeleteAttribute(clientID, key string) error {
	_, as, err := s.attributeSession("delete attribute", clientID)
	if err != nil {
		return err
	}
	if err := as.AttributeDelete(clientID, key, true); err != nil {
		return attributeErr("delete attribute", clientID, key, err)
	}
	return nil
}
