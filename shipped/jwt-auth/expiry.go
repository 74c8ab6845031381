package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// Disconnecting clients whose token expired (config.disconnect_on_expiry).
//
// Authenticate records each accepted token's end, exp plus the leeway, in
// the extension's storage (shared by every instance, kept across
// restarts) under a key that sorts by that end:
//
//	exp/<end, Unix seconds, 20 digits>/<SHA-256 of the client id, hex> = <authentication time, Unix ns> <remote address> <client id>
//
// The key holds a hash, not the client id, so that it has a fixed size
// whatever the id (storage keys are at most 1,024 bytes; an MQTT client id
// may be 65,535). When the record cannot be written the CONNECT is
// refused: a client let in without it would never be disconnected.
//
// Every tick, one instance lists the keys whose end has passed, oldest
// first, and disconnects each client whose current connection is the one
// the token opened: from the same remote address (host:port, one TCP
// connection), established after that authentication. A client that
// reconnected since, with another token, is left alone. The key is
// removed either way, so the records are at most one per client id and
// token end still valid (a client reconnecting with the same token
// rewrites its record).

// expiryPrefix starts the storage keys of accepted tokens.
const expiryPrefix = "exp/"

// tickBudget and tickTime bound the keys one tick handles and the time
// it spends, so that a tick stays within its deadline (the manifest's
// limits.call_deadline, 1s in the shipped manifest) and the extension's
// service rate; the rest waits for the next tick.
const (
	tickBudget = 200
	tickTime   = 500 * time.Millisecond
)

// expiryKey returns the storage key of a token of clientID valid until
// end.
func expiryKey(end time.Time, clientID string) string {
	h := sha256.Sum256([]byte(clientID))
	return fmt.Sprintf("%s%020d/%s", expiryPrefix, end.Unix(), hex.EncodeToString(h[:]))
}

// parseExpiryKey returns the end of an expiry key.
func parseExpiryKey(k string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(k, expiryPrefix)
	if !ok || len(rest) < 21 || rest[20] != '/' {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(rest[:20], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// expiryRecord is the value of an expiry key.
type expiryRecord struct {
	authNs     int64  // when the token was accepted, Unix ns
	remoteAddr string // of the connection it opened
	clientID   string
}

// encode returns the stored form of r.
func (r expiryRecord) encode() []byte {
	return []byte(strconv.FormatInt(r.authNs, 10) + " " + r.remoteAddr + " " + r.clientID)
}

// parseExpiryRecord reads the value stored under key. Records written
// before the key held a hash ("<ns> <address>", the client id in the key)
// are read too.
func parseExpiryRecord(key string, v []byte) (expiryRecord, bool) {
	at, rest, ok := strings.Cut(string(v), " ")
	if !ok {
		return expiryRecord{}, false
	}
	ns, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return expiryRecord{}, false
	}
	r := expiryRecord{authNs: ns}
	if r.remoteAddr, r.clientID, ok = strings.Cut(rest, " "); ok {
		return r, true
	}
	// The old format: the client id is the key's last part.
	k, _ := strings.CutPrefix(key, expiryPrefix)
	if len(k) < 21 {
		return expiryRecord{}, false
	}
	r.remoteAddr, r.clientID = rest, k[21:]
	return r, true
}

// recordExpiry notes that clientID, connecting from remoteAddr, was let in
// at now with a token valid until end (rounded up to the second). The
// error says why it could not: the caller refuses the client then.
func recordExpiry(clientID, remoteAddr string, end, now time.Time) error {
	if end.Nanosecond() != 0 {
		end = end.Truncate(time.Second).Add(time.Second)
	}
	r := expiryRecord{authNs: now.UnixNano(), remoteAddr: remoteAddr, clientID: clientID}
	return propolis.PutStoredValue(expiryKey(end, clientID), r.encode())
}

// disconnectExpired disconnects the clients whose token ended before now,
// handling at most tickBudget keys; it returns how many clients it
// disconnected.
func disconnectExpired(now time.Time) int {
	keys, _, err := propolis.StoredKeys(expiryPrefix, "", tickBudget)
	if err != nil {
		propolis.Warnf("jwt-auth: listing expiring tokens: %v", err)
		return 0
	}
	n := 0
	for _, k := range keys {
		if time.Since(now) > tickTime {
			break
		}
		end, ok := parseExpiryKey(k)
		if ok && end.After(now) {
			break // sorted by end: the rest are still valid
		}
		if ok && disconnectIfSame(k) {
			n++
		}
		if err := propolis.RemoveStoredValue(k); err != nil {
			propolis.Warnf("jwt-auth: removing %q: %v", k, err)
			break
		}
	}
	return n
}

// disconnectIfSame disconnects the client of the record stored under key
// if its connection is the one authenticated at the time, from the
// address, the record says.
func disconnectIfSame(key string) bool {
	v, err := propolis.StoredValue(key)
	if err != nil {
		return false
	}
	r, ok := parseExpiryRecord(key, v)
	if !ok {
		return false
	}
	clientID := r.clientID
	s, err := propolis.ClientSession(clientID)
	switch {
	case errors.Is(err, propolis.ErrNotFound):
		return false
	case err != nil:
		propolis.Warnf("jwt-auth: client %q: %v", clientID, err)
		return false
	case !s.Connected || s.RemoteAddr != r.remoteAddr || s.ConnectedSince.Before(time.Unix(0, r.authNs)):
		return false // gone, or connected again since, with another token
	}
	err = propolis.DisconnectClient(clientID, propolis.CodeNotAuthorized, "token expired", false)
	if err != nil && !errors.Is(err, propolis.ErrNotFound) {
		propolis.Warnf("jwt-auth: disconnecting client %q at its token's expiry: %v", clientID, err)
		return false
	}
	propolis.Infof("jwt-auth: client %q disconnected: its token expired", clientID)
	return err == nil
}

// checkExpiryServices returns an error naming what the manifest lacks for
// disconnect_on_expiry.
func checkExpiryServices() error {
	if _, _, err := propolis.StoredKeys(expiryPrefix, "", 1); errors.Is(err, propolis.ErrNotPermitted) {
		return errors.New("config.disconnect_on_expiry: needs the storage service: add storage and clients to the manifest's services (and a tick), or set disconnect_on_expiry: false")
	}
	if _, err := propolis.ClientConnected("jwt-auth-probe"); errors.Is(err, propolis.ErrNotPermitted) {
		return errors.New("config.disconnect_on_expiry: needs the clients service: add storage and clients to the manifest's services (and a tick), or set disconnect_on_expiry: false")
	}
	return nil
}
