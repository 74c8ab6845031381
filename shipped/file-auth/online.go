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

// Connected clients and edits. A client's rules are those of its CONNECT
// (the broker evaluates them without calling the extension), so an edit
// that removes a user, changes its password or changes its rules must
// disconnect the clients logged in under the old version; they reconnect
// under the new one.
//
//   - authenticate, before it allows a client, stores its grant under
//     "grant/VERSION/CLIENT" (VERSION: the files' version it checked
//     against; CLIENT: a checksum of the client id, which may be far
//     longer than a storage key) and "client/CLIENT" = VERSION, the
//     client's latest grant; a client it cannot record is refused, so that
//     no client is connected that an edit could not reach. Recording in
//     authenticate itself (not in the asynchronous auth-succeeded event)
//     means a tick can never see the files' version before the grant it
//     gave is stored;
//   - every tick walks the grants of any version other than the one in
//     use (the current version's range is skipped, so a quiet tick costs
//     one listing) within scanBudget: a grant the files still give moves
//     to the current version, a client whose grant they no longer give is
//     disconnected, a grant superseded by a later one of the same client
//     is dropped;
//   - a disconnect event drops the grant of a client that is offline.

// Storage keys.
const (
	grantPrefix  = "grant/"
	clientPrefix = "client/"
	// legacyPrefix held "online/CLIENT-ID" grants before; a tick moves
	// any left to the walked versions.
	legacyPrefix = "online/"
)

// Bounds of one tick's walk: it stops after scanBudget of work, so a tick
// stays far inside its call deadline (a disconnect may wait up to 5 s for
// a client that does not read); the next tick goes on (a grant handled is
// no longer stale).
const (
	scanPage   = 200
	scanBudget = time.Second
)

// grace is how long after authenticate stored a grant its client may not
// be connected yet (its CONNACK still on the way): within it, a grant is
// not dropped for its client being offline.
const grace = 30 * time.Second

// grant returns the fingerprint of what the files in use give user, as
// "USER\nHASH\nRULES" (checksums of its stored hash and of its rules);
// ok is false when the user is not in the users file.
func (f *files) grant(user string) (string, bool) {
	e, ok := f.userTable()[user]
	if !ok {
		return "", false
	}
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:16])
	}
	rules := ""
	if a := f.ruleTable(); a != nil {
		perms, _ := a.permissions(user)
		rules = fmt.Sprint(perms)
	}
	return user + "\n" + sum(e.Hash.String()) + "\n" + sum(rules), true
}

// version returns the checksum of the pair of file versions in use.
func (f *files) version() string {
	h := sha256.New()
	h.Write(f.users.good[:])
	if f.useRules {
		h.Write(f.rules.good[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// clientSum names a client id in storage keys.
func clientSum(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// grantKey is the key of a grant given under version to client sum;
// clientKey the key naming the version of client sum's latest grant.
func grantKey(version, sum string) string { return grantPrefix + version + "/" + sum }
func clientKey(sum string) string         { return clientPrefix + sum }

// entry is a stored grant: when authenticate stored it (Unix seconds),
// the grant (user name, stored hash's and rules' checksums) and the
// client id, last as it may hold any character.
type entry struct {
	at    int64
	user  string
	grant string
	id    string
}

// encode returns the stored form of e: "AT\nUSER\nHASH\nRULES\nID".
func (e entry) encode() []byte {
	return []byte(strconv.FormatInt(e.at, 10) + "\n" + e.grant + "\n" + e.id)
}

// decodeEntry reads a stored entry; false when it is not one.
func decodeEntry(b []byte) (entry, bool) {
	parts := strings.SplitN(string(b), "\n", 5)
	if len(parts) != 5 {
		return entry{}, false
	}
	at, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return entry{}, false
	}
	return entry{at: at, user: parts[1], grant: strings.Join(parts[1:4], "\n"), id: parts[4]}, true
}

// record stores the grant of the client authenticate is about to allow;
// the error says why it could not (the client is then refused).
func (f *files) record(id, grant string, now time.Time) error {
	sum, version := clientSum(id), f.version()
	e := entry{at: now.Unix(), grant: grant, id: id}
	if err := propolis.PutStoredValue(grantKey(version, sum), e.encode()); err != nil {
		return err
	}
	return propolis.PutStoredValue(clientKey(sum), []byte(version))
}

// onEvent drops the grant of a client that went offline.
func onEvent(e *propolis.Event) {
	if e.Kind != propolis.EventDisconnect {
		return
	}
	if on, err := propolis.ClientConnected(e.ClientID); err != nil || on {
		return // not after a take-over
	}
	sum := clientSum(e.ClientID)
	version, err := propolis.StoredValue(clientKey(sum))
	if err != nil {
		return
	}
	key := grantKey(string(version), sum)
	g, err := propolis.StoredValue(key)
	if err != nil {
		return
	}
	// A grant stored within grace may be that of a new connection of the
	// same client id, not connected yet: the walk drops it later.
	if en, ok := decodeEntry(g); ok && time.Since(time.Unix(en.at, 0)) < grace {
		return
	}
	_ = propolis.RemoveStoredValue(key)
	_ = propolis.RemoveStoredValue(clientKey(sum))
}

// apply walks the grants not of the files' version in use (every tick,
// whether or not the files changed, so that a grant stored under a
// version a tick had already applied is still checked), within
// scanBudget, and disconnects each client whose grant the files no
// longer give.
func (f *files) apply(now func() time.Time) {
	if !f.ready() {
		return
	}
	want := f.version()
	start := now()
	over := func() bool { return now().Sub(start) > scanBudget }
	f.migrate(now)
	after := ""
	for !over() {
		keys, more, err := propolis.StoredKeys(grantPrefix, after, scanPage)
		if err != nil {
			return
		}
		relist := false
		for _, key := range keys {
			after = key
			version, sum, ok := strings.Cut(strings.TrimPrefix(key, grantPrefix), "/")
			if !ok {
				_ = propolis.RemoveStoredValue(key)
				continue
			}
			if version == want {
				// The current version's grants are up to date: go on past
				// them ("g" sorts after every hex digit).
				after, relist = grantKey(want, "g"), true
				break
			}
			f.check(key, version, sum, want, now)
			if over() {
				return
			}
		}
		if !more && !relist {
			return
		}
	}
}

// migrate moves grants stored by an earlier file-auth ("online/ID",
// without a version) under a version no file has, so the walk checks them.
func (f *files) migrate(now func() time.Time) {
	keys, _, err := propolis.StoredKeys(legacyPrefix, "", scanPage)
	if err != nil {
		return
	}
	for _, key := range keys {
		g, err := propolis.StoredValue(key)
		id := strings.TrimPrefix(key, legacyPrefix)
		if err == nil && strings.Count(string(g), "\n") == 2 {
			sum := clientSum(id)
			e := entry{at: now().Unix(), grant: string(g), id: id}
			if propolis.PutStoredValue(grantKey("legacy", sum), e.encode()) != nil ||
				propolis.PutStoredValue(clientKey(sum), []byte("legacy")) != nil {
				return
			}
		}
		_ = propolis.RemoveStoredValue(key)
	}
}

// check looks at one grant of an older version: one superseded by a
// later grant of its client is dropped; one the files still give moves
// to version want; otherwise its client is disconnected.
func (f *files) check(key, version, sum, want string, now func() time.Time) {
	g, err := propolis.StoredValue(key)
	if err != nil {
		return
	}
	e, ok := decodeEntry(g)
	if !ok {
		_ = propolis.RemoveStoredValue(key)
		return
	}
	latest, err := propolis.StoredValue(clientKey(sum))
	if err == nil && string(latest) != version {
		_ = propolis.RemoveStoredValue(key)
		return
	}
	drop := func() {
		_ = propolis.RemoveStoredValue(clientKey(sum))
		_ = propolis.RemoveStoredValue(key)
	}
	g2, known := f.grant(e.user)
	if known && g2 == e.grant {
		// A grant whose disconnect event was lost (events may be
		// dropped) is dropped here, not moved on for ever.
		if on, err := propolis.ClientConnected(e.id); err == nil && !on && now().Sub(time.Unix(e.at, 0)) >= grace {
			drop()
			return
		}
		if propolis.PutStoredValue(grantKey(want, sum), g) == nil && propolis.PutStoredValue(clientKey(sum), []byte(want)) == nil {
			_ = propolis.RemoveStoredValue(key)
		}
		return
	}
	code, why := propolis.CodeNotAuthorized, "user removed or password changed"
	if known && g2[:strings.LastIndexByte(g2, '\n')] == e.grant[:strings.LastIndexByte(e.grant, '\n')] {
		code, why = propolis.CodeAdministrativeAction, "topic rules changed"
	}
	err = propolis.DisconnectClient(e.id, code, "file-auth: "+why, true)
	switch {
	case err == nil:
		propolis.Infof("file-auth: disconnected client %q (user %q): %s", e.id, e.user, why)
		drop()
	case errors.Is(err, propolis.ErrNotFound):
		// Offline: gone, or (within grace of its grant) not connected
		// yet, when the next tick tries again.
		if now().Sub(time.Unix(e.at, 0)) >= grace {
			drop()
		}
	default:
		propolis.Warnf("file-auth: disconnect client %q (user %q, %s): %v", e.id, e.user, why, err)
	}
}
