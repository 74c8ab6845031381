package broker

import (
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// restore loads the store into mochi: sessions (as disconnected clients whose
// expiry keeps counting from when they went offline), their subscriptions and
// queued messages, retained messages; then it re-publishes the pending
// messages a crash left between PUBACK and fan-out. mochi's own loader is
// not used: it loses message expiry and restarts every session's expiry.
func (s *Server) restore() error {
	snap, err := s.store.Load()
	if err != nil {
		return fmt.Errorf("restore from %s: %w", s.store.Dir(), err)
	}
	h, m := s.hook, s.mochi
	now := time.Now().Unix()
	maxExpiry := int64(m.Options.Capabilities.MaximumSessionExpiryInterval)
	var expired, sessions int

	for i := range snap.Sessions {
		rec := &snap.Sessions[i]
		expiry := maxExpiry
		if rec.ProtocolVersion >= 5 {
			expiry = min(int64(rec.SessionExpiry), maxExpiry)
		}
		since := rec.DisconnectedAt
		if since == 0 { // it was connected when the broker stopped
			since = now
		}
		remaining := since + expiry - now
		if remaining <= 0 {
			if err := s.store.DeleteSession(rec.ClientID, false); err != nil {
				return fmt.Errorf("remove expired session %q: %w", rec.ClientID, err)
			}
			expired++
			continue
		}
		cl := m.NewClient(nil, rec.Listener, rec.ClientID, false)
		cl.Properties.Username = rec.Username
		// A restored session is held as an MQTT 5 session with the expiry it
		// has left: mochi then expires it on time whatever protocol the
		// client spoke. The client's next CONNECT replaces these properties.
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
		m.Clients.Add(cl)
		h.setStored(rec.ClientID, true)
		sessions++
	}

	for i := range snap.Subscriptions {
		rec := &snap.Subscriptions[i]
		cl, ok := m.Clients.Get(rec.ClientID)
		if !ok {
			continue // its session expired above; DeleteSession removed it
		}
		sub := subscriptionPacket(rec)
		if m.Topics.Subscribe(rec.ClientID, sub) {
			atomic.AddInt64(&m.Info.Subscriptions, 1)
		}
		cl.State.Subscriptions.Add(sub.Filter, sub)
	}

	var maxCreated int64
	for i := range snap.Inflight {
		rec := &snap.Inflight[i]
		cl, ok := m.Clients.Get(rec.ClientID)
		if !ok {
			continue
		}
		if cl.State.Inflight.Set(messagePacket(rec)) {
			atomic.AddInt64(&m.Info.Inflight, 1)
		}
		maxCreated = max(maxCreated, rec.Created)
	}

	for i := range snap.Retained {
		rec := &snap.Retained[i]
		if rec.Expiry > 0 && rec.Expiry < now {
			if err := s.store.DeleteRetained(rec.Topic, false); err != nil {
				return fmt.Errorf("remove expired retained message %q: %w", rec.Topic, err)
			}
			continue
		}
		m.Topics.RetainMessage(messagePacket(rec))
		maxCreated = max(maxCreated, rec.Created)
	}
	atomic.StoreInt64(&m.Info.Retained, int64(m.Topics.Retained.Len()))
	for i := range snap.Pending {
		maxCreated = max(maxCreated, snap.Pending[i].Message.Created)
	}
	h.seq.Store(maxCreated)

	// Pending messages were acknowledged to their publisher but maybe not
	// queued for every subscriber. Re-publish them in order, before any
	// client can connect; a subscriber that already had one gets it again
	// (at-least-once). Their retained copy, if any, is already stored.
	for i := range snap.Pending {
		p := &snap.Pending[i]
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
	for i := range snap.Pending {
		if err := s.store.DeletePending(snap.Pending[i].Seq, i == len(snap.Pending)-1); err != nil {
			return fmt.Errorf("remove re-published message %d: %w", snap.Pending[i].Seq, err)
		}
	}

	// Wills of clients that were connected when the broker stopped without
	// a clean shutdown: their connections were lost, so their wills are
	// due now (authorized when they connected; a will delay is not waited
	// for, the restart having taken its own time).
	wills := 0
	for i := range snap.Sessions {
		rec := &snap.Sessions[i]
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
			return fmt.Errorf("publish the will of %q: %w", rec.ClientID, err)
		}
		// Sent once: the session went offline now, without a will.
		sent := *rec
		sent.Will, sent.DisconnectedAt = nil, now
		if err := s.store.PutSession(&sent, true); err != nil {
			return fmt.Errorf("record the will of %q as sent: %w", rec.ClientID, err)
		}
		wills++
	}

	s.log.Info("store restored", "dir", s.store.Dir(), "sessions", sessions, "expired_sessions", expired,
		"subscriptions", len(snap.Subscriptions), "queued", len(snap.Inflight), "retained", len(snap.Retained),
		"republished", len(snap.Pending), "wills", wills)
	return nil
}
