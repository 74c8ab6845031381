// Package access decides who may use the admin API and the control center
// (package admin) and writes what they did to the audit log.
//
// It holds, for the operator's HTTP endpoint:
//   - the permissions (Permissions) and roles (built-in ones and those of
//     admin.roles) that grant them;
//   - the users (admin.users, their password hashes there or in
//     admin.users_file, package passwd's format) and API tokens
//     (admin.tokens, stored as SHA-256 digests);
//   - login sessions: a random id in the HttpOnly, SameSite=Strict cookie
//     propolis_session, and a CSRF token that every state-changing request
//     of a cookie session repeats in the X-CSRF-Token header;
//   - the login rate limits, per remote IP and per user name at that IP
//     (limit.go);
//   - the Host header check against DNS rebinding, and the Origin check
//     against other sites' pages (CheckOrigin);
//   - the audit log (audit.go), and the throttles of what a stranger can
//     make the broker write (throttle.go).
//
// With no users and no tokens configured the API runs in local mode: every
// request is the user "local" with every permission, which cmd/propolis
// allows on a loopback address only.
//
// Read first: this file (Policy, the configuration turned into users,
// roles and tokens), then guard.go (Access.Authenticate, per request),
// then audit.go.
package access

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/passwd"
)

// Permission is one thing a role allows.
type Permission string

// The permissions, as written in admin.roles.
const (
	// BrokerView: the broker's version, listeners, stress and counters.
	BrokerView Permission = "broker.view"
	// ClientsView: the client list, a client's detail and subscriptions.
	ClientsView Permission = "clients.view"
	// ClientsDisconnect: disconnecting a client.
	ClientsDisconnect Permission = "clients.disconnect"
	// SessionsInvalidate: removing a session with everything it owns.
	SessionsInvalidate Permission = "sessions.invalidate"
	// RetainedView: the list of retained messages and their properties.
	RetainedView Permission = "retained.view"
	// RetainedPayload: the payloads of retained messages.
	RetainedPayload Permission = "retained.payload"
	// RetainedDelete: deleting a retained message.
	RetainedDelete Permission = "retained.delete"
	// UserPropertiesView: MQTT user properties, wherever they appear;
	// without it they are left out of every response.
	UserPropertiesView Permission = "userproperties.view"
	// ExtensionsView: the extensions with their state.
	ExtensionsView Permission = "extensions.view"
	// ExtensionsManage: enabling and disabling extensions.
	ExtensionsManage Permission = "extensions.manage"
	// TraceManage: starting, stopping, deleting and downloading trace
	// recordings.
	TraceManage Permission = "trace.manage"
	// ConfigView: the configuration in effect (secrets redacted).
	ConfigView Permission = "config.view"
)

// Permissions lists every permission, in the order of the documentation.
var Permissions = []Permission{BrokerView, ClientsView, ClientsDisconnect, SessionsInvalidate, RetainedView,
	RetainedPayload, RetainedDelete, UserPropertiesView, ExtensionsView, ExtensionsManage, TraceManage, ConfigView}

// BuiltinRoles are the roles that exist without configuration; admin.roles
// cannot redefine them.
var BuiltinRoles = map[string][]Permission{
	"admin":    Permissions,
	"operator": slices.DeleteFunc(slices.Clone(Permissions), func(p Permission) bool { return p == ConfigView }),
	"viewer":   {BrokerView, ClientsView, RetainedView, ExtensionsView},
}

// LocalUser is the user of every request in local mode.
const LocalUser = "local"

// Set is a set of permissions.
type Set map[Permission]bool

// Has reports whether s holds p.
func (s Set) Has(p Permission) bool { return s[p] }

// List returns the permissions of s in the order of Permissions.
func (s Set) List() []string {
	out := []string{}
	for _, p := range Permissions {
		if s[p] {
			out = append(out, string(p))
		}
	}
	return out
}

// all is every permission.
func all() Set {
	s := Set{}
	for _, p := range Permissions {
		s[p] = true
	}
	return s
}

// user is one user of a Policy.
type user struct {
	hash  passwd.Hash
	roles []string
	// fingerprint identifies hash (SHA-256 of its string): a session
	// remembers it, and ends when a reload changes it.
	fingerprint string
}

// newUser returns the user with hash h and roles.
func newUser(h passwd.Hash, roles []string) user {
	sum := sha256.Sum256([]byte(h.String()))
	return user{hash: h, roles: roles, fingerprint: hex.EncodeToString(sum[:])}
}

// token is one API token of a Policy.
type token struct {
	name  string
	roles []string
}

// Policy is the configuration's users, roles and tokens, checked and
// ready for requests. It does not change once built; a reload builds a
// new one (Access.Use).
type Policy struct {
	users  map[string]user
	tokens map[string]token // by hex SHA-256 of the token
	roles  map[string]Set
	hosts  []string
	ttl    time.Duration
	// dummy is checked for a user name that does not exist: random, with
	// the largest iteration count of the users' hashes (DefaultIterations
	// at least), so that the time of an answer does not tell whether a
	// name exists.
	dummy passwd.Hash
	// names of users and tokens, for the reload log
	userNames, tokenNames []string
}

// Local reports whether the policy has no users and no tokens: local mode.
func (p *Policy) Local() bool { return len(p.users) == 0 && len(p.tokens) == 0 }

// Users returns the user names, sorted.
func (p *Policy) Users() []string { return p.userNames }

// Tokens returns the token names, sorted.
func (p *Policy) Tokens() []string { return p.tokenNames }

// PasswordsChanged returns the users of both old and p whose password
// hash differs, sorted: for the reload log.
func (p *Policy) PasswordsChanged(old *Policy) []string {
	var out []string
	for _, n := range p.userNames {
		if o, ok := old.users[n]; ok && o.fingerprint != p.users[n].fingerprint {
			out = append(out, n)
		}
	}
	return out
}

// RolesChanged returns the users and tokens of both old and p whose roles
// differ, sorted: for the reload log. Tokens are named by their name.
func (p *Policy) RolesChanged(old *Policy) []string {
	var out []string
	for _, n := range p.userNames {
		if o, ok := old.users[n]; ok && !slices.Equal(o.roles, p.users[n].roles) {
			out = append(out, n)
		}
	}
	oldTokens := map[string][]string{}
	for _, t := range old.tokens {
		oldTokens[t.name] = t.roles
	}
	for _, t := range p.tokens {
		if o, ok := oldTokens[t.name]; ok && !slices.Equal(o, t.roles) && !slices.Contains(out, t.name) {
			out = append(out, t.name)
		}
	}
	sort.Strings(out)
	return out
}

// RolesOf returns the roles of the user, or else the token, named name.
func (p *Policy) RolesOf(name string) []string {
	if u, ok := p.users[name]; ok {
		return u.roles
	}
	for _, t := range p.tokens {
		if t.name == name {
			return t.roles
		}
	}
	return nil
}

// RoleNames returns every role, built-in ones included, sorted.
func (p *Policy) RoleNames() []string { return slices.Sorted(maps.Keys(p.roles)) }

// permissions returns what roles grant together.
func (p *Policy) permissions(roles []string) Set {
	s := Set{}
	for _, r := range roles {
		for perm := range p.roles[r] {
			s[perm] = true
		}
	}
	return s
}

// Build checks the admin section a of the configuration file cfgFile
// (config.Config.Source; users_file is relative to its folder) and returns
// the policy it describes. It reads the users file. Every problem is
// reported at once, one a line, each naming its key
// (admin.users[1].roles[0]: unknown role "x") or FILE:LINE for the users
// file.
func Build(a config.Admin, cfgFile string) (*Policy, error) {
	var probs []string
	bad := func(key, format string, args ...any) {
		probs = append(probs, key+": "+fmt.Sprintf(format, args...))
	}
	p := &Policy{users: map[string]user{}, tokens: map[string]token{}, roles: map[string]Set{},
		hosts: a.Hosts, ttl: time.Duration(a.SessionTTL)}
	for name, perms := range BuiltinRoles {
		s := Set{}
		for _, perm := range perms {
			s[perm] = true
		}
		p.roles[name] = s
	}
	known := all()
	roleMap := a.RoleMap()
	for _, name := range slices.Sorted(maps.Keys(roleMap)) {
		key := "admin.roles." + name
		if _, builtin := BuiltinRoles[name]; builtin {
			bad(key, "%q is a built-in role and cannot be redefined (pick another name)", name)
			continue
		}
		if name == "" {
			bad(key, "empty role name")
			continue
		}
		s := Set{}
		for i, perm := range roleMap[name] {
			if !known[Permission(perm)] {
				bad(key+"["+strconv.Itoa(i)+"]", "unknown permission %q (known: %s)", perm, strings.Join(all().List(), ", "))
				continue
			}
			s[Permission(perm)] = true
		}
		p.roles[name] = s
	}
	checkRoles := func(key string, roles []string) {
		for i, r := range roles {
			if _, ok := p.roles[r]; !ok {
				bad(key+".roles["+strconv.Itoa(i)+"]", "unknown role %q (known: %s)", r, strings.Join(p.RoleNames(), ", "))
			}
		}
	}
	var fileUsers map[string]passwd.Entry
	var file string
	if a.UsersFile != "" {
		file = UsersFile(a, cfgFile)
		data, err := os.ReadFile(file)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is said below
			}
			abs, aerr := filepath.Abs(file)
			if aerr != nil {
				abs = file
			}
			if filepath.IsAbs(a.UsersFile) {
				bad("admin.users_file", "%s: %v", a.UsersFile, err)
			} else {
				bad("admin.users_file", "%q, relative to the configuration file's folder %s, is %s: %v", a.UsersFile,
					filepath.Dir(abs), abs, err)
			}
		} else if _, fileUsers, err = passwd.ParseFile(file, data); err != nil {
			probs = append(probs, err.Error())
		}
	}
	for i, u := range a.Users {
		key := "admin.users[" + strconv.Itoa(i) + "]"
		checkRoles(key, u.Roles)
		entry, inFile := fileUsers[u.Name]
		switch {
		case u.PasswordHash != "" && inFile:
			bad(key+".password_hash", "user %q also has a hash in %s:%d; keep one", u.Name, file, entry.Line)
		case u.PasswordHash != "":
			h, err := passwd.Parse(u.PasswordHash)
			if err != nil {
				bad(key+".password_hash", "%v", err)
				continue
			}
			p.users[u.Name] = newUser(h, u.Roles)
		case inFile:
			p.users[u.Name] = newUser(entry.Hash, u.Roles)
		case a.UsersFile != "" && fileUsers != nil:
			bad(key, "user %q has no password_hash and no line in %s", u.Name, file)
		}
	}
	for name, e := range fileUsers {
		if !slices.ContainsFunc(a.Users, func(u config.AdminUser) bool { return u.Name == name }) {
			bad("admin.users", "user %q of %s:%d has no entry here, so no roles (add - name: %s with its roles)", name, file, e.Line, name)
		}
	}
	for i, t := range a.Tokens {
		key := "admin.tokens[" + strconv.Itoa(i) + "]"
		checkRoles(key, t.Roles)
		digest := strings.ToLower(t.SHA256)
		if b, err := hex.DecodeString(digest); err != nil || len(b) != sha256.Size {
			bad(key+".sha256", "want 64 hex digits")
			continue
		}
		if prev, dup := p.tokens[digest]; dup {
			bad(key+".sha256", "same token as %q", prev.name)
			continue
		}
		p.tokens[digest] = token{name: t.Name, roles: t.Roles}
	}
	if len(probs) > 0 {
		sort.Strings(probs)
		return nil, errors.New(strings.Join(probs, "\n"))
	}
	p.userNames = slices.Sorted(maps.Keys(p.users))
	p.dummy = passwd.Hash{Iterations: passwd.DefaultIterations, Salt: make([]byte, passwd.SaltSize), Key: make([]byte, passwd.KeySize)}
	for _, u := range p.users {
		p.dummy.Iterations = max(p.dummy.Iterations, u.hash.Iterations)
	}
	_, _ = rand.Read(p.dummy.Salt) // never fails (crypto/rand)
	_, _ = rand.Read(p.dummy.Key)
	for _, t := range p.tokens {
		p.tokenNames = append(p.tokenNames, t.name)
	}
	sort.Strings(p.tokenNames)
	return p, nil
}

// UsersFile returns the path of a's users file (admin.users_file), relative
// to the folder of the configuration file cfgFile unless absolute (or
// cfgFile is the embedded default); "" when there is none.
func UsersFile(a config.Admin, cfgFile string) string {
	file := a.UsersFile
	if file != "" && !filepath.IsAbs(file) && cfgFile != "" && !strings.HasPrefix(cfgFile, "<") {
		file = filepath.Join(filepath.Dir(cfgFile), file)
	}
	return file
}

// TokenDigest returns the hex SHA-256 of an API token, as admin.tokens
// stores it.
func TokenDigest(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
