package host

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/passwd"
)

// These tests run the extensions of shipped/, built from the repository
// with their own manifests, in a real broker, with real MQTT clients.

// installShipped installs shipped/<id> into extDir as an operator would:
// its manifest as shipped, its module built from the repository, and the
// given files; it returns the extension's folder.
func installShipped(t testing.TB, extDir, id string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(extDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join("..", "shipped", id, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(ManifestFile, manifest)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(buildGuest(t, "shipped", id))
	if err != nil {
		t.Fatal(err)
	}
	files[ManifestFile] = string(manifest)
	files[m.Module] = string(bin)
	for name, data := range files {
		writeAtomic(t, filepath.Join(dir, name), data)
	}
	return dir
}

// writeAtomic replaces a file the way `propolis passwd` and most editors
// do: a new file renamed over the old.
func writeAtomic(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// userLine returns a users file line, hashed with iterations.
func userLine(t testing.TB, user, pw string, iterations int) string {
	t.Helper()
	h, err := passwd.New([]byte(pw), iterations)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + h + "\n"
}

const fileAuthACL = `# test rules
group sensors: s-1
[user alice]
allow all alice/{clientid}/#
[group sensors]
allow publish sensors/{username}/#
allow subscribe commands/{clientid}/#
[all]
deny subscribe public/secret/#
allow subscribe public/#
`

// login connects an MQTT 5 client and returns the CONNACK reason
// code (0 when connected) and the client.
func login(t *testing.T, addr, id, user, pass string) (byte, *paho.Client) {
	t.Helper()
	c, ack, err := v5(t, addr, id, user, pass, nil)
	if ack == nil {
		t.Fatalf("connect %s: no CONNACK: %v", id, err)
	}
	if ack.ReasonCode == 0 {
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	}
	return ack.ReasonCode, c
}

// TestFileAuth: logins, topic rules with {clientid} and {username}, and
// edits of the files picked up without a reload.
func TestFileAuth(t *testing.T) {
	extDir := t.TempDir()
	dir := installShipped(t, extDir, "file-auth", map[string]string{
		"passwd": "# users\n" + userLine(t, "alice", "pw-a", passwd.MinIterations) + userLine(t, "s-1", "pw-s", passwd.MinIterations),
		"acl":    fileAuthACL,
	})
	w := startWired(t, extDir, Options{})
	w.h.Watch() // only to prove that the files need no reload; see "reload" below

	t.Run("logins", func(t *testing.T) {
		for _, tt := range []struct {
			name, user, pass string
			code             byte
		}{
			{"right password", "alice", "pw-a", 0},
			{"wrong password", "alice", "pw-s", 0x86},
			{"unknown user", "mallory", "pw-a", 0x86},
			{"no user name", "", "", 0x86},
		} {
			if code, _ := login(t, w.addr, "login-"+tt.user, tt.user, tt.pass); code != tt.code {
				t.Errorf("%s: CONNACK %#x, want %#x", tt.name, code, tt.code)
			}
		}
		if rc := v3ReturnCode(w.addr, "v3", "alice", "wrong"); rc != 0x04 {
			t.Errorf("MQTT 3.1.1 wrong password: return code %#x, want 0x04", rc)
		}
		if rc := v3ReturnCode(w.addr, "v3", "alice", "pw-a"); rc != 0 {
			t.Errorf("MQTT 3.1.1 right password: return code %#x, want 0", rc)
		}
	})

	t.Run("rules", func(t *testing.T) {
		_, alice := login(t, w.addr, "a-1", "alice", "pw-a")
		_, sensor := login(t, w.addr, "dev-9", "s-1", "pw-s")
		pub := func(c *paho.Client, topic string) byte {
			resp, err := c.Publish(ctx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
			if resp == nil {
				t.Fatalf("publish %s: %v", topic, err)
			}
			return resp.ReasonCode
		}
		sub := func(c *paho.Client, filter string) byte {
			resp, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
			if resp == nil || len(resp.Reasons) != 1 {
				t.Fatalf("subscribe %s: %+v %v", filter, resp, err)
			}
			return resp.Reasons[0]
		}
		for _, tt := range []struct {
			name string
			code byte
			want byte
		}{
			{"alice publishes in her client id's tree", pub(alice, "alice/a-1/x"), 0},
			{"alice subscribes to her client id's tree", sub(alice, "alice/a-1/#"), 1},
			{"alice publishes in another client id's tree", pub(alice, "alice/dev-9/x"), 0x87},
			{"alice publishes to sensors", pub(alice, "sensors/alice/t"), 0x87},
			{"alice subscribes to public (all)", sub(alice, "public/news"), 1},
			{"alice subscribes to public/secret (deny in all)", sub(alice, "public/secret/x"), 0x87},
			{"sensor publishes under its user name", pub(sensor, "sensors/s-1/temp"), 0},
			{"sensor publishes under another user name", pub(sensor, "sensors/s-2/temp"), 0x87},
			{"sensor may not subscribe where it publishes", sub(sensor, "sensors/s-1/#"), 0x87},
			{"sensor subscribes to its client id's commands", sub(sensor, "commands/dev-9/#"), 1},
			{"sensor subscribes to another client's commands", sub(sensor, "commands/dev-8/#"), 0x87},
			{"sensor publishes to its commands (subscribe only)", pub(sensor, "commands/dev-9/x"), 0x87},
			{"sensor publishes elsewhere", pub(sensor, "other"), 0x87},
		} {
			if tt.code != tt.want {
				t.Errorf("%s: code %#x, want %#x", tt.name, tt.code, tt.want)
			}
		}
	})

	t.Run("edits", func(t *testing.T) {
		users := "# users\n" + userLine(t, "alice", "pw-a", passwd.MinIterations) + userLine(t, "bob", "pw-b", passwd.MinIterations)
		writeAtomic(t, filepath.Join(dir, "passwd"), users)
		poll.Until(t, "bob allowed after the edit", func() bool {
			code, _ := login(t, w.addr, "bob-1", "bob", "pw-b")
			return code == 0
		})
		if code, _ := login(t, w.addr, "s-1", "s-1", "pw-s"); code != 0x86 {
			t.Errorf("removed user s-1: CONNACK %#x, want 0x86", code)
		}
		if n := strings.Count(w.logs.String(), `msg="extension started" extension=file-auth`); n != 1 {
			t.Errorf("extension started %d times, want once: an edit must not reload it", n)
		}

		// A bad edit: refused, reported once with its line, bob still in.
		bad := users + "carol " + strings.TrimPrefix(userLine(t, "x", "pw-c", passwd.MinIterations), "x:")
		writeAtomic(t, filepath.Join(dir, "passwd"), bad)
		poll.Until(t, "the bad line logged", func() bool {
			return strings.Contains(w.logs.String(), `passwd:4: want USER:HASH, found no \":\"`)
		})
		if code, _ := login(t, w.addr, "bob-2", "bob", "pw-b"); code != 0 {
			t.Errorf("bob after a bad edit: CONNACK %#x, want 0", code)
		}
		// The rule file's edits are refused the same way.
		writeAtomic(t, filepath.Join(dir, "acl"), fileAuthACL+"allow everything #\n")
		poll.Until(t, "the bad rule logged", func() bool {
			return strings.Contains(w.logs.String(), `acl:11: activity \"everything\": want publish, subscribe or all`)
		})

		// A reload while the files are bad: the new instances take the
		// last good versions the extension saved.
		writeAtomic(t, filepath.Join(dir, ManifestFile), strings.Replace(readFile(t, filepath.Join(dir, ManifestFile)), "version: 1.0.0", "version: 1.0.1", 1))
		poll.Until(t, "reloaded", func() bool {
			for _, s := range w.h.Status() {
				if s.ID == "file-auth" && s.Version == "1.0.1" && s.State == StateRunning {
					return true
				}
			}
			return false
		})
		if code, _ := login(t, w.addr, "bob-3", "bob", "pw-b"); code != 0 {
			t.Errorf("bob after a reload with bad files: CONNACK %#x, want 0", code)
		}
		// Reported once per load, whatever the number of instances.
		if n := strings.Count(w.logs.String(), "passwd:4: want USER:HASH"); n != 2 {
			t.Errorf("the bad line logged %d times, want once per load (2):\n%s", n, w.logs.String())
		}

		// Fixed: carol gets in, under the fixed rules.
		writeAtomic(t, filepath.Join(dir, "passwd"), users+userLine(t, "carol", "pw-c", passwd.MinIterations))
		writeAtomic(t, filepath.Join(dir, "acl"), fileAuthACL+"[user carol]\nallow publish carol/#\n")
		poll.Until(t, "carol allowed after the fix", func() bool {
			code, _ := login(t, w.addr, "carol-1", "carol", "pw-c")
			return code == 0
		})
		// A client's rules are those of its CONNECT: a new connection
		// gets the new rule once the rule file is loaded.
		n := 0
		poll.Until(t, "carol's rule applied", func() bool {
			n++
			code, carol := login(t, w.addr, fmt.Sprintf("carol-%d", n), "carol", "pw-c")
			if code != 0 {
				t.Fatalf("carol: CONNACK %#x", code)
			}
			resp, _ := carol.Publish(ctx(t), &paho.Publish{Topic: "carol/x", QoS: 1, Payload: []byte("x")})
			return resp != nil && resp.ReasonCode == 0
		})
	})
}

// readFile returns a file's text.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// BenchmarkFileAuthVerify measures a CONNECT that file-auth answers with
// one password check at passwd.DefaultIterations inside the Wasm guest (a
// different wrong password each time, so the instances' caches never
// answer), and, for comparison, one answered from the cache.
func BenchmarkFileAuthVerify(b *testing.B) {
	extDir := b.TempDir()
	installShipped(b, extDir, "file-auth", map[string]string{
		"passwd": userLine(b, "alice", "pw-a", passwd.DefaultIterations),
		"acl":    "[all]\nallow all #\n",
	})
	w := startWired(b, extDir, Options{})
	var n atomic.Int64
	connect := func(pass string, want byte) {
		id := fmt.Sprintf("bench-%d", n.Add(1))
		c, ack, _ := v5(b, w.addr, id, "alice", pass, nil)
		if ack == nil || ack.ReasonCode != want {
			b.Fatalf("CONNACK %+v, want %#x", ack, want)
		}
		if want == 0 {
			_ = c.Disconnect(&paho.Disconnect{})
		}
	}
	b.Run("hash", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			connect(fmt.Sprintf("wrong-%d", i), 0x86)
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			connect("pw-a", 0)
		}
	})
}

// TestFilesRead: with "files: read" a module reads its own folder at
// /extension and can change nothing there nor see anything else, not even
// through a symbolic link leading out of the folder; without
// it, it sees no file system at all.
func TestFilesRead(t *testing.T) {
	wasm := buildGuest(t, "testdata/guests", "fsprobe")
	for _, tt := range []struct{ extra, want string }{
		{"files: read\n", "read ok, write failed, append failed, remove failed, rename failed, escape failed, outside failed, inlink ok, outlink failed"},
		{"files: none\n", "read failed, write failed, append failed, remove failed, rename failed, escape failed, outside failed, inlink failed, outlink failed"},
		{"", "read failed, write failed, append failed, remove failed, rename failed, escape failed, outside failed, inlink failed, outlink failed"},
	} {
		t.Run(strings.TrimSpace(tt.extra), func(t *testing.T) {
			extDir := t.TempDir()
			dir := installExtension(t, extDir, "fsprobe", wasm, 0, tt.extra)
			manifest := readFile(t, filepath.Join(dir, ManifestFile))
			// A link inside the folder is followed; one leading out of
			// it (here to the host's root) is not.
			if err := os.Symlink(ManifestFile, filepath.Join(dir, "inlink")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/", filepath.Join(dir, "outlink")); err != nil {
				t.Fatal(err)
			}
			h, _ := newTestHost(t, extDir)
			st := h.Status()
			if len(st) != 1 || st[0].State != StateFailed || !strings.HasSuffix(st[0].Reason, tt.want) {
				t.Fatalf("status %+v, want a refused start ending %q", st, tt.want)
			}
			if got := readFile(t, filepath.Join(dir, ManifestFile)); got != manifest {
				t.Errorf("manifest changed:\n%s", got)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 4 {
				t.Errorf("folder holds %d entries, want the 4 installed", len(entries))
			}
		})
	}
}

// watched connects an MQTT 5 client whose server DISCONNECT reason code
// arrives on the returned channel.
func watched(t *testing.T, addr, id, user, pass string) (*paho.Client, chan byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	disc := make(chan byte, 1)
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { disc <- d.ReasonCode }})
	ack, err := c.Connect(ctx(t), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Username: user, UsernameFlag: true, Password: []byte(pass), PasswordFlag: true})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect %s: %+v %v", id, ack, err)
	}
	return c, disc
}

// TestFileAuthDisconnects: an edit that takes rights from a connected
// client (its rules change, its password changes, it is removed)
// disconnects it, so that it reconnects under the new version; clients
// the edit does not touch, and bad edits, disconnect nobody.
func TestFileAuthDisconnects(t *testing.T) {
	extDir := t.TempDir()
	alice, sensor := userLine(t, "alice", "pw-a", passwd.MinIterations), userLine(t, "s-1", "pw-s", passwd.MinIterations)
	dir := installShipped(t, extDir, "file-auth", map[string]string{"passwd": alice + sensor, "acl": fileAuthACL})
	w := startWired(t, extDir, Options{})
	a, aliceGone := watched(t, w.addr, "a-1", "alice", "pw-a")
	_, sensorGone := watched(t, w.addr, "dev-9", "s-1", "pw-s")
	gone := func(what string, ch chan byte, want byte) {
		t.Helper()
		select {
		case code := <-ch:
			if code != want {
				t.Errorf("%s: DISCONNECT %#x, want %#x", what, code, want)
			}
		case <-time.After(poll.Timeout):
			t.Fatalf("%s: not disconnected", what)
		}
	}
	stays := func(what string, c *paho.Client, ch chan byte) {
		t.Helper()
		select {
		case code := <-ch:
			t.Fatalf("%s: disconnected (%#x)", what, code)
		default:
		}
		if resp, err := c.Publish(ctx(t), &paho.Publish{Topic: "alice/a-1/ping", QoS: 1, Payload: []byte("x")}); err != nil || resp.ReasonCode != 0 {
			t.Fatalf("%s: publish %+v %v", what, resp, err)
		}
	}

	// The sensors' rules change: s-1 goes (0x98), alice stays.
	writeAtomic(t, filepath.Join(dir, "acl"), strings.Replace(fileAuthACL, "allow subscribe commands/{clientid}/#", "allow subscribe commands/{clientid}/+", 1))
	gone("s-1 after its rules changed", sensorGone, 0x98)
	stays("alice after the sensors' rules changed", a, aliceGone)
	poll.Until(t, "the disconnect logged", func() bool {
		return strings.Contains(w.logs.String(), `disconnected client \"dev-9\" (user \"s-1\"): topic rules changed`)
	})

	// A bad edit disconnects nobody.
	writeAtomic(t, filepath.Join(dir, "passwd"), "alice\n")
	poll.Until(t, "the bad edit logged", func() bool { return strings.Contains(w.logs.String(), `passwd:1: want USER:HASH`) })
	stays("alice after a bad edit", a, aliceGone)

	// s-1 back, alice's password changed: alice goes (0x87).
	_, sensorGone = watched(t, w.addr, "dev-9", "s-1", "pw-s")
	writeAtomic(t, filepath.Join(dir, "passwd"), userLine(t, "alice", "new-a", passwd.MinIterations)+sensor)
	gone("alice after her password changed", aliceGone, 0x87)
	if code, _ := login(t, w.addr, "a-2", "alice", "pw-a"); code != 0x86 {
		t.Errorf("alice with her old password: CONNACK %#x, want 0x86", code)
	}

	// s-1 removed: it goes too, and so does its client with an id longer
	// than a storage key (1,024 bytes).
	_, longGone := watched(t, w.addr, strings.Repeat("L", 2000), "s-1", "pw-s")
	writeAtomic(t, filepath.Join(dir, "passwd"), userLine(t, "alice", "new-a", passwd.MinIterations))
	gone("s-1 after its removal", sensorGone, 0x87)
	gone("s-1's long client id after its removal", longGone, 0x87)
}

// TestFileAuthLateGrant: a grant stored under a version of the files
// older than the one a tick already applied (authenticate checked the
// files, an edit was applied, then the grant was stored) is still walked
// by the next tick, though the files do not change again: its client is
// disconnected. The test stores such a grant itself, in file-auth's
// storage layout (shipped/file-auth/online.go).
func TestFileAuthLateGrant(t *testing.T) {
	extDir := t.TempDir()
	installShipped(t, extDir, "file-auth", map[string]string{"passwd": userLine(t, "alice", "pw-a", passwd.MinIterations), "acl": fileAuthACL})
	w := startWired(t, extDir, Options{})
	_, gone := watched(t, w.addr, "a-1", "alice", "pw-a")
	sum := sha256.Sum256([]byte("a-1"))
	client := "client/" + hex.EncodeToString(sum[:])
	version, ok, err := w.srv.StorageGet("file-auth", client)
	if err != nil || !ok {
		t.Fatalf("a-1's grant not stored: %v %v", ok, err)
	}
	key := "grant/" + string(version) + "/" + hex.EncodeToString(sum[:])
	g, ok, err := w.srv.StorageGet("file-auth", key)
	if err != nil || !ok {
		t.Fatalf("a-1's grant not stored: %v %v", ok, err)
	}
	// The same grant as given by an earlier version of the files, in
	// which alice's password was another.
	parts := strings.SplitN(string(g), "\n", 5)
	parts[2] = strings.Repeat("0", len(parts[2]))
	for _, err := range []error{
		w.srv.StorageDelete("file-auth", key),
		w.srv.StoragePut("file-auth", "grant/0000/"+hex.EncodeToString(sum[:]), []byte(strings.Join(parts, "\n"))),
		w.srv.StoragePut("file-auth", client, []byte("0000")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	select {
	case code := <-gone:
		if code != 0x87 {
			t.Errorf("DISCONNECT %#x, want 0x87", code)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("a-1 not disconnected")
	}
}
