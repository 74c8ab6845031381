package broker

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/store"
)

// Sessions moving between the nodes of a cluster: the broker's side
// (docs/cluster.md; package cluster keeps the sessions of offline clients
// in JetStream and calls these).
//
//  1. A CONNECT is authenticated (authenticateConnect); if Options.Cluster
//     implements ClusterSessions, the connection takes its client id's
//     CONNECT turn (connectlock.go) and claimSession asks the cluster for
//     the session (ClaimSession), before mochi looks for a session to
//     inherit (attachClient: OnConnect, OnConnectAuthenticate,
//     OnSessionEstablish, inheritClientSession). A failed claim refuses the
//     CONNECT with 0x88 Server unavailable (3.1.1: 0x03).
//  2. What the cluster returns becomes a disconnected session here
//     (ImportSession, as restore creates one), and its messages are queued
//     in it (QueueSessionMessages); mochi's take-over then resumes it like
//     any offline session: session present, messages resent after the
//     CONNACK.
//  3. When the client has left, the cluster takes the session away
//     (ExportSession): its state and the messages it still held, removed
//     from mochi and from the store without a will.

// SessionState is a persistent session as it moves between nodes: the
// session record and its subscriptions, as the store keeps them
// (JSON-encodable). The messages it holds travel apart ([]Message).
type SessionState struct {
	Session       store.Session
	Subscriptions []store.Subscription
}

// ClusterSessions is implemented by a Cluster that replicates sessions
// (the broker type-asserts Options.Cluster). ClaimSession is called on the
// connecting client's goroutine once its CONNECT is authenticated, holding
// the client id's CONNECT turn (no other CONNECT of the id on this node
// gets further until it returns, and a local connection of the id is
// taken over only after it), so it must return within a bound of its own
// and must not wait for a local connection of the id to end. cleanStart
// is the CONNECT's Clean Start (3.1.1: Clean Session). It returns the
// session to resume (nil for none; ignored on a clean start) and the
// messages owed to it, oldest first (with Origin set, for No Local); a
// session this node holds itself must come back nil (the local one is
// the newer: ImportSession would replace it), its messages are queued in
// the local session all the same; an
// error refuses the CONNECT with 0x88 Server unavailable (MQTT 3.1.1:
// 0x03 Server unavailable), and is logged with the client id. persistent
// says whether the new connection's session outlives it (MQTT 5 Session
// Expiry above 0, 3.1.1 Clean Session 0): a cluster need not record a
// session that ends with its connection.
//
// SessionChanged tells the cluster that the session of clientID, a
// persistent one, changed while this node holds it (its subscriptions, by
// a SUBSCRIBE, an UNSUBSCRIBE or the Subscriptions service; its expiry,
// by SetSessionExpiry), so that its replicated state follows the session
// while the client is online (the cluster reads it with SessionSnapshot).
// It is called on the goroutine that made the change, after it, and must
// return at once (no I/O).
type ClusterSessions interface {
	ClaimSession(clientID string, cleanStart, persistent bool) (*SessionState, []Message, error)
	SessionChanged(clientID string)
}

// Errors of ExportSession and ImportSession; they wrap them with the
// client id.
var (
	// ErrConnected: the client id has a connected client on this node (or
	// a CONNECT took the session over meanwhile); nothing changed.
	ErrConnected = errors.New("client connected")
	// ErrSessionExpired: the session's expiry had run out; nothing
	// changed.
	ErrSessionExpired = errors.New("session expired")
)

// reasonClaimFailed is the reason string of a CONNECT refused because the
// cluster could not hand over the client's session; the log line has the
// cause.
const reasonClaimFailed = "cluster unavailable: session not claimed"

// claimSession is the session claim of a CONNECT of cl (authenticated,
// not yet inheriting a session), with the cluster's sessions cs; see the
// steps above. It returns the CONNACK code and reason that refuse the
// CONNECT, 0 to go on. Problems after a successful claim (a session that
// cannot be imported, messages not queued) are logged and the CONNECT
// goes on: the cluster has handed the session over already.
func (s *Server) claimSession(cs ClusterSessions, cl *mqtt.Client, pk packets.Packet) (code byte, reason string) {
	h := s.hook
	h.connects.acquire(cl) // until the CONNACK; OnSessionEstablish keeps it
	clean := pk.Connect.Clean
	st, msgs, err := cs.ClaimSession(cl.ID, clean, persistent(cl))
	if err != nil {
		h.connects.release(cl)
		if ok, left := h.claimLog.take(); ok {
			h.log.Warn("CONNECT refused: session not claimed from the cluster", "client", cl.ID, "error", err, "not_logged", left)
		}
		return CodeServerUnavailable, reasonClaimFailed
	}
	if clean {
		return 0, "" // mochi's clean start drops any local session
	}
	if st != nil {
		err := s.ImportSession(*st)
		switch {
		case err == nil:
		case errors.Is(err, ErrConnected):
			h.log.Info("session from the cluster not imported: the client id is connected on this node, which keeps its session",
				"client", cl.ID, "messages", len(msgs))
		case errors.Is(err, ErrSessionExpired):
			h.log.Info("session from the cluster not imported: it expired", "client", cl.ID, "messages", len(msgs))
			return 0, ""
		default: // a store error leaves the session in memory, and was logged
			if _, ok := s.sessionClient(cl.ID); !ok {
				h.log.Error("session from the cluster not imported", "client", cl.ID, "error", err)
			}
		}
	}
	if len(msgs) == 0 {
		return 0, ""
	}
	if n, err := s.QueueSessionMessages(cl.ID, msgs); err != nil {
		h.log.Error("messages of the session from the cluster not all queued", "client", cl.ID, "queued", n, "messages", len(msgs), "error", err)
	}
	return 0, ""
}

// ExportSession takes the disconnected session of clientID away from this
// node, for another node to import: it returns the session's state and
// the messages it still held (queued, and sent but not acknowledged;
// oldest first, each with its origin, QoS, properties and the expiry
// interval it has left; expired ones and QoS 2 flows whose PUBREC came
// already are left out), and removes the session from mochi and from what
// the cluster was told this node subscribes to. Its stored records stay
// until the cluster has stored what this returned and calls
// ForgetExported: a node killed in between finds the session again at
// restart and hands it over then. Its attributes stay too (they are the
// cluster's). It publishes no will: a will is due when a connection ends,
// which was before. A message delivered to the session while it is being
// removed may be in neither the result nor the session any more: the
// cluster replays those from its stream (they came after the session went
// offline). Called by the cluster on its own goroutine; it waits for the
// client id's CONNECT turn (a CONNECT of the id in progress, at most its
// claim and CONNACK) and gives it back before it returns: a caller that
// stores what it returned and then calls ForgetExported should hold the
// turn throughout instead (HoldConnectTurn, ExportSessionHeld).
//
// Errors: ErrNoSession (none here), ErrConnected (its client is connected,
// or connected meanwhile: the session stays).
func (s *Server) ExportSession(clientID string) (SessionState, []Message, error) {
	release := s.HoldConnectTurn(clientID)
	defer release()
	return s.ExportSessionHeld(clientID)
}

// HoldConnectTurn waits for clientID's CONNECT turn (connectlock.go: a
// CONNECT of the id in progress holds it at most through its claim and
// CONNACK) and holds it until the returned function is called (once or
// more). Meanwhile every CONNECT of the id on this node waits in its
// OnConnect, before the cluster's claim. The cluster holds it through a
// release (ExportSessionHeld, storing what that returned,
// ForgetExportedHeld), so that a CONNECT of the id finds the session
// either still here or wholly handed to the cluster, and its claim never
// waits for this node. The turn is not reentrant: until it gives it back,
// the holder calls the Held variants for the id, never ExportSession or
// ForgetExported, and must not wait for a CONNECT of the id.
func (s *Server) HoldConnectTurn(clientID string) (release func()) {
	return s.hook.connects.hold(clientID)
}

// ExportSessionHeld is ExportSession for a caller holding clientID's
// CONNECT turn (HoldConnectTurn).
func (s *Server) ExportSessionHeld(clientID string) (SessionState, []Message, error) {
	st, msgs, err := s.exportSession(clientID)
	if err != nil {
		return SessionState{}, nil, fmt.Errorf("export session %q: %w", clientID, err)
	}
	return st, msgs, nil
}

// exportSession is ExportSession for a caller holding the client id's
// CONNECT turn.
func (s *Server) exportSession(id string) (SessionState, []Message, error) {
	h := s.hook
	cl, ok := s.sessionClient(id)
	if !ok {
		return SessionState{}, nil, ErrNoSession
	}
	if !cl.Closed() {
		return SessionState{}, nil, ErrConnected
	}
	st := s.sessionState(cl)
	msgs := heldMessages(cl, time.Now().Unix())

	nc, err := h.removeSession(cl, codeSessionInvalidated, true) // offline: nobody is kicked
	if cur, ok := s.sessionClient(id); nc != nil || (ok && cur != cl) {
		return SessionState{}, nil, ErrConnected // taken over meanwhile: it keeps the session
	}
	h.storeErr("export session", id, err)
	h.exported.Store(id, struct{}{})
	h.unsent.Delete(id)
	h.ids.Delete(id)
	return st, msgs, nil
}

// sessionState is the SessionState of cl's session as it stands
// (ExportSession, SessionSnapshot): its record with the expiry it has
// left (0 for a session ending with its connection; counted from
// DisconnectedAt for an offline one, which is 0 while online) and its
// subscriptions. The record carries no will: only the client's goroutine
// may read a connected client's will, and an offline session's was due
// at its disconnect. It takes cl's session lock.
func (s *Server) sessionState(cl *mqtt.Client) SessionState {
	mu := s.hook.sessionLock(cl.ID)
	mu.Lock()
	off, expiry := s.offlineExpiry(cl)
	rec := sessionRecordNoWill(cl, off)
	mu.Unlock()
	rec.SessionExpiry = expiry
	return SessionState{Session: *rec, Subscriptions: subscriptionRecords(cl)}
}

// SessionSnapshot returns the state of clientID's session on this node,
// connected or not, without changing anything: what ExportSession would
// return as the state, the held messages aside. The cluster calls it on
// its own goroutine after SessionChanged, to write the session's
// replicated record while the client is online. Errors: ErrNoSession.
func (s *Server) SessionSnapshot(clientID string) (SessionState, error) {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return SessionState{}, fmt.Errorf("session snapshot %q: %w", clientID, ErrNoSession)
	}
	return s.sessionState(cl), nil
}

// ForgetExported deletes the stored records of clientID's session, which
// ExportSession handed to the cluster, once the cluster stored it. It does
// nothing when the session was not exported here or the client id has a
// session here again (imported or connected since): those records are
// the new session's. It waits for the client id's CONNECT turn, as
// ExportSession does. Errors are the store's.
func (s *Server) ForgetExported(clientID string) error {
	if _, ok := s.hook.exported.Load(clientID); !ok {
		return nil
	}
	release := s.HoldConnectTurn(clientID)
	defer release()
	return s.ForgetExportedHeld(clientID)
}

// ForgetExportedHeld is ForgetExported for a caller holding clientID's
// CONNECT turn (HoldConnectTurn).
func (s *Server) ForgetExportedHeld(clientID string) error {
	h := s.hook
	if _, ok := h.exported.LoadAndDelete(clientID); !ok {
		return nil
	}
	mu := h.sessionLock(clientID)
	mu.Lock()
	defer mu.Unlock()
	if _, ok := s.sessionClient(clientID); ok || h.isStored(clientID) {
		return nil
	}
	if err := h.persist.DeleteSession(clientID, true); err != nil {
		return fmt.Errorf("forget exported session %q: %w", clientID, err)
	}
	return nil
}

// heldMessages returns the PUBLISH packets cl's session holds, oldest
// first (by ordering key), as Messages with their origin; expired ones at
// Unix time now are left out, and so are the QoS 2 deliveries the client
// has (awaiting PUBREL or PUBCOMP) and the client's own flows.
func heldMessages(cl *mqtt.Client, now int64) []Message {
	all := cl.State.Inflight.GetAll(false)
	slices.SortStableFunc(all, func(a, b packets.Packet) int { return cmp.Compare(a.Created, b.Created) })
	var out []Message
	for i := range all {
		pk := &all[i]
		if pk.FixedHeader.Type != packets.Publish || (pk.Expiry > 0 && pk.Expiry < now) {
			continue
		}
		m := messageOf(pk, now)
		m.Origin = pk.Origin
		out = append(out, m)
	}
	return out
}

// ImportSession makes st a disconnected session of this node, as restore
// creates one from the store: in mochi with its subscriptions, its expiry
// counted from st.Session.DisconnectedAt (from now if 0), stored (record
// and subscriptions, durably) and its filters reported to the cluster.
// Its messages are queued apart, with QueueSessionMessages. A session of
// the client id this node holds offline is replaced: what it still held
// is queued in the new one (under its subscriptions), before anything
// queued later, so nothing is lost. Called from the CONNECT path
// (claimSession) holding the client id's CONNECT turn; another caller
// racing a CONNECT of the id acts before or after its take-over, as the
// services do.
//
// Errors: ErrInvalidArgument (an empty or reserved client id, a
// subscription of another client id or one a client could not make:
// nothing created), ErrConnected (the client id is connected here:
// nothing changed), ErrSessionExpired (nothing changed); a store error,
// after the session was created in memory (it lives until a restart, as
// any session whose write failed).
func (s *Server) ImportSession(st SessionState) error {
	rec := st.Session
	id := rec.ClientID
	if err := checkImport(&st); err != nil {
		return fmt.Errorf("import session %q: %w", id, err)
	}
	if _, ok := s.hook.exported.LoadAndDelete(id); ok {
		// The records of the session this node exported are still stored
		// (ForgetExported did not run yet): the imported one replaces them.
		s.hook.storeErr("forget exported session", id, s.hook.persist.DeleteSession(id, true))
	}
	since, remaining := s.sessionLeft(&rec, time.Now().Unix())
	if remaining <= 0 {
		return fmt.Errorf("import session %q: %w", id, ErrSessionExpired)
	}
	var held []Message
	if cur, ok := s.sessionClient(id); ok {
		if !cur.Closed() {
			return fmt.Errorf("import session %q: %w", id, ErrConnected)
		}
		_, msgs, err := s.exportSession(id)
		if err != nil {
			return fmt.Errorf("import session %q: replace the local session: %w", id, err)
		}
		held = msgs
		s.log.Warn("imported session replaces the local offline session", "client", id, "held_messages", len(msgs))
	}
	rec.DisconnectedAt = since // offline, its will (if any) long due: never a crash will (publishCrashWills)
	subs := make([]store.Subscription, len(st.Subscriptions))
	filters := make([]string, len(subs))
	for i, sub := range st.Subscriptions {
		sub.ClientID = id
		subs[i], filters[i] = sub, sub.Filter
	}
	storeErr := s.hook.storeSession(&rec, subs)
	cl := s.offlineClient(&rec, since, remaining)
	for i := range subs {
		s.addSubscription(cl, subscriptionPacket(&subs[i]))
	}
	s.hook.reportFilters(id, filters, true) // the claim recorded this state: no SessionChanged
	if len(held) > 0 {
		if _, err := s.QueueSessionMessages(id, held); err != nil {
			s.log.Error("messages of the replaced local session not all queued", "client", id, "error", err)
		}
	}
	if storeErr != nil {
		s.hook.storeErr("import session", id, storeErr)
		return fmt.Errorf("import session %q: %w", id, storeErr)
	}
	return nil
}

// checkImport refuses a session state no client could have made; the
// error wraps ErrInvalidArgument.
func checkImport(st *SessionState) error {
	id := st.Session.ClientID
	switch {
	case id == "":
		return fmt.Errorf("%w: empty client id", ErrInvalidArgument)
	case id == mqtt.InlineClientId || id == ClusterClientID:
		return fmt.Errorf("%w: client id reserved for the broker", ErrInvalidArgument)
	}
	if err := checkString("client id", id); err != nil {
		return err
	}
	for i := range st.Subscriptions {
		sub := &st.Subscriptions[i]
		if sub.ClientID != "" && sub.ClientID != id {
			return fmt.Errorf("%w: subscription %q belongs to client %q", ErrInvalidArgument, sub.Filter, sub.ClientID)
		}
		info := SubscriptionInfo{Filter: sub.Filter, QoS: sub.QoS, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: sub.Identifier}
		if err := checkSubscription(&info); err != nil {
			return fmt.Errorf("subscription %q: %w", sub.Filter, err)
		}
	}
	return nil
}

// QueueSessionMessages hands msgs, in order, to the session of clientID,
// each as one delivery (deliverTo) under the client's subscription that
// matches its topic (its matching subscriptions merged, shared ones
// included): at the lower QoS of the two, with the subscription's
// identifiers, Retain only for Retain As Published. A message no
// subscription matches, or whose Origin is clientID under No Local, is
// skipped. An offline session keeps QoS 1/2 copies (stored) and drops QoS
// 0 ones, and the session's queue limit drops what is beyond it, as for
// any delivery (counted). It returns how many messages matched a
// subscription and were handed over.
//
// Errors: ErrNoSession (nothing queued); otherwise the errors of the
// messages that could not be handed over (ErrInvalidArgument for a message
// MQTT could not carry, a failed write to the connection), joined, each
// naming the message's index and topic, while the others were.
func (s *Server) QueueSessionMessages(clientID string, msgs []Message) (queued int, err error) {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return 0, fmt.Errorf("queue messages for %q: %w", clientID, ErrNoSession)
	}
	var errs []error
	for i := range msgs {
		m := msgs[i]
		if err := checkMessage(&m); err != nil {
			errs = append(errs, fmt.Errorf("queue message %d on %q for %q: %w", i, m.Topic, clientID, err))
			continue
		}
		sub, ok := s.clientSubscription(clientID, m.Topic)
		if !ok || (sub.NoLocal && m.Origin == clientID) {
			continue
		}
		if err := s.deliverTo(cl, sub, m, m.Origin); err != nil {
			errs = append(errs, fmt.Errorf("queue message %d on %q for %q: %w", i, m.Topic, clientID, err))
			continue
		}
		queued++
	}
	return queued, errors.Join(errs...)
}
