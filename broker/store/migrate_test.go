package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixtureV1 is the format-1 fixture written by internal/genv1.
var fixtureV1 = filepath.Join("..", "..", "testdata", "store", "v1")

// wantV1 is what Load must return after migrating fixtureV1: every record
// genv1 wrote, in Load's order.
var wantV1 = &Snapshot{
	Sessions: []Session{
		{
			ClientID: "dashboard ü/1", Username: []byte("bob"), Listener: "ws", Remote: "[2001:db8::7]:443",
			ProtocolVersion: 5, Clean: true,
			UserProperties: []UserProperty{{"region", "eu-west"}, {"tier", "gold"}, {"region", "eu-central"}},
			ConnectedAt:    1700000500, DisconnectedAt: 1700000900,
		},
		{
			ClientID: "legacy-pump", Listener: "tcp1", Remote: "10.0.0.9:40000",
			ProtocolVersion: 4, ConnectedAt: 1699990000,
		},
		{
			ClientID: "sensor-17", Username: []byte("alice"), Listener: "tcp1", Remote: "10.0.0.5:51234",
			ProtocolVersion: 5, SessionExpiry: 3600, SessionExpirySet: true,
			ReceiveMaximum: 32, TopicAliasMaximum: 10, MaximumPacketSize: 65536,
			Will: &Will{
				Topic: "devices/sensor-17/status", Payload: []byte("offline"), QoS: 1, Retain: true, DelaySeconds: 30,
				Properties: MessageProperties{MessageExpiry: 600, ContentType: "text/plain",
					User: []UserProperty{{"reason", "will"}}},
			},
			ConnectedAt: 1700000000, DisconnectedAt: 1700003600,
		},
	},
	Subscriptions: []Subscription{
		{ClientID: "dashboard ü/1", Filter: "devices/+/status", QoS: 1, RetainHandling: 2, Identifier: 42},
		{ClientID: "legacy-pump", Filter: "broadcast", QoS: 0},
		{ClientID: "legacy-pump", Filter: "pumps/legacy-pump/set", QoS: 1},
		{ClientID: "sensor-17", Filter: "cmd/sensor-17/#", QoS: 1, NoLocal: true, Identifier: 7},
		{ClientID: "sensor-17", Filter: "config/+/sensor", QoS: 2, RetainAsPublished: true, RetainHandling: 1},
	},
	Inflight: []Message{
		{ClientID: "legacy-pump", PacketID: 65535, Type: 3, QoS: 1, Topic: "broadcast",
			Payload: []byte{}, Origin: "dashboard ü/1", Created: 999,
			Properties: MessageProperties{ResponseTopic: "replies/dashboard", CorrelationData: []byte{0x01, 0x02}}},
		{ClientID: "legacy-pump", PacketID: 300, Type: 3, QoS: 2, Dup: true, Topic: "pumps/legacy-pump/set",
			Payload: []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01}, Origin: "sensor-17", Created: 1003, Expiry: 1700007200},
		{ClientID: "sensor-17", PacketID: 1, Type: 3, QoS: 1, Topic: "cmd/sensor-17/reboot",
			Payload: []byte("now"), Origin: "dashboard ü/1", Created: 1001, Sent: 1700000100,
			Properties: MessageProperties{PayloadFormat: 1, PayloadFormatSet: true, SubscriptionIDs: []int{7}}},
		{ClientID: "sensor-17", PacketID: 2, Type: 6, QoS: 2, Topic: "cmd/sensor-17/fw",
			Payload: []byte{0x00, 0xff, 0x10, 0x80, 0x7f, 0x00}, Origin: "dashboard ü/1", Created: 1002, Sent: 1700000101},
	},
	Retained: []Message{
		{ClientID: "sensor-17", Type: 3, QoS: 1, Retain: true, Topic: "devices/sensor-17/status",
			Payload: []byte("online"), Origin: "sensor-17", Created: 900,
			Properties: MessageProperties{PayloadFormat: 1, PayloadFormatSet: true, ContentType: "text/plain"}},
		{ClientID: "legacy-pump", Type: 3, QoS: 0, Retain: true, Topic: "pumps/legacy-pump/rpm",
			Payload: []byte{0xaa, 0x05, 0x00, 0x00}, Origin: "legacy-pump", Created: 901, Expiry: 1800000000},
	},
}

// wantV1Records is how many records the fixture holds.
const wantV1Records = 3 + 5 + 4 + 2

// copyFixtureV1 copies the format-1 fixture into a fresh temp folder.
func copyFixtureV1(t *testing.T) string {
	t.Helper()
	if got := readFormatFile(t, fixtureV1); got != "propolis-data 1\n" {
		t.Fatalf("fixture FORMAT = %q; regenerate it (see testdata/store/README.md)", got)
	}
	dir := filepath.Join(t.TempDir(), "data")
	copyDir(t, fixtureV1, dir)
	return dir
}

// checkMigrated opens dir, checks the store holds exactly the fixture's
// records in the current format with no backup left, closes it and returns
// what Open logged.
func checkMigrated(t *testing.T, dir string) string {
	t.Helper()
	var logs syncBuffer
	s, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	snap, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	compareSnapshots(t, snap, wantV1)
	mustDo(t, s.Close())
	if got, want := readFormatFile(t, dir), fmt.Sprintf("propolis-data %d\n", FormatVersion); got != want {
		t.Errorf("FORMAT = %q after migration, want %q", got, want)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), backupPrefix) {
			t.Errorf("backup %s left behind", e.Name())
		}
	}
	return logs.String()
}

// compareSnapshots reports each record that differs, rather than one
// unreadable dump.
func compareSnapshots(t *testing.T, got, want *Snapshot) {
	t.Helper()
	check := func(kind string, g, w any) {
		gv, wv := reflect.ValueOf(g), reflect.ValueOf(w)
		if gv.Len() != wv.Len() {
			t.Errorf("%s: got %d records, want %d:\n got %+v\nwant %+v", kind, gv.Len(), wv.Len(), g, w)
			return
		}
		for i := 0; i < gv.Len(); i++ {
			if !reflect.DeepEqual(gv.Index(i).Interface(), wv.Index(i).Interface()) {
				t.Errorf("%s %d:\n got %+v\nwant %+v", kind, i, gv.Index(i).Interface(), wv.Index(i).Interface())
			}
		}
	}
	check("session", got.Sessions, want.Sessions)
	check("subscription", got.Subscriptions, want.Subscriptions)
	check("in-flight", got.Inflight, want.Inflight)
	check("retained", got.Retained, want.Retained)
	check("pending", got.Pending, want.Pending)
}

func TestFixtureV1Size(t *testing.T) {
	var total int64
	err := filepath.Walk(fixtureV1, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if total > 256<<10 {
		t.Errorf("fixture is %d bytes, keep it well under 1 MiB", total)
	}
}

func TestMigrateV1(t *testing.T) {
	dir := copyFixtureV1(t)
	var logs syncBuffer
	s, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	mustDo(t, s.Close())
	want := fmt.Sprintf(`msg="data folder migrated" dir=%s from=1 to=2 records=%d`, dir, wantV1Records)
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log does not contain %q:\n%s", want, logs.String())
	}
	checkMigrated(t, dir)

	// A later open does not migrate again, and new writes work beside the
	// migrated records.
	logs = syncBuffer{}
	s, err = Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if strings.Contains(logs.String(), "migrated") {
		t.Errorf("second Open migrated again:\n%s", logs.String())
	}
	mustDo(t, s.PutPending(1, &Message{Topic: "new"}, true))
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pending) != 1 || len(snap.Sessions) != 3 {
		t.Errorf("after a write: %d pending, %d sessions", len(snap.Pending), len(snap.Sessions))
	}
	mustDo(t, s.Close())
}

// TestMigrateCrash stops the migration at each step, as a crash would, and
// checks that the next Open ends with the complete, correct result.
func TestMigrateCrash(t *testing.T) {
	defer func(n int) { migrateBatchSize = n }(migrateBatchSize)
	migrateBatchSize = 3 // 14 records: 5 batches
	errCrash := errors.New("simulated crash")
	tests := []struct {
		name  string
		stage string
		batch int
	}{
		{"after backup", "backup", 0},
		{"after first batch", "batch", 1},
		{"after half the batches", "batch", 3},
		{"after last batch", "batch", 5},
		{"after sync", "synced", 0},
		{"after FORMAT written", "format", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyFixtureV1(t)
			hit := false
			migrateHook = func(stage string, n int) error {
				if stage == tt.stage && n == tt.batch {
					hit = true
					return errCrash
				}
				return nil
			}
			_, err := Open(Options{Dir: dir, Logger: quiet})
			migrateHook = nil
			if !hit {
				t.Fatalf("migration never reached %s %d", tt.stage, tt.batch)
			}
			if !errors.Is(err, errCrash) {
				t.Fatalf("Open = %v, want the simulated crash", err)
			}
			if !exists(backupPath(dir, 1)) {
				t.Errorf("no backup after a crash at %s", tt.stage)
			}
			logs := checkMigrated(t, dir)
			// Before FORMAT says 2 the live files may be half migrated, so
			// the next Open must start again from the backup.
			restored := strings.Contains(logs, "restoring from backup")
			if want := tt.stage != "format"; restored != want {
				t.Errorf("restored from backup: %v, want %v; log:\n%s", restored, want, logs)
			}
		})
	}

	t.Run("crash during restore", func(t *testing.T) {
		dir := copyFixtureV1(t)
		migrateHook = func(stage string, n int) error {
			if stage == "batch" && n == 2 {
				return errCrash
			}
			return nil
		}
		_, err := Open(Options{Dir: dir, Logger: quiet})
		migrateHook = nil
		if !errors.Is(err, errCrash) {
			t.Fatalf("Open = %v", err)
		}
		// Half a restore: the live pebble files are gone, nothing copied.
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !isOwnEntry(e.Name()) && e.Name() != pebbleLockFile {
				mustDo(t, os.RemoveAll(filepath.Join(dir, e.Name())))
			}
		}
		checkMigrated(t, dir)
	})

	t.Run("half-written checkpoint", func(t *testing.T) {
		dir := copyFixtureV1(t)
		tmp := backupPath(dir, 1) + backupTmpSuffix
		mustDo(t, os.MkdirAll(tmp, 0o755))
		mustDo(t, os.WriteFile(filepath.Join(tmp, "000001.sst"), []byte("partial"), 0o644))
		checkMigrated(t, dir)
	})
}

// TestMigrateV2 opens a format-2 folder: the step to format 3 rewrites
// nothing, every record is kept, and the folder then holds attributes.
func TestMigrateV2(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, DurabilitySync)
	want := &Snapshot{
		Sessions:      []Session{{ClientID: "c", ProtocolVersion: 5, SessionExpiry: 60, SessionExpirySet: true}},
		Subscriptions: []Subscription{{ClientID: "c", Filter: "a/#", QoS: 1}},
		Inflight:      []Message{{ClientID: "c", PacketID: 1, Type: 3, QoS: 1, Topic: "a/b", Payload: []byte("q"), Created: 2}},
		Retained:      []Message{{Type: 3, Retain: true, Topic: "a/r", Payload: []byte("r"), Created: 1}},
		Pending:       []PendingMessage{{Seq: 3, Message: Message{Type: 3, QoS: 1, Topic: "a/p", Payload: []byte("p"), Created: 3}}},
	}
	mustDo(t, s.PutSession(&want.Sessions[0], true))
	mustDo(t, s.PutSubscription(&want.Subscriptions[0], true))
	mustDo(t, s.PutInflight(&want.Inflight[0], true))
	mustDo(t, s.PutRetained(&want.Retained[0], true))
	mustDo(t, s.PutPending(3, &want.Pending[0].Message, true))
	mustDo(t, s.ExtensionPut("ext", "k", []byte("v"), true))
	mustDo(t, s.Close())
	// A format-2 folder is this one without attributes and with FORMAT 2.
	mustDo(t, writeFormat(dir, 2))

	var logs syncBuffer
	s, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if line := fmt.Sprintf(`msg="data folder migrated" dir=%s from=2 to=3 records=0`, dir); !strings.Contains(logs.String(), line) {
		t.Errorf("log does not contain %q:\n%s", line, logs.String())
	}
	if got := readFormatFile(t, dir); got != "propolis-data 3\n" {
		t.Errorf("FORMAT = %q after migration", got)
	}
	if exists(backupPath(dir, 2)) {
		t.Error("backup left behind")
	}
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	compareSnapshots(t, snap, want)
	if v, ok, err := s.ExtensionGet("ext", "k"); err != nil || !ok || string(v) != "v" {
		t.Errorf("extension data after migration: %q %v %v", v, ok, err)
	}
	mustDo(t, s.AttributePut("c", Attribute{Key: "k", Value: []byte("v")}, true))
}

func TestConvertV1(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		val     string
		wantOK  bool
		wantErr bool
	}{
		{"session id from key when missing", "CL_abc", `{"protocol_version":4}`, true, false},
		{"bad json", "SUB_a:b", `{"client":`, false, true},
		{"NUL in client id", "IFM_a_1", `{"client":"a\u0000b","packet_id":1}`, false, true},
		{"retained topic from key", "RET_a/b", `{"payload":"AAE="}`, true, false},
		{"unknown key", "ZZZ", `{}`, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, v, ok, err := convertV1([]byte(tt.key), []byte(tt.val))
			if (err != nil) != tt.wantErr || ok != tt.wantOK {
				t.Fatalf("convertV1 = ok %v, err %v; want ok %v, err %v", ok, err, tt.wantOK, tt.wantErr)
			}
			if !ok {
				return
			}
			switch k[0] {
			case kindSession:
				var s Session
				mustDo(t, decodeSession(v, &s))
				if s.ClientID != "abc" || string(k) != "s\x00abc" {
					t.Errorf("session %+v under %q", s, k)
				}
			case kindRetained:
				var m Message
				mustDo(t, decodeMessage(v, &m))
				if m.Topic != "a/b" || string(k) != "r\x00a/b" || !reflect.DeepEqual(m.Payload, []byte{0, 1}) {
					t.Errorf("retained %+v under %q", m, k)
				}
			}
		})
	}
}
