package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
//   - authenticate puts the grant's fingerprint (user name, stored hash
//     and rules) in a connection attribute;
//   - the auth-succeeded event copies it into storage, under
//     "online/CLIENT-ID"; a disconnect event removes it once the client
//     is offline (not after a take-over);
//   - a tick whose files differ from those last applied ("applied")
//     walks the entries, a bounded part per tick (cursor "scan"), and
//     disconnects each client whose fingerprint the files no longer give.

// Storage and attribute keys.
const (
	grantAttr   = "file-auth.grant"
	onlinePrefx = "online/"
	appliedKey  = "applied"
	scanKey     = "scan"
)

// Bounds of one tick's walk: it stops after scanBudget of work, leaving a
// cursor, so a tick stays far inside its call deadline (a disconnect may
// wait up to 5 s for a client that does not read).
const (
	scanPage   = 200
	scanBudget = time.Second
)

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

// remember marks the connecting client with its grant (authenticate).
func remember(grant string) {
	if err := propolis.PutConnectionAttribute(grantAttr, []byte(grant)); err != nil && !errors.Is(err, propolis.ErrNotAvailable) {
		propolis.Warnf("file-auth: client not tracked for edits: %v", err)
	}
}

// onEvent keeps the storage's list of clients logged in through
// file-auth.
func onEvent(e *propolis.Event) {
	switch e.Kind {
	case propolis.EventAuthSucceeded:
		g, err := propolis.ConnectionAttribute(grantAttr)
		if err != nil {
			return // another extension let it in
		}
		if err := propolis.PutStoredValue(onlinePrefx+e.ClientID, g); err != nil {
			propolis.Warnf("file-auth: client %q not tracked for edits: %v", e.ClientID, err)
		}
	case propolis.EventDisconnect:
		if on, err := propolis.ClientConnected(e.ClientID); err == nil && !on {
			_ = propolis.RemoveStoredValue(onlinePrefx + e.ClientID)
		}
	}
}

// apply disconnects the clients whose grant the files in use no longer
// give, when the files differ from those last applied, within
// scanBudget; the next tick goes on from where this one stopped.
func (f *files) apply(now func() time.Time) {
	if !f.ready() {
		return
	}
	want := f.version()
	applied, err := propolis.StoredValue(appliedKey)
	if err == nil && string(applied) == want {
		return
	}
	if err != nil && !errors.Is(err, propolis.ErrNotFound) {
		return // none yet: walk the entries left from before, if any
	}
	after := ""
	if c, err := propolis.StoredValue(scanKey); err == nil {
		if v, key, ok := strings.Cut(string(c), "\n"); ok && v == want {
			after = key
		}
	}
	start := now()
	for {
		keys, more, err := propolis.StoredKeys(onlinePrefx, after, scanPage)
		if err != nil {
			return
		}
		for _, key := range keys {
			after = key
			f.check(strings.TrimPrefix(key, onlinePrefx))
			if now().Sub(start) > scanBudget {
				_ = propolis.PutStoredValue(scanKey, []byte(want+"\n"+after))
				return
			}
		}
		if !more {
			break
		}
	}
	_ = propolis.RemoveStoredValue(scanKey)
	_ = propolis.PutStoredValue(appliedKey, []byte(want))
}

// check disconnects client id when the files no longer give it the grant
// it logged in with, and forgets it once it is offline.
func (f *files) check(id string) {
	g, err := propolis.StoredValue(onlinePrefx + id)
	if err != nil {
		return
	}
	user, _, _ := strings.Cut(string(g), "\n")
	now, known := f.grant(user)
	if known && now == string(g) {
		return
	}
	code, why := propolis.CodeNotAuthorized, "user removed or password changed"
	if known && strings.Count(string(g), "\n") == 2 && now[:strings.LastIndexByte(now, '\n')] == string(g)[:strings.LastIndexByte(string(g), '\n')] {
		code, why = propolis.CodeAdministrativeAction, "topic rules changed"
	}
	err = propolis.DisconnectClient(id, code, "file-auth: "+why, true)
	switch {
	case err == nil:
		propolis.Infof("file-auth: disconnected client %q (user %q): %s", id, user, why)
	case !errors.Is(err, propolis.ErrNotFound):
		propolis.Warnf("file-auth: disconnect client %q (user %q, %s): %v", id, user, why, err)
		return // tried again at the next change
	}
	_ = propolis.RemoveStoredValue(onlinePrefx + id)
}
