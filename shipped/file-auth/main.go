// Command file-auth is the Propolis extension that authenticates clients
// against a password file and confines them with topic rules, both read
// from its own folder (README.md is the operator's guide).
//
// Each CONNECT's user name and password are checked against the users
// file (default "passwd": USER:HASH lines, hashes in the format of
// package passwd, written by `propolis passwd`). An allowed client gets
// its rules from the rule file (default "acl") as default topic
// permissions, which the broker evaluates on every PUBLISH and SUBSCRIBE
// without calling the extension, ending with a deny of everything else.
//
// Every CONNECT looks at the files' stamps (modification time, size,
// inode) and re-reads a changed one, and every tick reads them whole; a
// changed version replaces the one in use once it has stayed as it is
// for a tick (files.go, settled), and an empty users file never replaces
// one with users. A version that does not parse is refused, reported once with
// its file:line problems, and the last good version stays in use. Good
// versions are saved in the extension's storage, so that an instance
// started while a file is bad, or a broker restarted then, still has
// them. An edit that removes a user, changes its password or changes its
// rules disconnects the clients logged in under the old version
// (online.go), so that they reconnect under the new one.
//
// Configuration (the manifest's config section, all optional):
//
//	config:
//	  users: passwd          # the users file, in the extension folder
//	  acl: acl               # the rule file; "" turns rules off
//	  unknown_user: deny     # or next: leave unknown users (and clients
//	                         # without a user name) to the next extension
package main

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/passwd"
	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// config is the extension's configuration.
type config struct {
	// Users is the users file's name in the folder. Default "passwd".
	Users string `json:"users"`
	// ACL is the rule file's name in the folder; "" turns rules off
	// (every authenticated client may do everything). Default "acl".
	ACL *string `json:"acl"`
	// UnknownUser is "deny" (the default) or "next".
	UnknownUser string `json:"unknown_user"`
}

// The instance's state: its files and configuration. Package variables
// are per instance (ABI.md section 1): each instance reads the files
// itself and they all give the same answers.
var (
	state    *files
	passNext bool
)

// dummyFor returns the hash checked for an unknown user name, so that an
// unknown user costs what a known one does and the time taken does not
// tell which user names exist: it has the largest iteration count of the
// users file (a known user's check costs at most that), and the
// verification cache keys it with the user name like a known one's.
func dummyFor(users map[string]passwd.Entry) passwd.Hash {
	n := passwd.DefaultIterations
	if len(users) > 0 {
		n = 0
		for _, e := range users {
			n = max(n, e.Hash.Iterations)
		}
	}
	return passwd.Hash{Iterations: n, Salt: make([]byte, passwd.SaltSize), Key: make([]byte, passwd.KeySize)}
}

func init() {
	propolis.Register(propolis.Extension{
		Start:        start,
		Authenticate: authenticate,
		Tick:         tick,
		OnEvent:      onEvent,
	})
}

func main() {}

// start reads the configuration and the files. A bad configuration, or
// a file with no good version (neither now nor saved), refuses the start
// with the file:line problems.
func start(info propolis.StartInfo) error {
	cfg, err := decodeConfig(info.Config)
	if err != nil {
		return fmt.Errorf("file-auth: config: %w", err)
	}
	f := &files{users: tracked{name: cfg.Users, parse: parseUsers, guard: guardUsers}}
	if *cfg.ACL != "" {
		f.useRules, f.rules = true, tracked{name: *cfg.ACL, parse: parseRules}
	}
	// A new load (a restart, a reload) reports a bad file again, once:
	// from its first instance, whatever was reported before.
	f.users.reportAnyway, f.rules.reportAnyway = info.Instance == 0, info.Instance == 0
	err = f.refresh(true)
	f.users.reportAnyway, f.rules.reportAnyway = false, false
	if err != nil {
		return fmt.Errorf("file-auth: %w", err)
	}
	state, passNext = f, cfg.UnknownUser == "next"
	if info.Instance == 0 {
		switch {
		case !f.useRules:
			propolis.Warnf("file-auth: config acl is \"\": every authenticated client may publish and subscribe to every topic")
		case f.ruleTable().empty():
			propolis.Warnf("file-auth: %s has no rule: clients may log in but neither publish nor subscribe", f.rules.name)
		}
		if len(f.userTable()) == 0 {
			propolis.Warnf("file-auth: %s has no user: every client is refused (add users with propolis passwd)", f.users.name)
		}
	}
	return nil
}

// decodeConfig decodes and checks the configuration, rejecting unknown
// keys, and fills in the defaults.
func decodeConfig(raw []byte) (config, error) {
	acl := "acl"
	cfg := config{Users: "passwd", ACL: &acl, UnknownUser: "deny"}
	if len(raw) > 0 {
		if err := (propolis.StartInfo{Config: raw}).DecodeConfig(&cfg); err != nil {
			// The caller says "config: " once; the key stays named.
			msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), "config: "), "config.")
			return config{}, errors.New(msg)
		}
	}
	if cfg.ACL == nil { // "acl: null"
		cfg.ACL = &acl
	}
	if err := checkName("users", cfg.Users, false); err != nil {
		return config{}, err
	}
	if err := checkName("acl", *cfg.ACL, true); err != nil {
		return config{}, err
	}
	if cfg.Users == *cfg.ACL {
		return config{}, fmt.Errorf("users and acl name the same file %q", cfg.Users)
	}
	if cfg.UnknownUser != "deny" && cfg.UnknownUser != "next" {
		return config{}, fmt.Errorf("unknown_user: want \"deny\" or \"next\", got %q", cfg.UnknownUser)
	}
	return cfg, nil
}

// checkName checks a file name from the configuration: a file inside
// the folder.
func checkName(key, name string, mayBeEmpty bool) error {
	switch {
	case name == "" && mayBeEmpty:
		return nil
	case name == "":
		return errors.New(key + ": empty file name")
	case path.IsAbs(name) || strings.Contains(name, "..") || strings.Contains(name, "\\") || path.Clean(name) != name:
		return fmt.Errorf("%s: %q must name a file inside the extension folder", key, name)
	}
	return nil
}

// tick looks at the files, so that an edit is loaded (or reported) even
// while no client connects, and disconnects the clients an edit took
// rights from (online.go).
func tick() {
	if state != nil {
		_ = state.refresh(true)
		state.apply(time.Now)
	}
}

// deny is the answer to bad credentials; it says nothing of which part
// was wrong.
func deny() propolis.AuthResult {
	return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "bad user name or password")}
}

// authenticate checks the CONNECT's user name and password and gives an
// allowed client its rules.
func authenticate(c *propolis.Connect) propolis.AuthResult {
	if state == nil {
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "file-auth has no configuration")}
	}
	if err := state.refresh(false); err != nil {
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "file-auth has no valid users file")}
	}
	users := state.userTable()
	entry, known := users[c.Username]
	if !c.HasUsername || !known {
		if passNext {
			return propolis.AuthResult{Verdict: propolis.Next()}
		}
		check(state.dummy, c.Username, c.Password)
		return deny()
	}
	if !check(entry.Hash, c.Username, c.Password) {
		return deny()
	}
	res := propolis.AuthResult{Verdict: propolis.Allow()}
	if rules := state.ruleTable(); rules != nil {
		perms, err := rules.permissions(c.Username)
		if err != nil { // parseACL refuses such files
			propolis.Errorf("file-auth: %v", err)
			return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeNotAuthorized, "too many rules")}
		}
		res.Permissions = perms
	}
	// Fail closed: a client whose grant is not stored could keep its
	// rights after an edit took them (online.go).
	g, _ := state.grant(c.Username)
	if err := state.record(c.ClientID, g, time.Now()); err != nil && !errors.Is(err, propolis.ErrNotAvailable) {
		propolis.Errorf("file-auth: client %q (user %q) refused: its grant could not be stored for edits to reach it: %v", c.ClientID, c.Username, err)
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "file-auth could not record the login")}
	}
	return res
}

// check verifies password against h, through the instance's cache of
// outcomes.
func check(h passwd.Hash, user string, password []byte) bool {
	ok, found, key := state.cache.lookup(user, password, h.String())
	if found {
		return ok
	}
	ok = h.Verify(password)
	state.cache.remember(key, ok)
	return ok
}
