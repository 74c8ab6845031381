package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/internal/poll"
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

// TestServeAdminDisabled: with admin.enabled false a non-loopback
// http.address needs no admin users: /metrics is served there, the API
// and the control center are not; the refusal without it names both ways
// out.
func TestServeAdminDisabled(t *testing.T) {
	tmp := t.TempDir()
	code, _, stderr := runCLI(t, "serve", "--http", "0.0.0.0:0", "--data", filepath.Join(tmp, "data0"), "--listen", "127.0.0.1:0")
	if line := errorLine(t, stderr); code == 0 || !strings.Contains(line, "admin.users (propolis passwd makes the hashes) or admin.tokens") ||
		!strings.Contains(line, "or set admin.enabled: false to serve only /metrics, /healthz and /readyz there") {
		t.Fatalf("exit %d, error line %q: want the refusal naming admin.users, admin.tokens and admin.enabled", code, line)
	}
	file := filepath.Join(tmp, "propolis.yaml")
	writeFile(t, file, "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\ndata_dir: "+filepath.Join(tmp, "data")+
		"\nextensions_dir: "+filepath.Join(tmp, "ext")+"\nhttp:\n  address: 0.0.0.0:0\nadmin:\n  enabled: false\n")
	cmd := exec.Command(bin, "serve", "--config", file)
	_, url, log := startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	port := url[strings.LastIndex(url, ":"):]
	local := "http://127.0.0.1" + port
	if code, body := get(t, local+"/metrics", nil); code != 200 || !strings.Contains(body, "propolis_ready") {
		t.Fatalf("/metrics: %d %.200s", code, body)
	}
	for _, path := range []string{"/api/v1/me", "/ui/"} {
		if code, body := get(t, local+path, nil); code != 404 {
			t.Fatalf("%s with admin.enabled false: %d %.200s, want 404", path, code, body)
		}
	}
	if !strings.Contains(log.String(), `msg="admin API and control center off (admin.enabled: false)"`) {
		t.Fatalf("no line saying the admin API is off:\n%s", log.String())
	}
}

// TestServeAdminOnEveryInterface: with a token on a wildcard http.address
// without http.tls the start-up log warns that credentials travel in clear
// text, and gives a control center URL one can open (loopback, the port).
func TestServeAdminOnEveryInterface(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "propolis.yaml")
	writeFile(t, file, "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\ndata_dir: "+filepath.Join(tmp, "data")+
		"\nextensions_dir: "+filepath.Join(tmp, "ext")+"\nhttp:\n  address: 0.0.0.0:0\nadmin:\n  tokens:\n    - name: ci\n      sha256: "+
		access.TokenDigest("tok")+"\n      roles: [viewer]\n")
	cmd := exec.Command(bin, "serve", "--config", file)
	_, url, log := startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	port := url[strings.LastIndex(url, ":"):]
	if !strings.Contains(log.String(), `level=WARN msg="admin API on a non-loopback http.address without http.tls: passwords, API tokens and session cookies travel in clear text`) {
		t.Fatalf("no clear-text warning:\n%s", log.String())
	}
	want := `control_center=http://127.0.0.1` + port + `/ui/ api=http://127.0.0.1` + port + `/api/v1 listening_on="every interface (` + strings.TrimPrefix(url, "http://") + `)"`
	if !strings.Contains(log.String(), want) {
		t.Fatalf("start-up log lacks %s:\n%s", want, log.String())
	}
	if code, body := get(t, "http://127.0.0.1"+port+"/api/v1/me", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }); code != 200 {
		t.Fatalf("me: %d %s", code, body)
	}
}

// TestServeAdminUsersFileWatched: `propolis passwd` on admin.users_file
// applies within about 2 s without SIGHUP, logged by user; a file with a
// bad line keeps the users in effect and logs FILE:LINE; a SIGHUP's
// summary counts the admin changes.
func TestServeAdminUsersFileWatched(t *testing.T) {
	tmp := t.TempDir()
	file, admins := filepath.Join(tmp, "propolis.yaml"), filepath.Join(tmp, "admins")
	if code, _, stderr := runCLI(t, "passwd", "-c", "-b", "--iterations", "1000", admins, "alice", "pw1"); code != 0 {
		t.Fatalf("passwd: %s", stderr)
	}
	writeFile(t, file, "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\ndata_dir: "+filepath.Join(tmp, "data")+
		"\nextensions_dir: "+filepath.Join(tmp, "ext")+"\nadmin:\n  users_file: admins\n  users:\n    - name: alice\n      roles: [viewer]\n")
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--config", file)
	_, url, log := startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	as := func(pw string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth("alice", pw) } }
	if code, body := get(t, url+"/api/v1/me", as("pw1")); code != 200 {
		t.Fatalf("alice: %d %s", code, body)
	}

	n := strings.Count(log.String(), "\n")
	if code, _, stderr := runCLI(t, "passwd", "-b", "--iterations", "1000", admins, "alice", "pw2"); code != 0 {
		t.Fatalf("passwd: %s", stderr)
	}
	waitLog(t, log, n, "alice's new password", logLine{"msg": "admin user password changed: the user's sessions end", "user": "alice"})
	waitLog(t, log, n, "the file applied", logLine{"msg": "admin users file applied", "file": admins, "changes": "1"})
	if code, _ := get(t, url+"/api/v1/me", as("pw2")); code != 200 {
		t.Fatalf("alice's new password, without SIGHUP: %d", code)
	}

	// A bad line: the users in effect stay, the error names FILE:LINE.
	n = strings.Count(log.String(), "\n")
	data, err := os.ReadFile(admins)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, admins, string(data)+"no colon here\n")
	waitLog(t, log, n, "the refused file", logLine{"level": "ERROR", "msg": "admin users file changed but not applied: the users in effect stay", "file": admins})
	if !strings.Contains(log.String(), admins+`:2: want USER:HASH`) {
		t.Fatalf("the error does not name FILE:LINE:\n%s", log.String())
	}
	if code, _ := get(t, url+"/api/v1/me", as("pw2")); code != 200 {
		t.Fatalf("alice after a bad file: %d", code)
	}

	// The file fixed: applied, nothing changed.
	n = strings.Count(log.String(), "\n")
	writeFile(t, admins, string(data))
	waitLog(t, log, n, "the fixed file", logLine{"msg": "admin users file applied", "file": admins, "changes": "0"})

	// A SIGHUP changing alice's roles: the summary counts the admin
	// change.
	writeFile(t, file, "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\ndata_dir: "+filepath.Join(tmp, "data")+
		"\nextensions_dir: "+filepath.Join(tmp, "ext")+"\nadmin:\n  users_file: admins\n  users:\n    - name: alice\n      roles: [operator]\n")
	n = strings.Count(log.String(), "\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, n, "the roles change", logLine{"msg": "admin user or token roles changed", "name": "alice", "roles": "operator"})
	waitLog(t, log, n, "the summary", logLine{"msg": "configuration reloaded", "changes": "1", "admin_changes": "1"})
}

// TestServeAdminKeepaliveUnknownAfterRestart: an offline session shows its
// last keepalive; after a restart, which restores it without one, the
// client detail says keepalive null (unknown), not 0.
func TestServeAdminKeepaliveUnknownAfterRestart(t *testing.T) {
	tmp := t.TempDir()
	installAllowAll(t, filepath.Join(tmp, "ext"))
	args := []string{"serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext")}
	detail := func(base string) string {
		t.Helper()
		code, body := get(t, base+"/api/v1/clients/ka", nil)
		if code != 200 {
			t.Fatalf("client detail: %d %s", code, body)
		}
		return body
	}
	cmd := exec.Command(bin, args...)
	addr, base, log := startServeOps(t, cmd)
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("ka").SetProtocolVersion(4).
		SetCleanSession(false).SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(poll.Timeout))
	if tok := c.Connect(); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	c.Disconnect(0)
	poll.Until(t, "ka offline", func() bool { return strings.Contains(detail(base), `"connected":false`) })
	if body := detail(base); !strings.Contains(body, `"keepalive":60`) {
		t.Fatalf("offline before the restart: %s", body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit: %v\n%s", err, log.String())
	}
	cmd = exec.Command(bin, args...)
	_, base, _ = startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	if body := detail(base); !strings.Contains(body, `"keepalive":null`) {
		t.Fatalf("restored: %s, want keepalive null", body)
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
