package broker

import (
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/store"
)

// restore loads what Persistence holds into mochi, from New on the caller's
// goroutine, before any client can connect. Its phases, in order:
//
//  1. restoreSessions: sessions, as disconnected clients whose expiry keeps
//     counting from when they went offline;
//  2. restoreSubscriptions and restoreQueued: their subscriptions and queued
//     messages;
//  3. restoreRetained: retained messages;
//  4. the ordering counter starts above every stored key;
//  5. republishPending: the pending messages a crash left between PUBACK
//     and fan-out;
//  6. publishCrashWills: the wills of clients connected at a crash.
//
// mochi's own loader is not used: it loses message expiry and restarts
// every session's expiry. Any failure fails New.
func (s *Server) restore() error {
	snap, err := s.persist.Load()
	if err != nil {
		return fmt.Errorf("restore from %s: %w", s.persist.Dir(), err)
	}
	now := time.Now().Unix()

	sessions, expired, err := s.restoreSessions(snap.Sessions, now)
	if err != nil {
		return err
	}
	s.restoreSubscriptions(snap.Subscriptions)
	s.clusterRestored()
	lastQueued := s.restoreQueued(snap.Inflight)
	lastRetained, err := s.restoreRetained(snap.Retained, now)
	if err != nil {
		return err
	}
	last := max(lastQueued, lastRetained)
	for i := range snap.Pending {
		last = max(last, snap.Pending[i].Message.Created)
	}
	s.hook.seq.Store(last)

	if err := s.republishPending(snap.Pending, now); err != nil {
		return err
	}
	wills, err := s.publishCrashWills(snap.Sessions, now)
	if err != nil {
		return err
	}

	s.log.Info("store restored", "dir", s.persist.Dir(), "sessions", sessions, "expired_sessions", expired,
		"subscriptions", len(snap.Subscriptions), "queued", len(snap.Inflight), "retained", len(snap.Retained),
		"republished", len(snap.Pending), "wills", wills)
	return nil
}

// restoreSessions adds each stored session to mochi as a disconnected
// client, held as an MQTT 5 session with the expiry it has left (counted
// from when it went offline, or from now for one that was connected when the
// broker stopped). A session whose expiry ran out while the broker was down
// is deleted, with its subscriptions and queued messages. It returns how
// many sessions were restored and how many had expired.
func (s *Server) restoreSessions(recs []store.Session, now int64) (sessions, expired int, err error) {
	for i := range recs {
		rec := &recs[i]
		since, remaining := s.sessionLeft(rec, now)
		if remaining <= 0 {
			if err := s.persist.DeleteSession(rec.ClientID, false); err != nil {
				return sessions, expired, fmt.Errorf("remove expired session %q: %w", rec.ClientID, err)
			}
			s.hook.dropAttributes(rec.ClientID)
			expired++
			continue
		}
		s.offlineClient(rec, since, remaining)
		s.hook.setStored(rec.ClientID, true)
		sessions++
	}
	return sessions, expired, nil
}

// sessionLeft returns when the session of rec went offline (now for one
// that was connected when its broker stopped) and how many seconds of its
// expiry are left at Unix time now (0 or less: expired). Its expiry is the
// record's for an MQTT 5 session or one whose expiry was set (by the
// services or an authenticator), else mqtt.max_session_expiry, never more
// than that maximum. restore and ImportSession share it.
func (s *Server) sessionLeft(rec *store.Session, now int64) (since, remaining int64) {
	maxExpiry := int64(s.mochi.Options.Capabilities.MaximumSessionExpiryInterval)
	expiry := maxExpiry
	if rec.ProtocolVersion >= 5 || rec.SessionExpirySet {
		expiry = min(int64(rec.SessionExpiry), maxExpiry)
	}
	since = rec.DisconnectedAt
	if since == 0 {
		since = now
	}
	return since, since + expiry - now
}

// offlineClient adds the session of rec to mochi as a disconnected client
// and returns it: held as an MQTT 5 session with remaining seconds of
// expiry (mochi then expires it on time whatever protocol the client
// spoke; the client's next CONNECT replaces these properties), offline
// since the Unix time since (offlineSince). It writes nothing to the
// store. restore and ImportSession share it.
func (s *Server) offlineClient(rec *store.Session, since, remaining int64) *mqtt.Client {
	m := s.mochi
	cl := m.NewClient(nil, rec.Listener, rec.ClientID, false)
	cl.Properties.Username = rec.Username
	cl.Properties.ProtocolVersion = 5
	cl.Properties.Props = packets.Properties{
		SessionExpiryInterval:     uint32(remaining),
		SessionExpiryIntervalFlag: true,
		ReceiveMaximum:            rec.ReceiveMaximum,
		TopicAliasMaximum:         rec.TopicAliasMaximum,
		MaximumPacketSize:         rec.MaximumPacketSize,
	}
	cl.Net.Remote = rec.Remote
	cl.Stop(packets.ErrServerShuttingDown)
	s.hook.restoredOffline.Store(cl, since)
	m.Clients.Add(cl)
	return cl
}

// restoreSubscriptions subscribes the restored sessions to their stored
// filters. Subscriptions of a session that expired in restoreSessions are
// skipped (DeleteSession removed them).
func (s *Server) restoreSubscriptions(recs []store.Subscription) {
	for i := range recs {
		rec := &recs[i]
		cl, ok := s.mochi.Clients.Get(rec.ClientID)
		if !ok {
			continue
		}
		s.addSubscription(cl, subscriptionPacket(rec))
	}
}

// addSubscription puts sub in cl's session and in mochi's topic index, as
// mochi's SUBSCRIBE does, without storing or reporting it (restore,
// ImportSession and the Subscriptions service each do their part).
func (s *Server) addSubscription(cl *mqtt.Client, sub packets.Subscription) {
	if s.mochi.Topics.Subscribe(cl.ID, sub) {
		atomic.AddInt64(&s.mochi.Info.Subscriptions, 1)
	}
	cl.State.Subscriptions.Add(sub.Filter, sub)
}

// restoreQueued puts the stored in-flight and queued messages back in their
// restored sessions, and returns the largest ordering key (Created) among
// them.
func (s *Server) restoreQueued(recs []store.Message) (last int64) {
	m := s.mochi
	for i := range recs {
		rec := &recs[i]
		cl, ok := m.Clients.Get(rec.ClientID)
		if !ok {
			continue
		}
		if cl.State.Inflight.Set(messagePacket(rec)) {
			atomic.AddInt64(&m.Info.Inflight, 1)
		}
		last = max(last, rec.Created)
	}
	return last
}

// restoreRetained loads the stored retained messages into mochi, deleting
// those that expired while the broker was down, and returns the largest
// ordering key among those kept.
func (s *Server) restoreRetained(recs []store.Message, now int64) (last int64, err error) {
	m := s.mochi
	for i := range recs {
		rec := &recs[i]
		if rec.Expiry > 0 && rec.Expiry < now {
			if err := s.persist.DeleteRetained(rec.Topic, false); err != nil {
				return last, fmt.Errorf("remove expired retained message %q: %w", rec.Topic, err)
			}
			continue
		}
		m.Topics.RetainMessage(messagePacket(rec))
		s.hook.retained.sync(m.Topics, rec.Topic)
		last = max(last, rec.Created)
	}
	atomic.StoreInt64(&m.Info.Retained, int64(m.Topics.Retained.Len()))
	return last, nil
}

// republishPending re-publishes, through mochi's inline client, the pending
// messages: acknowledged to their publisher but maybe not queued for every
// subscriber. They go out in order, before any client can connect, with
// their stored ordering key and expiry (see hook.stampInline); a subscriber
// that already had one gets it again (at-least-once). Their retained copy,
// if any, is already stored. Expired ones are skipped. Every pending record
// is then deleted, the last delete durable, except those of messages with a
// copy the store refused for lack of space: they stay for the next start.
func (s *Server) republishPending(pending []store.PendingMessage, now int64) error {
	h, m := s.hook, s.mochi
	for i := range pending {
		p := &pending[i]
		if p.Message.Expiry > 0 && p.Message.Expiry < now {
			continue
		}
		pk := messagePacket(&p.Message)
		pk.FixedHeader.Type = packets.Publish
		pk.FixedHeader.Retain = false
		inline, ok := m.Clients.Get(mqtt.InlineClientId)
		if !ok {
			return fmt.Errorf("re-publish pending messages: mochi has no inline client")
		}
		h.replay = &p.Message
		err := m.InjectPacket(inline, pk)
		h.replay = nil
		if err != nil {
			return fmt.Errorf("re-publish pending message %d on %q: %w", p.Seq, p.Message.Topic, err)
		}
	}
	done := make([]uint64, 0, len(pending))
	for i := range pending {
		// A copy the store refused (a full disk, see health.go) keeps its
		// pending record for the next start.
		if _, kept := h.unsaved.LoadAndDelete(pending[i].Message.Created); kept {
			s.log.Warn("pending message kept: a queued copy could not be stored", "seq", pending[i].Seq, "topic", pending[i].Message.Topic)
			continue
		}
		done = append(done, pending[i].Seq)
	}
	for i, seq := range done {
		if err := s.persist.DeletePending(seq, i == len(done)-1); err != nil {
			return fmt.Errorf("remove re-published message %d: %w", seq, err)
		}
	}
	return nil
}

// publishCrashWills publishes the wills of clients that were connected when
// the broker stopped without a clean shutdown: their connections were lost,
// so their wills are due now (authorized when they connected; a will delay
// is not waited for, the restart having taken its own time). Each is sent
// once: its session is then stored as gone offline now, without a will. Only
// sessions restoreSessions kept are considered. It returns how many wills
// were published.
func (s *Server) publishCrashWills(recs []store.Session, now int64) (wills int, err error) {
	m := s.mochi
	for i := range recs {
		rec := &recs[i]
		if rec.DisconnectedAt != 0 || rec.Will == nil {
			continue
		}
		if _, ok := m.Clients.Get(rec.ClientID); !ok {
			continue
		}
		w := rec.Will
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: w.QoS, Retain: w.Retain},
			TopicName: w.Topic, Payload: w.Payload, Origin: rec.ClientID,
			PacketID: 1} // required by validation for QoS > 0; the inline client sends no ack
		for _, u := range w.Properties.User {
			pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Value})
		}
		inline, _ := m.Clients.Get(mqtt.InlineClientId)
		if err := m.InjectPacket(inline, pk); err != nil {
			return wills, fmt.Errorf("publish the will of %q: %w", rec.ClientID, err)
		}
		_ = s.hook.forward(&pk, rec.ClientID) // logged; a will has nobody to refuse
		sent := *rec
		sent.Will, sent.DisconnectedAt = nil, now
		if err := s.persist.PutSession(&sent, true); err != nil {
			return wills, fmt.Errorf("record the will of %q as sent: %w", rec.ClientID, err)
		}
		wills++
	}
	return wills, nil
}
