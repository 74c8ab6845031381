package config

import (
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/propolis-mqtt/propolis/passwd"
)

// Admin is the admin API's access control (package admin/access): who may
// use the API and the control center on the operator's HTTP endpoint
// (section http), with which permissions. With no users and no tokens the
// API serves only on a loopback http.address, as the local user "local"
// with every permission; `propolis serve` refuses a non-loopback address
// without them, unless Enabled is false. Users, roles and tokens reload on
// SIGHUP (and the users file when it changes).
type Admin struct {
	// Enabled mounts the admin API and the control center on the HTTP
	// endpoint. false serves neither (the endpoint keeps /metrics,
	// /healthz and /readyz), so that a non-loopback http.address needs no
	// admin users: a Prometheus on another machine. Read at start only.
	// Default true.
	Enabled bool `yaml:"enabled"`
	// UsersFile is a password file in the format of `propolis passwd`
	// (USER:HASH lines, package passwd), relative to the configuration
	// file's folder unless absolute; its hashes are read at start and at
	// every reload. A user named there needs an entry in Users for its
	// roles. Default "" (none).
	UsersFile string `yaml:"users_file"`
	// Users are the admin users with their roles; a user's password hash is
	// here (password_hash) or in UsersFile, not both. Default none.
	// The reload log names each by its Name (key:"name").
	Users []AdminUser `yaml:"users" key:"name"`
	// Roles adds roles: a mapping of role name to its list of permissions
	// (admin/access lists them). The built-in roles admin, operator and
	// viewer cannot be redefined. Default {} (none).
	Roles any `yaml:"roles"`
	// Tokens are API tokens for scripts (Authorization: Bearer TOKEN),
	// stored as the hex SHA-256 of the token; `propolis admin token NAME`
	// makes one. Default none.
	// The reload log names each by its Name (key:"name").
	Tokens []AdminToken `yaml:"tokens" key:"name"`
	// Hosts are further host names (or host:port) the API answers to in
	// the request's Host header, besides loopback names and http.address
	// itself: the names operators reach the endpoint by. Any other Host
	// is refused with 403 (DNS rebinding). Default none.
	Hosts []string `yaml:"hosts"`
	// SessionTTL is how long a login session lasts, 1m to 720h.
	// Default 12h.
	SessionTTL Duration `yaml:"session_ttl"`
	// AuditLog is the file every state-changing action is appended to, one
	// JSON line each, relative to data_dir unless absolute. Default
	// "audit.log".
	AuditLog string `yaml:"audit_log"`
}

// AdminUser is one admin user.
type AdminUser struct {
	// Name is the user name (as in a password file); required, unique.
	Name string `yaml:"name"`
	// Roles are the user's roles; at least one.
	Roles []string `yaml:"roles"`
	// PasswordHash is a package passwd hash ($pbkdf2-sha512$...), as
	// `propolis passwd` writes; "" when the hash is in users_file.
	PasswordHash string `yaml:"password_hash" secret:"true"`
}

// AdminToken is one API token.
type AdminToken struct {
	// Name names the token in the audit log; required, unique.
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the token (64 hex digits); required.
	SHA256 string `yaml:"sha256" secret:"true"`
	// Roles are the token's roles; at least one.
	Roles []string `yaml:"roles"`
}

// Limits of the admin section.
const (
	minSessionTTL = Duration(time.Minute)
	maxSessionTTL = Duration(720 * time.Hour)
)

// validateAdmin checks the admin section's syntax: names, hashes, token
// digests and durations. Role and permission names are checked by package
// admin/access, which knows them, when it builds the users.
func (c *Config) validateAdmin(ch *checker) {
	a := &c.Admin
	users := map[string]string{}
	for i, u := range a.Users {
		key := "admin.users[" + strconv.Itoa(i) + "]"
		if err := passwd.CheckUser(u.Name); err != nil {
			ch.addf(key+".name", "%v", err)
		} else if prev, dup := users[u.Name]; dup {
			ch.addf(key+".name", "user %q is already %s", u.Name, prev)
		} else {
			users[u.Name] = key
		}
		if len(u.Roles) == 0 {
			ch.addf(key+".roles", "at least one role is required")
		}
		if u.PasswordHash != "" {
			if _, err := passwd.Parse(u.PasswordHash); err != nil {
				ch.addf(key+".password_hash", "%v", err)
			}
		} else if a.UsersFile == "" {
			ch.addf(key+".password_hash", "required (or admin.users_file with a line for %q)", u.Name)
		}
	}
	tokens := map[string]string{}
	for i, t := range a.Tokens {
		key := "admin.tokens[" + strconv.Itoa(i) + "]"
		if t.Name == "" {
			ch.addf(key+".name", "required")
		} else if prev, dup := tokens[t.Name]; dup {
			ch.addf(key+".name", "token %q is already %s", t.Name, prev)
		} else {
			tokens[t.Name] = key
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != 32 {
			ch.addf(key+".sha256", "want 64 hex digits (the SHA-256 of the token, from `propolis admin token %s`)", t.Name)
		}
		if len(t.Roles) == 0 {
			ch.addf(key+".roles", "at least one role is required")
		}
	}
	for i, h := range a.Hosts {
		if h == "" {
			ch.addf("admin.hosts["+strconv.Itoa(i)+"]", "empty host name")
		}
	}
	if a.Roles != nil {
		m, ok := a.Roles.(map[string]any)
		if !ok {
			ch.addf("admin.roles", "want a mapping of role name to a list of permissions")
		}
		for _, name := range slices.Sorted(maps.Keys(m)) {
			key := "admin.roles." + name
			list, ok := m[name].([]any)
			if !ok {
				ch.addf(key, "want a list of permissions")
				continue
			}
			for i, p := range list {
				if _, ok := p.(string); !ok {
					ch.addf(key+"["+strconv.Itoa(i)+"]", "want a permission name, got %v", p)
				}
			}
		}
	}
	ch.durationRange("admin.session_ttl", a.SessionTTL, minSessionTTL, maxSessionTTL)
	ch.required("admin.audit_log", a.AuditLog)
}

// RoleMap returns admin.roles as role name to permissions; Validate has
// checked its shape (a mapping of names to lists of strings).
func (a *Admin) RoleMap() map[string][]string {
	out := map[string][]string{}
	m, _ := a.Roles.(map[string]any)
	for name, v := range m {
		list, _ := v.([]any)
		perms := make([]string, 0, len(list))
		for _, p := range list {
			if s, ok := p.(string); ok {
				perms = append(perms, s)
			}
		}
		out[name] = perms
	}
	return out
}
