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
// MaxCacheFor; ErrNotAvailable: outside Authenticate. It needs no grant.
//
// It is a function rather than an AuthResult field so that only modules
// that cache import cache_result (an ABI 1.1 host function).
func CacheAuthResult(d time.Duration) error {
	if d < 0 || d > MaxCacheFor {
		return ErrInvalidArgument
	}
	return statusErr(svcCacheResult(uint32(d / time.Second)))
}

// FlushAuthCache drops the answers the broker keeps for clientID from the
// extension's authentication cache, or every answer when clientID is "",
// and returns how many it dropped. Call it when an identity changes (a
// password reset, a revoked device). Service "auth_cache".
func FlushAuthCache(clientID string) (int, error) {
	n := svcAuthCacheFlush(clientID)
	if n < 0 {
		return 0, statusErr(n)
	}
	return int(n), nil
}
