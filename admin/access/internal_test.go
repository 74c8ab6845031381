package access

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/passwd"
)

// TestLimiterBounded: the buckets of the limiter stay at maxLimited
// whatever number of user names and IPs fail.
func TestLimiterBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(LoginLimits{}, func() time.Time { return now })
	for i := range 2*maxLimited + 10 {
		if _, err := l.reserve("192.0.2."+strconv.Itoa(i%250), "user-"+strconv.Itoa(i)); err != nil && i%250 == i {
			t.Fatal(err)
		}
		now = now.Add(time.Hour) // every bucket full again
	}
	if l.users.len() != maxLimited || l.ips.len() > maxLimited {
		t.Fatalf("%d user buckets, %d ip buckets: want at most %d", l.users.len(), l.ips.len(), maxLimited)
	}
}

// TestDummyHashIterations: the hash checked for an unknown user name has
// the largest iteration count of the users' hashes, so that it costs as
// much as the slowest user's.
func TestDummyHashIterations(t *testing.T) {
	var users []config.AdminUser
	for i, it := range []int{passwd.MinIterations, 3 * passwd.DefaultIterations, passwd.DefaultIterations} {
		h, err := passwd.New([]byte("pw"), it)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, config.AdminUser{Name: "u" + strconv.Itoa(i), Roles: []string{"viewer"}, PasswordHash: h})
	}
	p, err := Build(config.Admin{Users: users}, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.dummy.Iterations != 3*passwd.DefaultIterations || len(p.dummy.Salt) != passwd.SaltSize || len(p.dummy.Key) != passwd.KeySize {
		t.Fatalf("dummy hash: %d iterations, salt %d, key %d", p.dummy.Iterations, len(p.dummy.Salt), len(p.dummy.Key))
	}
	if p.dummy.Verify([]byte("pw")) {
		t.Fatal("the dummy hash verifies a password")
	}
}

// TestAuditRotation: the audit log is rotated at its size limit, keeps
// AuditFiles old files, and every line of every file is whole.
func TestAuditRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.max = 1000
	for i := range 200 {
		if err := a.Write(Entry{User: "u", Action: "logout", Target: strconv.Itoa(i), Result: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	seen := 0
	for i := range AuditFiles + 2 {
		name := path
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		data, err := os.ReadFile(name)
		if i == AuditFiles+1 {
			if !os.IsNotExist(err) {
				t.Fatalf("%s: kept beyond AuditFiles (%v)", name, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 1000+200 {
			t.Fatalf("%s: %d bytes, over the limit", name, len(data))
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			var e Entry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("%s: line %q: %v", name, l, err)
			}
			seen++
		}
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), `"target":"199"`) {
		t.Fatalf("the newest line is not in %s", path)
	}
	if seen == 0 || seen >= 200 {
		t.Fatalf("%d lines kept", seen)
	}
}
