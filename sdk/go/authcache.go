package propolis

import "time"

// The authentication cache (ABI.md section 5, cache_result and
// auth_cache_flush). An Authenticate handler calls CacheAuthResult to have
// the broker keep the answer it is about to return: CONNECTs with the same
// client id, user name, password, listener and TLS certificate are then
// answered for that long without calling the extension. The broker keeps
// no password, only a keyed hash of the identity. A reload or disable of
// the extension empties the cache, and so does FlushAuthCache.

// MaxCacheFor is the longest an answer may be cached.
const MaxCacheFor = 24 * time.Hour

// CacheAuthResult, called in Authenticate, has the broker keep the answer
// the handler returns (whatever its verdict: Allow with its settings and
// permissions, Deny, or Next) for d, rounded down to whole seconds, at
// most MaxCacheFor; 0 takes back an earlier call. Call it only when the
// answer depends on nothing else of the Connect (not its remote address,
// will or user properties). ErrInvalidArgument: d is negative or beyond
// MaxCacheFor; ErrNotAvailable: outside Authenticate and the authorize
// handlers (where CacheVerdict, the same call, reads better). It needs no
// grant.
//
// It is a function rather than an AuthResult field so that only modules
// that cache import cache_result (an ABI 1.1 host function).
func CacheAuthResult(d time.Duration) error {
	if d < 0 || d > MaxCacheFor {
		return ErrInvalidArgument
	}
	return statusErr(svcCacheResult(uint32(d / time.Second)))
}

// CacheVerdict, called in AuthorizePublish or AuthorizeSubscribe (ABI
// 1.4), has the broker keep the verdict the handler returns (Allow, Deny
// or Disconnect with its code and reason, or Next) for d, rounded down to
// whole seconds, at most MaxCacheFor; 0 takes back an earlier call. The
// broker then answers the same question on the same connection (a PUBLISH
// to the same topic with the same QoS, retain and will flags; a SUBSCRIBE
// to the same filter with the same QoS and shared flag) without calling
// the extension, until d has passed, the client disconnects, the
// extension is reloaded or disabled, or FlushAuthCache is called. Call it
// only when the verdict depends on nothing else: not the payload, the
// time, or an attribute that may change. The answers are kept per
// connection, at most the manifest's limits.authorize_cache_entries, and
// never for a topic or filter longer than 256 bytes. ErrInvalidArgument:
// d is negative or beyond MaxCacheFor; ErrNotAvailable: outside the
// handlers that may keep an answer. It needs no grant. A module built
// with this SDK says ABI 1.4, so a broker older than 1.4 refuses to load
// it rather than ignore the call.
func CacheVerdict(d time.Duration) error { return CacheAuthResult(d) }

// FlushAuthCache drops the answers the broker keeps for clientID from the
// extension's authentication cache, or every answer when clientID is "",
// and returns how many it dropped. Call it when an identity changes (a
// password reset, a revoked device). It also drops the verdicts
// CacheVerdict kept, on every connection (not counted). Service
// "auth_cache".
func FlushAuthCache(clientID string) (int, error) {
	n := svcAuthCacheFlush(clientID)
	if n < 0 {
		return 0, statusErr(n)
	}
	return int(n), nil
}
