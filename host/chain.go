package host

import (
	"sort"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// chain is an immutable snapshot of the running extensions in priority
// order (higher first, ties by id), and for each chain callback the ones
// the host calls for it. It is swapped atomically, so a client's calls
// always see a whole chain. An extension stopped for crash-looping stays
// in it, so every decision that would have consulted it is denied until
// the operator replaces, disables or removes it (see Host.fail).
type chain struct {
	all []*extension
	by  [abi.NumCallbacks][]*extension
	// active is the set of interception points some extension takes
	// (Host.Active).
	active broker.InterceptPoints
}

// callers returns, in priority order, the extensions the host calls for cb.
func (c *chain) callers(cb abi.Callback) []*extension { return c.by[cb] }

// rebuildChain publishes a new chain from the running extensions.
func (h *Host) rebuildChain() {
	// Built and stored under the lock: two rebuilds racing (the scanner and
	// a crash-loop stop) must not store an older snapshot last.
	h.mu.Lock()
	defer h.mu.Unlock()
	all := make([]*extension, 0, len(h.exts))
	for _, e := range h.exts {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].manifest.Priority != all[j].manifest.Priority {
			return all[i].manifest.Priority > all[j].manifest.Priority
		}
		return all[i].ID() < all[j].ID()
	})
	c := &chain{all: all}
	for _, e := range all {
		for cb, info := range abi.Callbacks {
			if info.Bit != 0 && e.has(info.Bit) {
				c.by[cb] = append(c.by[cb], e)
			}
		}
	}
	c.active = c.activePoints()
	h.chain.Store(c)
}

// SecurityExtensions names the running extensions that authenticate.
func (h *Host) SecurityExtensions() []string {
	auth := h.chain.Load().callers(abi.CallbackAuthenticate)
	out := make([]string, len(auth))
	for i, e := range auth {
		out[i] = e.ID()
	}
	return out
}

// SecurityServing says what the CONNECT chain does now, the one place
// /readyz (Ready), the security log lines and propolis_security_extensions
// read it from: n is how many security extensions serve (in the chain and
// not stopped after a crash loop). n is 0 when the chain refuses every
// CONNECT: none is in it, or the first one it asks was stopped after a
// crash loop (it stays in the chain and fails closed, so the ones behind
// it are never asked); blocker then names that one ("" otherwise).
func (h *Host) SecurityServing() (n int, blocker string) {
	auth := h.chain.Load().callers(abi.CallbackAuthenticate)
	if len(auth) > 0 && auth[0].stopped.Load() {
		return 0, auth[0].ID()
	}
	for _, e := range auth {
		if !e.stopped.Load() {
			n++
		}
	}
	return n, ""
}

// serving reports whether a security extension can let clients in
// (SecurityServing).
func (h *Host) serving() bool {
	n, _ := h.SecurityServing()
	return n > 0
}

// checkSecurity logs a change in whether a security extension serves: a
// loud warning when the last one goes away at runtime (removed, disabled,
// stopped after a crash loop: every client is now refused), an info line
// when one serves again. id and cause say what just happened. Nothing is
// logged before LoadAll has finished (the broker's start-up banner speaks
// then) or once Close has begun.
func (h *Host) checkSecurity(id, cause string) {
	select {
	case <-h.done:
		return
	default:
	}
	h.mu.Lock()
	was, now, known := h.secured, h.serving(), h.securityKnown
	h.secured = now
	h.mu.Unlock()
	switch {
	case !known || was == now:
	case !now:
		h.log.Warn("NO SECURITY EXTENSION IS SERVING: EVERY CLIENT IS NOW REFUSED, until one is added, enabled or replaced",
			"cause", id+" "+cause)
	default:
		h.log.Info("a security extension is serving again: clients are accepted as it decides",
			"cause", id+" "+cause, "security_extensions", h.SecurityExtensions())
	}
}
