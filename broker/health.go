package broker

import (
	"errors"
	"time"

	"github.com/propolis-mqtt/propolis/broker/store"
)

// This file is the broker's side of a full disk: how a PUBLISH the store
// refused is answered, and what StoreHealth reports. The store's free-space
// guard (store/space.go) decides; the broker refuses, counts and reports.
//
// With less free space than store.min_free_space:
//
//   - a QoS 1/2 PUBLISH is refused before its acknowledgement: MQTT 5 gets
//     PUBACK/PUBREC 0x97 (quota exceeded), an MQTT 3.1.1 sender is
//     disconnected (it cannot be told otherwise); nothing is acknowledged
//     that is not stored;
//   - a SUBSCRIBE of a persistent session gets 0x97 (0x80 for 3.1.1) for
//     each filter the store refuses, and is not subscribed;
//   - a retained message is kept in memory but not stored (its QoS 1/2
//     PUBLISH was refused before, so only QoS 0 retained messages get
//     there);
//   - QoS 0 messages, deliveries, acknowledgements and reads go on;
//   - copies of an accepted message for offline persistent subscribers use
//     half of the reserve; should even that run out, the copy stays queued
//     in memory, is counted (UnsavedCopies) and the message's pending record
//     is kept, so a restart re-publishes it.
//
// The store leaves the full state by itself once space is back (with a
// margin of an eighth of the reserve), and the broker acknowledges again.

// StoreHealth is the state of the broker's store, for health checks and a
// later metrics endpoint. Server.StoreHealth returns it.
type StoreHealth struct {
	// SpaceKnown is false when the Persistence does not report free space
	// (an Options.Persistence without a Space method); the space fields
	// are zero then.
	SpaceKnown bool
	// DiskFull is true while QoS 1/2 messages are refused for lack of
	// space (less than store.min_free_space free).
	DiskFull bool
	// FullSince is when the store last became full; zero while not full.
	FullSince time.Time
	// FreeBytes is the data folder's free space as last read; MinFreeBytes
	// the reserve, store.min_free_space.
	FreeBytes, MinFreeBytes uint64
	// RefusedWrites counts every store write refused for lack of space.
	RefusedWrites uint64
	// RefusedPublishes counts the QoS 1/2 PUBLISH packets refused for lack
	// of space (0x97, or a 3.1.1 disconnect).
	RefusedPublishes uint64
	// UnsavedCopies counts queued copies for persistent sessions that the
	// store did not take: they are delivered from memory, and their
	// message's pending record is kept for a restart.
	UnsavedCopies uint64
}

// spaceReporter is the optional Persistence method StoreHealth reads;
// *store.Store has it.
type spaceReporter interface{ Space() store.Space }

var _ spaceReporter = (*store.Store)(nil)

// StoreHealth reports whether the store is refusing work for lack of disk
// space, with the figures behind it. Safe from any goroutine; it costs at
// most one statfs (when the store's last reading is older than 100ms), so a
// health check also sees space come back without any traffic.
func (s *Server) StoreHealth() StoreHealth {
	h := StoreHealth{
		RefusedPublishes: s.hook.refusedPublishes.Load(),
		UnsavedCopies:    s.hook.unsavedCopies.Load(),
	}
	if r, ok := s.persist.(spaceReporter); ok {
		sp := r.Space()
		h.SpaceKnown = true
		h.DiskFull, h.FullSince = sp.Full, sp.FullSince
		h.FreeBytes, h.MinFreeBytes, h.RefusedWrites = sp.Free, sp.MinFree, sp.Refused
	}
	return h
}

// storeRefusal is the verdict for a PUBLISH whose pending record the store
// refused: 0x97 quota exceeded when the disk is full, 0x80 otherwise. For
// MQTT 3.1.1 failPublish disconnects either way.
func storeRefusal(err error) Verdict {
	if errors.Is(err, store.ErrDiskFull) {
		return Verdict{Decision: Deny, ReasonCode: CodeQuotaExceeded, ReasonString: "broker disk full"}
	}
	return Verdict{Decision: Deny, ReasonCode: CodeUnspecifiedError, ReasonString: "message store unavailable"}
}
