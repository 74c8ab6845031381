package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/propolis-mqtt/propolis/passwd"
)

// TestServeRefusesOpenAdminAPI: serve refuses an http.address that is not
// loopback when no admin user or token is configured, naming admin.users,
// before touching the data folder.
func TestServeRefusesOpenAdminAPI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	before := fingerprint(t, data)
	code, _, stderr := runCLI(t, "serve", "--http", "0.0.0.0:0", "--data", data, "--listen", "127.0.0.1:0")
	if code == 0 {
		t.Fatalf("exit 0, want a refusal\n%s", stderr)
	}
	want := regexp.MustCompile(`^propolis: config <embedded default>: admin\.users: none configured \(nor admin\.tokens\), and http\.address 0\.0\.0\.0:0 is not a loopback address`)
	if line := errorLine(t, stderr); !want.MatchString(line) {
		t.Fatalf("error line %q does not match %s", line, want)
	}
	if fingerprint(t, data) != before {
		t.Fatal("the data folder was modified by a refused start")
	}
}

// get sends GET url with auth and returns the status and body.
func get(t *testing.T, url string, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServeAdminAPI: `propolis admin token` prints a token and the entry
// to paste; serve with it answers the token on /api/v1 of the operator's
// endpoint and writes the audit log in the data folder; SIGHUP adds a
// user from a users_file, logged by name.
func TestServeAdminAPI(t *testing.T) {
	code, out, stderr := runCLI(t, "admin", "token", "ci", "--role", "operator")
	if code != 0 {
		t.Fatalf("admin token: exit %d: %s", code, stderr)
	}
	tok := regexp.MustCompile(`(?m)^token: (ppt_\S+)$`).FindStringSubmatch(out)
	_, entry, ok := strings.Cut(out, "admin:\n")
	if tok == nil || !ok || !strings.Contains(entry, "roles: [operator]") {
		t.Fatalf("admin token output:\n%s", out)
	}
	tmp := t.TempDir()
	data, file := filepath.Join(tmp, "data"), filepath.Join(tmp, "propolis.yaml")
	base := "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\ndata_dir: " + data + "\nextensions_dir: " + filepath.Join(tmp, "ext") + "\n"
	writeFile(t, file, base+"admin:\n"+entry)
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--config", file)
	_, url, log := startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok[1]) }
	if code, body := get(t, url+"/api/v1/me", bearer); code != 200 || !strings.Contains(body, `"user":"ci"`) {
		t.Fatalf("me with the token: %d %s", code, body)
	}
	if code, _ := get(t, url+"/api/v1/me", nil); code != 401 {
		t.Fatalf("me without credentials: %d, want 401", code)
	}
	if strings.Contains(log.String(), "local mode") {
		t.Fatalf("local mode with a token:\n%s", log.String())
	}
	req, _ := http.NewRequest("DELETE", url+"/api/v1/retained/message?topic=no/such", nil)
	bearer(req)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 404 {
		t.Fatalf("delete: %v %v", resp, err)
	}
	// A trace recording, in the data folder.
	req, _ = http.NewRequest("POST", url+"/api/v1/traces", strings.NewReader(`{"topic_filter":"t/#"}`))
	bearer(req)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("start a trace: %v %v", resp, err)
	}
	if entries, err := os.ReadDir(filepath.Join(data, "traces")); err != nil || len(entries) != 1 {
		t.Fatalf("traces folder: %v %v", entries, err)
	}
	audit, err := os.ReadFile(filepath.Join(data, "audit.log"))
	if err != nil || !strings.Contains(string(audit), `"user":"ci","auth":"token","remote":"127.0.0.1","action":"retained.delete","target":"no/such","result":"error"`) {
		t.Fatalf("audit log: %v\n%s", err, audit)
	}

	// SIGHUP: a user from a users file next to the configuration.
	hash, err := passwd.New([]byte("pw"), passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tmp, "admins"), "alice:"+hash+"\n")
	writeFile(t, file, base+"admin:\n  users_file: admins\n  users:\n    - name: alice\n      roles: [viewer]\n"+entry)
	n := strings.Count(log.String(), "\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, n, "alice added", logLine{"msg": "admin user added", "user": "alice"})
	waitLog(t, log, n, "the reload", logLine{"msg": "configuration reloaded"})
	if code, body := get(t, url+"/api/v1/me", func(r *http.Request) { r.SetBasicAuth("alice", "pw") }); code != 200 || !strings.Contains(body, `"roles":["viewer"]`) {
		t.Fatalf("alice after the reload: %d %s", code, body)
	}
	// A new password for alice: the reload says so by name, and the old
	// password no longer works.
	hash2, err := passwd.New([]byte("pw2"), passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tmp, "admins"), "alice:"+hash2+"\n")
	n = strings.Count(log.String(), "\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, n, "alice's password changed", logLine{"msg": "admin user password changed: the user's sessions end", "user": "alice"})
	waitLog(t, log, n, "the reload", logLine{"msg": "configuration reloaded"})
	if code, _ := get(t, url+"/api/v1/me", func(r *http.Request) { r.SetBasicAuth("alice", "pw") }); code != 401 {
		t.Fatalf("alice's old password after the change: %d, want 401", code)
	}
	if code, _ := get(t, url+"/api/v1/me", func(r *http.Request) { r.SetBasicAuth("alice", "pw2") }); code != 200 {
		t.Fatalf("alice's new password: %d", code)
	}
	// A reload with an unknown role is refused whole.
	writeFile(t, file, base+"admin:\n  users_file: admins\n  users:\n    - name: alice\n      roles: [wizard]\n"+entry)
	n = strings.Count(log.String(), "\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, n, "the refusal", logLine{"msg": "reload failed, configuration unchanged"})
	if !strings.Contains(log.String(), `admin.users[0].roles[0]: unknown role \"wizard\"`) {
		t.Fatalf("the refusal does not name the key:\n%s", log.String())
	}
	if code, _ := get(t, url+"/api/v1/me", func(r *http.Request) { r.SetBasicAuth("alice", "pw2") }); code != 200 {
		t.Fatalf("alice after a refused reload: %d", code)
	}
}

// TestServeAdminLocalMode: with no users on a loopback endpoint the API
// answers as "local", and the start-up log warns about it.
func TestServeAdminLocalMode(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext"), "--listen", "127.0.0.1:0")
	_, url, log := startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	if !strings.Contains(log.String(), `level=WARN msg="admin API in local mode: no admin.users or admin.tokens are configured, so anyone on this machine can use`) {
		t.Fatalf("no local-mode warning:\n%s", log.String())
	}
	if code, body := get(t, url+"/api/v1/me", nil); code != 200 || !strings.Contains(body, `"auth":"local"`) {
		t.Fatalf("me: %d %s", code, body)
	}
}

// TestServeAdminReloadToLocal: a reload that removes the last admin user
// on a loopback endpoint puts the API in local mode, and the log warns as
// the start-up does, not only "admin user removed"; a reload that adds a
// user back says logins are required again.
func TestServeAdminReloadToLocal(t *testing.T) {
	tmp := t.TempDir()
	hash, err := passwd.New([]byte("pw"), passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	base := "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\ndata_dir: " + filepath.Join(tmp, "data") +
		"\nextensions_dir: " + filepath.Join(tmp, "ext") + "\nhttp:\n  address: 127.0.0.1:0\n"
	withUser := base + "admin:\n  users:\n    - name: alice\n      roles: [admin]\n      password_hash: \"" + hash + "\"\n"
	file := filepath.Join(tmp, "propolis.yaml")
	writeFile(t, file, withUser)
	cmd := exec.Command(bin, "serve", "--config", file)
	_, url, log := startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	if code, _ := get(t, url+"/api/v1/me", nil); code != 401 {
		t.Fatalf("me without credentials while alice is configured: %d, want 401", code)
	}

	writeFile(t, file, base)
	n := strings.Count(log.String(), "\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, n, "the local-mode warning of the reload", logLine{"level": "WARN",
		"msg": `admin API in local mode: no admin.users or admin.tokens are configured, so anyone on this machine can use the admin API and the control center, as the user "local" with every permission`})
	if code, body := get(t, url+"/api/v1/me", nil); code != 200 || !strings.Contains(body, `"auth":"local"`) {
		t.Fatalf("me after the reload to no users: %d %s", code, body)
	}

	writeFile(t, file, withUser)
	n = strings.Count(log.String(), "\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, n, "the end of local mode", logLine{"msg": "admin API leaves local mode: every request needs a login, basic auth or a token", "users": "alice"})
	if code, _ := get(t, url+"/api/v1/me", nil); code != 401 {
		t.Fatalf("me without credentials after alice came back: %d, want 401", code)
	}
}
