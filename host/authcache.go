package host

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file is the authentication cache (ABI.md section 5, cache_result
// and auth_cache_flush): an extension's propolis_authenticate may mark its
// answer cacheable for some seconds; the host then answers the same
// CONNECT identity without calling the extension (nor whatever the
// extension would have called, an identity service).
//
// Each extension has its own cache, created with it: a reload, a disable
// and a crash-loop stop (which leaves the extension stopped in the chain)
// start from none. The key is an HMAC-SHA256, under a key drawn at random
// for each process, of the CONNECT's identity: client id, user name,
// password, listener, TLS peer subject and SANs. The password itself is
// never kept, nor a hash of it anyone could test guesses against without
// the process's key.

// authKey identifies a CONNECT in the cache.
type authKey [sha256.Size]byte

// cachedAnswer is one kept answer.
type cachedAnswer struct {
	decision abi.Decision
	// res is the answer to a DENY or ALLOW; for ALLOW its Client is built
	// anew from perms for each CONNECT.
	res      broker.AuthResult
	perms    []permission
	host     *Host
	username string
	clientID string
	expires  int64 // monotonic ns
}

// authCache is one extension's cache, at most max answers.
type authCache struct {
	max int

	mu sync.Mutex
	m  map[authKey]*cachedAnswer
	// gen counts the flushes (of one client id or of all). A call takes
	// it before it runs; an answer whose call began before a flush is not
	// kept, so that a call in flight cannot undo the flush.
	// Written under mu.
	gen atomic.Uint64
	// examined counts the entries eviction looked at (tests read it).
	examined int

	// size mirrors len(m), so that an extension that never caches costs
	// no hash per CONNECT.
	size atomic.Int64
	// Counters for Status.
	hits, stored atomic.Int64
	// authzHits counts the authorize calls answered from connections'
	// kept answers (decisions.go), in shards so that connections on
	// different CPUs do not share one cache line per PUBLISH. The answers
	// themselves live with the connections.
	authzHits [hitShards]paddedCount
}

// hitShards is how many counters authzHits spreads over.
const hitShards = 8

// paddedCount is a counter alone on its cache line.
type paddedCount struct {
	n atomic.Int64
	_ [56]byte
}

// authorizeHits returns the sum of authzHits.
func (c *authCache) authorizeHits() int64 {
	var n int64
	for i := range c.authzHits {
		n += c.authzHits[i].n.Load()
	}
	return n
}

func newAuthCache(max int) *authCache {
	return &authCache{max: max, m: map[authKey]*cachedAnswer{}}
}

// empty reports whether the cache holds no answer.
func (c *authCache) empty() bool { return c.size.Load() == 0 }

// get returns the answer kept for k, if it has not expired.
func (c *authCache) get(k *authKey) (*cachedAnswer, bool) {
	now := monotonic()
	c.mu.Lock()
	a, ok := c.m[*k]
	if ok && now >= a.expires {
		delete(c.m, *k)
		c.size.Store(int64(len(c.m)))
		ok = false
	}
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	}
	return a, ok
}

// generation returns the flush generation, for a later put.
func (c *authCache) generation() uint64 { return c.gen.Load() }

// evictSample is how many entries a full cache looks at to make room for
// one more.
const evictSample = 8

// put keeps a for ttl, unless the cache was flushed since gen (taken by
// generation before the call that produced a). A full cache makes room
// by looking at a few entries (evictSample, from where Go's randomised
// map iteration starts): it drops the expired ones among them, or else
// the one that expires first. Insertion costs the same however large
// the cache; expired entries elsewhere go when they are looked up or
// sampled.
func (c *authCache) put(k *authKey, a *cachedAnswer, ttl time.Duration, gen uint64) bool {
	now := monotonic()
	a.expires = now + int64(ttl)
	c.mu.Lock()
	if c.gen.Load() != gen {
		c.mu.Unlock()
		return false
	}
	if _, ok := c.m[*k]; !ok && len(c.m) >= c.max {
		c.examined += makeRoom(c.m, func(old *cachedAnswer) (int64, bool) { return old.expires, now >= old.expires },
			func(key authKey) { delete(c.m, key) })
	}
	c.m[*k] = a
	c.size.Store(int64(len(c.m)))
	c.mu.Unlock()
	c.stored.Add(1)
	return true
}

// makeRoom frees a place in the full map m by looking at a few entries
// (evictSample, from where Go's randomised map iteration starts): it
// deletes, through del, the stale ones among them, or else the one that
// expires first; expiry tells an entry's expiry and whether it is stale.
// Its cost does not grow with the map. It returns how many entries it
// looked at. Both the authentication cache and the connections' kept
// authorize answers (decisions.go) make room this way.
func makeRoom[K comparable, V any](m map[K]V, expiry func(V) (int64, bool), del func(K)) int {
	var victim K
	soonest, seen, dropped := int64(0), 0, false
	for key, old := range m {
		exp, stale := expiry(old)
		if stale {
			del(key)
			dropped = true
		} else if seen == 0 || exp < soonest {
			victim, soonest = key, exp
		}
		if seen++; seen >= evictSample {
			break
		}
	}
	if !dropped {
		del(victim)
	}
	return seen
}

// flush drops every answer for clientID, or every answer when it is "",
// and returns how many it dropped. Either kind moves the flush
// generation on, so that no call in flight keeps an answer after it.
func (c *authCache) flush(clientID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	n := len(c.m)
	if clientID == "" {
		clear(c.m)
	} else {
		for k, a := range c.m {
			if a.clientID == clientID {
				delete(c.m, k)
			}
		}
	}
	c.size.Store(int64(len(c.m)))
	return n - len(c.m)
}

// len returns how many answers are kept (expired ones included until
// they are looked up or pushed out).
func (c *authCache) len() int { return int(c.size.Load()) }

// authKeyer computes the cache key of a CONNECT; one per Host.
type authKeyer struct {
	pool sync.Pool // of hash.Hash (HMAC-SHA256 under secret)
}

func newAuthKeyer() *authKeyer {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic("host: no randomness for the authentication cache key: " + err.Error())
	}
	return &authKeyer{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// key returns the key of c's identity: every field length-prefixed, so
// that no two identities share an encoding.
func (ak *authKeyer) key(c *broker.Connect) authKey {
	m := ak.pool.Get().(hash.Hash)
	m.Reset()
	var n [4]byte
	field := func(b []byte, present bool) {
		if !present {
			m.Write([]byte{0})
			return
		}
		binary.LittleEndian.PutUint32(n[:], uint32(len(b)))
		m.Write([]byte{1})
		m.Write(n[:])
		m.Write(b)
	}
	str := func(s string, present bool) { field([]byte(s), present) }
	str(c.ClientID, true)
	str(c.Username, c.HasUsername)
	field(c.Password, c.Password != nil)
	str(c.Listener, true)
	if t := c.TLS; t != nil {
		str(t.PeerSubject, true)
		binary.LittleEndian.PutUint32(n[:], uint32(len(t.PeerSANs)))
		m.Write(n[:])
		for _, san := range t.PeerSANs {
			str(san, true)
		}
	} else {
		str("", false)
	}
	var k authKey
	m.Sum(k[:0])
	ak.pool.Put(m)
	return k
}

func hfCacheResult(in *instance, _ api.Module, stack []uint64) int32 {
	if in.cb != abi.CallbackAuthenticate && in.ext.minor.Load() < abi.MinorAuthorizeCache {
		return abi.StatusNotAvailable // as under the hosts the module was built for
	}
	s := uint32(stack[0])
	if s > abi.MaxCacheSeconds {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	in.out.cacheFor = s
	return abi.StatusOK
}

func hfAuthCacheFlush(in *instance, mod api.Module, stack []uint64) int32 {
	cid, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	if uint32(stack[1]) == 0 {
		cid = ""
	}
	return int32(in.ext.authCache.flush(cid))
}
