package main

import (
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
//	exp/<end, Unix seconds, 20 digits>/<client id> = <authentication time, Unix ns> <remote address>
//
// Every tick, one instance lists the keys whose end has passed, oldest
// first, and disconnects each client whose current connection is the one
// the token opened: from the same remote address (host:port, one TCP
// connection), established after that authentication. A client that
// reconnected since, with another token, is left alone. The key is
// removed either way.

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
	return fmt.Sprintf("%s%020d/%s", expiryPrefix, end.Unix(), clientID)
}

// parseExpiryKey returns the end and client id of an expiry key.
func parseExpiryKey(k string) (time.Time, string, bool) {
	rest, ok := strings.CutPrefix(k, expiryPrefix)
	if !ok || len(rest) < 21 || rest[20] != '/' {
		return time.Time{}, "", false
	}
	sec, err := strconv.ParseInt(rest[:20], 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.Unix(sec, 0), rest[21:], true
}

// recordExpiry notes that clientID, connecting from remoteAddr, was let in
// at now with a token valid until end (rounded up to the second). A
// failure is logged: the client is let in all the same, and is then not
// disconnected at expiry.
func recordExpiry(clientID, remoteAddr string, end, now time.Time) {
	if end.Nanosecond() != 0 {
		end = end.Truncate(time.Second).Add(time.Second)
	}
	if err := propolis.PutStoredValue(expiryKey(end, clientID), []byte(strconv.FormatInt(now.UnixNano(), 10)+" "+remoteAddr)); err != nil {
		propolis.Warnf("jwt-auth: client %q: recording its token's expiry: %v (it will not be disconnected when the token expires)", clientID, err)
	}
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
		end, clientID, ok := parseExpiryKey(k)
		if ok && end.After(now) {
			break // sorted by end: the rest are still valid
		}
		if ok && disconnectIfSame(k, clientID) {
			n++
		}
		if err := propolis.RemoveStoredValue(k); err != nil {
			propolis.Warnf("jwt-auth: removing %q: %v", k, err)
			break
		}
	}
	return n
}

// disconnectIfSame disconnects clientID if its connection is the one
// authenticated at the time, from the address, stored under key.
func disconnectIfSame(key, clientID string) bool {
	v, err := propolis.StoredValue(key)
	if err != nil {
		return false
	}
	at, addr, _ := strings.Cut(string(v), " ")
	authNs, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return false
	}
	s, err := propolis.ClientSession(clientID)
	switch {
	case errors.Is(err, propolis.ErrNotFound):
		return false
	case err != nil:
		propolis.Warnf("jwt-auth: client %q: %v", clientID, err)
		return false
	case !s.Connected || s.RemoteAddr != addr || s.ConnectedSince.Before(time.Unix(0, authNs)):
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
