package config

import (
	"strings"
	"testing"
)

// TestDiffRedactsSecrets: a changed password hash or token digest shows
// in a reload as a different fingerprint, never as its value.
func TestDiffRedactsSecrets(t *testing.T) {
	old, cur := Default(), Default()
	old.Admin.Users = []AdminUser{{Name: "alice", Roles: []string{"admin"}, PasswordHash: "$pbkdf2-sha512$old"}}
	cur.Admin.Users = []AdminUser{{Name: "alice", Roles: []string{"admin"}, PasswordHash: "$pbkdf2-sha512$new"}}
	changes := Diff(old, cur)
	if len(changes) != 1 || changes[0].Key != "admin.users[alice].password_hash" || !changes[0].Live {
		t.Fatalf("changes: %+v", changes)
	}
	c := changes[0]
	if c.Old == c.New || !strings.HasPrefix(c.Old, Redacted+" ") || strings.Contains(c.Old+c.New, "pbkdf2") {
		t.Fatalf("old %q new %q", c.Old, c.New)
	}
}
