package host

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file is the authorization cache (ABI.md section 5, cache_result,
// 1.4): an extension's propolis_authorize_publish or
// propolis_authorize_subscribe may mark its answer cacheable for some
// seconds; the host then answers the same question on the same connection
// (the topic or filter, the QoS and the flags) without calling the
// extension.
//
// The answers live with the connection's client authorizer, so they end
// with the connection and never cross to another client. Each extension
// has its own table there, bounded by its limits.authorize_cache_entries;
// a table of an extension that stopped (a reload, a disable, a crash-loop
// stop) is never read again (get checks) and is dropped at the
// connection's next locked look (prune). auth_cache_flush moves the extension's flush
// generation on (authCache.gen), and an answer kept under an older
// generation is no longer read: a flush of any client id drops every
// connection's authorization answers of that extension.

// decisionKey is the question an authorize call answered.
type decisionKey struct {
	// name is the topic (authorize_publish) or the filter
	// (authorize_subscribe).
	name string
	cb   abi.Callback
	// flags are the record's QoS and flags (keyFlags).
	flags uint16
}

// keyFlags packs what, besides the name, an authorize record asks about.
func keyFlags(qos byte, flags uint8) uint16 { return uint16(qos) | uint16(flags)<<8 }

// keptDecision is one kept answer.
type keptDecision struct {
	v       broker.Verdict
	decided bool   // false for NEXT
	expires int64  // coarse clock (Host.now)
	gen     uint64 // the extension's flush generation when the call began
}

// extDecisions are one extension's answers on one connection.
type extDecisions struct {
	ext *extension
	m   map[decisionKey]keptDecision
}

// recentAnswer is the answer a connection kept last, read without the
// lock: a publisher repeating one topic is answered with three atomic
// loads and a string comparison. It is never changed, only replaced.
type recentAnswer struct {
	ext   *extension
	key   decisionKey
	d     keptDecision
	shard uint8
}

// decisionCache is one connection's kept authorization answers. The zero
// value is empty; a connection whose extensions never cache costs two
// atomic loads per call.
type decisionCache struct {
	// recent is the answer kept last (put), or nil since it was dropped.
	recent atomic.Pointer[recentAnswer]
	used   atomic.Bool
	mu     sync.Mutex
	byExt  []extDecisions
	// shard is the authCache.authzHits counter this connection counts
	// its hits in, chosen at its first kept answer.
	shard uint8
}

// shardSeq deals hit counters out to connections in turn.
var shardSeq atomic.Uint32

// get returns e's kept answer to k, if it has neither expired nor been
// flushed.
func (c *decisionCache) get(e *extension, k *decisionKey, now int64) (keptDecision, bool) {
	if r := c.recent.Load(); r != nil && r.ext == e && r.key == *k &&
		now < r.d.expires && r.d.gen == e.authCache.generation() && !e.stopped.Load() {
		e.authCache.authzHits[r.shard].n.Add(1)
		return r.d, true
	}
	if !c.used.Load() {
		return keptDecision{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune()
	for i := range c.byExt {
		t := &c.byExt[i]
		if t.ext != e {
			continue
		}
		d, ok := t.m[*k]
		if !ok {
			return d, false
		}
		if now >= d.expires || d.gen != e.authCache.generation() {
			c.drop(t, *k)
			return d, false
		}
		e.authCache.authzHits[c.shard].n.Add(1)
		return d, true
	}
	return keptDecision{}, false
}

// prune drops the tables of extensions that stopped (a reload, a
// disable, a crash-loop stop), and recent when it is one of theirs: their
// answers are never given again. Under mu.
func (c *decisionCache) prune() {
	live := c.byExt[:0]
	for _, x := range c.byExt {
		if !x.ext.stopped.Load() {
			live = append(live, x)
		}
	}
	clear(c.byExt[len(live):])
	c.byExt = live
	if r := c.recent.Load(); r != nil && r.ext.stopped.Load() {
		c.recent.Store(nil)
	}
}

// drop deletes t's answer to k, and recent when it is that answer. Under
// mu.
func (c *decisionCache) drop(t *extDecisions, k decisionKey) {
	delete(t.m, k)
	if r := c.recent.Load(); r != nil && r.ext == t.ext && r.key == k {
		c.recent.Store(nil)
	}
}

// put keeps e's answer d to k. A table at e's bound makes room by
// dropping the expired answers among a few (evictSample), or else the one
// among them that expires first.
func (c *decisionCache) put(e *extension, k *decisionKey, d keptDecision, now int64) {
	// A table's memory is bounded by its entries times abi.MaxKeptName
	// (plus ~150 bytes each), not by what clients send (a topic may have
	// 64 KiB).
	if len(k.name) > abi.MaxKeptName || e.stopped.Load() {
		return
	}
	k.name = strings.Clone(k.name) // the broker's topic may be a view of a packet buffer
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.gen != e.authCache.generation() { // flushed while the call ran
		return
	}
	c.prune()
	if e.stopped.Load() { // stopped since the check above: keep nothing more of it
		return
	}
	var t *extDecisions
	for i := range c.byExt {
		if c.byExt[i].ext == e {
			t = &c.byExt[i]
		}
	}
	if t == nil {
		c.byExt = append(c.byExt, extDecisions{ext: e, m: map[decisionKey]keptDecision{}})
		t = &c.byExt[len(c.byExt)-1]
	}
	if _, ok := t.m[*k]; !ok && len(t.m) >= e.authorizeCacheMax {
		makeRoom(t.m, func(old keptDecision) (int64, bool) { return old.expires, now >= old.expires || old.gen != d.gen },
			func(key decisionKey) { c.drop(t, key) })
	}
	if !c.used.Load() {
		c.shard = uint8(shardSeq.Add(1) % hitShards)
	}
	t.m[*k] = d
	c.recent.Store(&recentAnswer{ext: e, key: *k, d: d, shard: c.shard})
	c.used.Store(true)
}

// keep keeps the answer a of e, a call whose result cache_result marked,
// to question k on c's connection: not the answer of a successor (the
// chain was taken before a reload) nor one made without a refused host
// service. gen is the flush generation taken before the call. The
// authorize callers call it only when a.out.cacheFor is set, so a call
// nobody marked pays one comparison.
func (c *client) keep(e *extension, a *answer, k decisionKey, v broker.Verdict, decided bool, gen uint64) {
	if a.ext != e || a.out.rateLimited {
		return
	}
	now := c.host.coarseNow()
	c.kept.put(e, &k, keptDecision{v: v, decided: decided, expires: now + int64(a.out.cacheFor)*1e9, gen: gen}, now)
}
