package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
)

// maxVerified bounds the answers one instance keeps; when full, it
// forgets them all (a full cache means many distinct credentials, which
// pay the hash anyway).
const maxVerified = 10000

// verified remembers, per instance, the outcome of the slow password
// checks it made, so that a client reconnecting with the same credentials
// does not pay the hash again. It keeps no password: the key is an
// HMAC-SHA-256, under a random key of the instance, of the user name, the
// password and the stored hash they were checked against (a changed hash
// misses). It is emptied when the users file is reloaded. The answer it
// gives is the one the hash would give, so instances never disagree.
type verified struct {
	key  []byte
	seen map[[32]byte]bool
}

// lookup returns the remembered outcome of checking password for user
// against hash, and the cache key to remember it under.
func (v *verified) lookup(user string, password []byte, hash string) (ok, found bool, key [32]byte) {
	if v.key == nil {
		v.key = make([]byte, 32)
		_, _ = rand.Read(v.key) // crypto/rand does not fail on wasip1 (random_get)
	}
	m := hmac.New(sha256.New, v.key)
	for _, part := range [][]byte{[]byte(user), password, []byte(hash)} {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(part)>>24), byte(len(part)>>16), byte(len(part)>>8), byte(len(part))
		m.Write(n[:])
		m.Write(part)
	}
	copy(key[:], m.Sum(nil))
	ok, found = v.seen[key]
	return ok, found, key
}

// remember keeps an outcome.
func (v *verified) remember(key [32]byte, ok bool) {
	if v.seen == nil || len(v.seen) >= maxVerified {
		v.seen = make(map[[32]byte]bool)
	}
	v.seen[key] = ok
}

// reset forgets every outcome.
func (v *verified) reset() { v.seen = nil }
