package host

import "github.com/propolis-mqtt/propolis/broker"

// This file holds the broker's services for the host services of the next
// ABI minor version (session attributes, client, subscription, retained
// and publish services): they call the broker through what UseBroker
// stored, never through a broker type. The host is created before the
// broker (the broker takes the host as its Extensions), so the two are
// wired in two steps; see cmd/propolis.

// servicesRef boxes the broker.Services interface for an atomic.Pointer.
type servicesRef struct{ s broker.Services }

// UseBroker gives the host the broker's services. cmd/propolis calls it
// once, after broker.New and before LoadAll, so that extensions starting
// find them; a later call replaces them (tests). Safe from any goroutine:
// host services read them with one atomic load per call.
func (h *Host) UseBroker(s broker.Services) {
	h.svc.Store(&servicesRef{s: s})
}

// services returns what UseBroker stored, or nil before it ran (a host
// without a broker: host services then fail as "not available").
func (h *Host) services() broker.Services {
	if r := h.svc.Load(); r != nil {
		return r.s
	}
	return nil
}
