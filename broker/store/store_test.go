package store

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

func fullProps() MessageProperties {
	return MessageProperties{
		PayloadFormat: 1, PayloadFormatSet: true, MessageExpiry: 120,
		ContentType: "application/json", ResponseTopic: "reply/here",
		CorrelationData: []byte{0, 1, 2, 0xff}, SubscriptionIDs: []int{1, 268435455},
		User: []UserProperty{{"k", "v"}, {"k", ""}, {"", "ü"}},
	}
}

func TestParseDurability(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Durability
		wantErr bool
	}{
		{"sync", "sync", DurabilitySync, false},
		{"periodic", "periodic", DurabilityPeriodic, false},
		{"none", "none", DurabilityNone, false},
		{"case and spaces", " Sync ", DurabilitySync, false},
		{"empty", "", 0, true},
		{"unknown", "fsync", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDurability(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseDurability(%q) = %v, want error", tt.in, got)
				}
				for _, want := range []string{tt.in, "sync", "periodic", "none"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %q", err, want)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDurability(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if back, err := ParseDurability(got.String()); err != nil || back != got {
				t.Errorf("String() %q does not parse back: %v, %v", got.String(), back, err)
			}
		})
	}
	if s := Durability(9).String(); s != "Durability(9)" {
		t.Errorf("Durability(9).String() = %q", s)
	}
}

// TestRoundTrip writes each kind of record, closes, reopens and checks that
// Load returns exactly what was written.
func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		sess Session
		sub  Subscription
		msg  Message
	}{
		{
			name: "all fields",
			sess: Session{
				ClientID: "client-1", Username: []byte("user\x00bin"), Listener: "tcp", Remote: "1.2.3.4:5",
				ProtocolVersion: 5, Clean: true, SessionExpiry: 4294967295, SessionExpirySet: true,
				ReceiveMaximum: 65535, TopicAliasMaximum: 100, MaximumPacketSize: 1 << 28,
				UserProperties: []UserProperty{{"a", "b"}},
				Will: &Will{Topic: "will/t", Payload: []byte{0, 1}, QoS: 2, Retain: true, DelaySeconds: 60,
					Properties: fullProps()},
				ConnectedAt: 1700000000, DisconnectedAt: -1,
			},
			sub: Subscription{ClientID: "client-1", Filter: "a/+/#", QoS: 2, NoLocal: true,
				RetainAsPublished: true, RetainHandling: 2, Identifier: 268435455},
			msg: Message{ClientID: "client-1", PacketID: 65535, Type: 5, QoS: 2, Retain: true, Dup: true,
				Topic: "a/b", Payload: []byte{0, 0xff, 0x80}, Origin: "other", Created: 1 << 62,
				Expiry: 1800000000, Sent: -5, Properties: fullProps()},
		},
		{
			name: "zero values and nil slices",
			sess: Session{ClientID: "client-2"},
			sub:  Subscription{ClientID: "client-2", Filter: "x"},
			msg:  Message{ClientID: "client-2", Topic: "t"},
		},
		{
			name: "empty non-nil slices",
			sess: Session{ClientID: "client-3", Username: []byte{}, UserProperties: []UserProperty{},
				Will: &Will{Payload: []byte{}, Properties: MessageProperties{CorrelationData: []byte{},
					SubscriptionIDs: []int{}, User: []UserProperty{}}}},
			sub: Subscription{ClientID: "client-3", Filter: "", Identifier: -1},
			msg: Message{ClientID: "client-3", Topic: "", Payload: []byte{},
				Properties: MessageProperties{CorrelationData: []byte{}, SubscriptionIDs: []int{}, User: []UserProperty{}}},
		},
		{
			name: "unicode names",
			sess: Session{ClientID: "ü/ 客户端 🐝", Will: &Will{Topic: "🐝/will"}},
			sub:  Subscription{ClientID: "ü/ 客户端 🐝", Filter: "🐝/#"},
			msg:  Message{ClientID: "ü/ 客户端 🐝", PacketID: 7, Topic: "🐝/t"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, DurabilitySync)
			retained := tt.msg
			retained.Topic = "retained/" + tt.msg.Topic
			steps := []error{
				s.PutSession(&tt.sess, true),
				s.PutSubscription(&tt.sub, true),
				s.PutInflight(&tt.msg, true),
				s.PutRetained(&retained, false),
				s.PutPending(42, &tt.msg, true),
			}
			for i, err := range steps {
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s = openTest(t, dir, DurabilitySync)
			snap, err := s.Load()
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := &Snapshot{
				Sessions:      []Session{tt.sess},
				Subscriptions: []Subscription{tt.sub},
				Inflight:      []Message{tt.msg},
				Retained:      []Message{retained},
				Pending:       []PendingMessage{{Seq: 42, Message: tt.msg}},
			}
			if !reflect.DeepEqual(snap, want) {
				t.Fatalf("Load after reopen:\n got %+v\nwant %+v", snap, want)
			}
		})
	}
}

func TestDeletes(t *testing.T) {
	tests := []struct {
		name  string
		apply func(s *Store) error
		check func(t *testing.T, snap *Snapshot)
	}{
		{
			name:  "DeleteSubscription",
			apply: func(s *Store) error { return s.DeleteSubscription("a", "t/1", true) },
			check: func(t *testing.T, snap *Snapshot) {
				if len(snap.Subscriptions) != 5 {
					t.Errorf("subscriptions = %+v, want 5 left", snap.Subscriptions)
				}
				for _, sub := range snap.Subscriptions {
					if sub.ClientID == "a" && sub.Filter == "t/1" {
						t.Errorf("subscription a t/1 still there")
					}
				}
			},
		},
		{
			name:  "DeleteInflight",
			apply: func(s *Store) error { return s.DeleteInflight("a", 1, false) },
			check: func(t *testing.T, snap *Snapshot) {
				for _, m := range snap.Inflight {
					if m.ClientID == "a" && m.PacketID == 1 {
						t.Errorf("in-flight a 1 still there")
					}
				}
				if len(snap.Inflight) != 5 {
					t.Errorf("in-flight = %d records, want 5", len(snap.Inflight))
				}
			},
		},
		{
			name:  "DeleteRetained",
			apply: func(s *Store) error { return s.DeleteRetained("t/a", true) },
			check: func(t *testing.T, snap *Snapshot) {
				if len(snap.Retained) != 2 {
					t.Errorf("retained = %+v, want 2 left", snap.Retained)
				}
			},
		},
		{
			name:  "DeletePending",
			apply: func(s *Store) error { return s.DeletePending(1, true) },
			check: func(t *testing.T, snap *Snapshot) {
				if len(snap.Pending) != 2 || snap.Pending[0].Seq != 2 {
					t.Errorf("pending = %+v, want seqs 2 and 3", snap.Pending)
				}
			},
		},
		{
			name:  "DeleteSession of a client whose id prefixes others",
			apply: func(s *Store) error { return s.DeleteSession("a", true) },
			check: func(t *testing.T, snap *Snapshot) {
				for _, sess := range snap.Sessions {
					if sess.ClientID == "a" {
						t.Errorf("session a still there")
					}
				}
				for _, sub := range snap.Subscriptions {
					if sub.ClientID == "a" {
						t.Errorf("subscription %+v of a still there", sub)
					}
				}
				for _, m := range snap.Inflight {
					if m.ClientID == "a" {
						t.Errorf("in-flight %+v of a still there", m)
					}
				}
				if len(snap.Sessions) != 2 || len(snap.Subscriptions) != 4 || len(snap.Inflight) != 4 {
					t.Errorf("other clients touched: %d sessions, %d subscriptions, %d in-flight; want 2, 4, 4",
						len(snap.Sessions), len(snap.Subscriptions), len(snap.Inflight))
				}
				if len(snap.Retained) != 3 || len(snap.Pending) != 3 {
					t.Errorf("retained or pending touched: %d, %d", len(snap.Retained), len(snap.Pending))
				}
			},
		},
		{
			name:  "DeleteSession of a missing client",
			apply: func(s *Store) error { return s.DeleteSession("zz", true) },
			check: func(t *testing.T, snap *Snapshot) {
				if len(snap.Sessions) != 3 || len(snap.Subscriptions) != 6 || len(snap.Inflight) != 6 {
					t.Errorf("records lost: %+v", snap)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, t.TempDir(), DurabilitySync)
			for i, id := range []string{"a", "ab", "a b"} {
				mustDo(t, s.PutSession(&Session{ClientID: id}, false))
				mustDo(t, s.PutSubscription(&Subscription{ClientID: id, Filter: "t/1"}, false))
				mustDo(t, s.PutSubscription(&Subscription{ClientID: id, Filter: "t/2"}, false))
				mustDo(t, s.PutInflight(&Message{ClientID: id, PacketID: 1}, false))
				mustDo(t, s.PutInflight(&Message{ClientID: id, PacketID: 0xff00}, false))
				mustDo(t, s.PutRetained(&Message{Topic: "t/" + id, ClientID: id}, false))
				mustDo(t, s.PutPending(uint64(i+1), &Message{ClientID: id}, false))
			}
			if err := tt.apply(s); err != nil {
				t.Fatalf("delete: %v", err)
			}
			snap, err := s.Load()
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, snap)
		})
	}
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrdering(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilityNone)
	// In-flight: packet ids out of Created order, clients out of order.
	inflight := []Message{
		{ClientID: "b", PacketID: 1, Created: 30},
		{ClientID: "a", PacketID: 2, Created: 20},
		{ClientID: "a", PacketID: 3, Created: 10},
		{ClientID: "a", PacketID: 0x0100, Created: 15},
		{ClientID: "b", PacketID: 2, Created: 5},
	}
	for i := range inflight {
		mustDo(t, s.PutInflight(&inflight[i], false))
	}
	// Pending: sequence numbers whose little-endian bytes would sort wrong.
	seqs := []uint64{256, 1, 1 << 40, 255, 65536}
	for _, q := range seqs {
		mustDo(t, s.PutPending(q, &Message{Created: int64(q)}, false))
	}
	for _, id := range []string{"z", "a", "m"} {
		mustDo(t, s.PutSession(&Session{ClientID: id}, false))
		mustDo(t, s.PutRetained(&Message{Topic: id + "/t"}, false))
	}
	snap, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []string
	for _, m := range snap.Inflight {
		got = append(got, m.ClientID+":"+strconv.FormatInt(m.Created, 10))
	}
	if want := "a:10 a:15 a:20 b:5 b:30"; strings.Join(got, " ") != want {
		t.Errorf("in-flight order %v, want %s", got, want)
	}
	var gotSeq []uint64
	for _, p := range snap.Pending {
		gotSeq = append(gotSeq, p.Seq)
		if p.Message.Created != int64(p.Seq) {
			t.Errorf("pending %d holds message %d", p.Seq, p.Message.Created)
		}
	}
	if want := []uint64{1, 255, 256, 65536, 1 << 40}; !reflect.DeepEqual(gotSeq, want) {
		t.Errorf("pending order %v, want %v", gotSeq, want)
	}
	if snap.Sessions[0].ClientID != "a" || snap.Sessions[2].ClientID != "z" {
		t.Errorf("sessions not sorted: %+v", snap.Sessions)
	}
	if snap.Retained[0].Topic != "a/t" || snap.Retained[2].Topic != "z/t" {
		t.Errorf("retained not sorted: %+v", snap.Retained)
	}
}

func TestLoadEmpty(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilitySync)
	snap, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(snap, &Snapshot{}) {
		t.Errorf("Load of an empty store = %+v", snap)
	}
}

func TestLoadCorruptRecord(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
		val  []byte
	}{
		{"truncated in-flight", appendInflightKey(nil, "c\x01", 258), encodeMessage(nil, &Message{Topic: "abc"})[:5]},
		{"version zero session", appendKey1(nil, kindSession, "c"), []byte{0, 0, 0}},
		{"empty subscription", appendKey2(nil, kindSubscription, "c", "f"), nil},
		{"short pending key", []byte{kindPending, 0, 1}, encodeMessage(nil, &Message{})},
		// version, flags, protocol, "", nil username, "", "", expiry 0, then a
		// receive maximum of 0x1ffff.
		{"receive maximum out of range", appendKey1(nil, kindSession, "c"), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, t.TempDir(), DurabilitySync)
			if err := s.db.Set(tt.key, tt.val, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			if want := strconv.Quote(string(tt.key)); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name key %s", err, want)
			}
			// Every iterator was closed: Close would panic or fail otherwise.
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestCodecTruncation(t *testing.T) {
	sess := Session{ClientID: "c", Username: []byte("u"), UserProperties: []UserProperty{{"k", "v"}},
		Will: &Will{Topic: "w", Payload: []byte("p"), Properties: fullProps()}}
	msg := Message{ClientID: "c", Topic: "t", Payload: []byte("p"), Properties: fullProps()}
	sub := Subscription{ClientID: "c", Filter: "f", Identifier: 3}
	tests := []struct {
		name   string
		enc    []byte
		decode func([]byte) error
	}{
		{"session", encodeSession(nil, &sess), func(b []byte) error { var r Session; return decodeSession(b, &r) }},
		{"message", encodeMessage(nil, &msg), func(b []byte) error { var r Message; return decodeMessage(b, &r) }},
		{"subscription", encodeSubscription(nil, &sub), func(b []byte) error { var r Subscription; return decodeSubscription(b, &r) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.decode(tt.enc); err != nil {
				t.Fatalf("full record: %v", err)
			}
			// Appended fields of a later record version are ignored.
			if err := tt.decode(append(append([]byte(nil), tt.enc...), 1, 2, 3)); err != nil {
				t.Fatalf("record with trailing fields: %v", err)
			}
			for n := 0; n < len(tt.enc); n++ {
				if err := tt.decode(tt.enc[:n]); err == nil {
					t.Errorf("record cut to %d of %d bytes decoded without error", n, len(tt.enc))
				}
			}
		})
	}
}

func TestExtensions(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, DurabilitySync)
	puts := []struct{ ext, key, val string }{
		{"attrs", "client/a", "1"},
		{"attrs", "client/ab", "2"},
		{"attrs", "other", "3"},
		{"attrs", "", "empty key"},
		{"attrsx", "client/a", "other ext"},
		{"attr", "sclient/a", "prefix ext"},
	}
	for _, p := range puts {
		mustDo(t, s.ExtensionPut(p.ext, p.key, []byte(p.val), false))
	}
	mustDo(t, s.PutSession(&Session{ClientID: "client/a"}, false))

	tests := []struct {
		name   string
		ext    string
		prefix string
		want   []string
	}{
		{"all keys", "attrs", "", []string{"", "client/a", "client/ab", "other"}},
		{"prefix", "attrs", "client/", []string{"client/a", "client/ab"}},
		{"exact prefix", "attrs", "client/ab", []string{"client/ab"}},
		{"no match", "attrs", "zzz", nil},
		{"other ext", "attrsx", "", []string{"client/a"}},
		{"ext that prefixes another", "attr", "", []string{"sclient/a"}},
		{"unknown ext", "nope", "", nil},
	}
	for _, tt := range tests {
		t.Run("keys "+tt.name, func(t *testing.T) {
			got, err := s.ExtensionKeys(tt.ext, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ExtensionKeys(%q, %q) = %q, want %q", tt.ext, tt.prefix, got, tt.want)
			}
		})
	}
	gets := []struct {
		name, ext, key, want string
		found                bool
	}{
		{"value", "attrs", "client/a", "1", true},
		{"same key other ext", "attrsx", "client/a", "other ext", true},
		{"missing", "attrs", "client/x", "", false},
		{"missing ext", "attrz", "client/a", "", false},
	}
	for _, g := range gets {
		t.Run("get "+g.name, func(t *testing.T) {
			v, ok, err := s.ExtensionGet(g.ext, g.key)
			if err != nil || ok != g.found || string(v) != g.want {
				t.Errorf("ExtensionGet(%q, %q) = %q, %v, %v; want %q, %v", g.ext, g.key, v, ok, err, g.want, g.found)
			}
		})
	}
	t.Run("delete", func(t *testing.T) {
		mustDo(t, s.ExtensionDelete("attrs", "client/a", true))
		if _, ok, _ := s.ExtensionGet("attrs", "client/a"); ok {
			t.Errorf("deleted key still there")
		}
		if _, ok, _ := s.ExtensionGet("attrsx", "client/a"); !ok {
			t.Errorf("delete in one ext removed the key of another")
		}
	})
	t.Run("invalid ext", func(t *testing.T) {
		for _, ext := range []string{"", "a\x00b"} {
			if err := s.ExtensionPut(ext, "k", nil, false); !errors.Is(err, ErrInvalidName) {
				t.Errorf("ExtensionPut(%q) = %v, want ErrInvalidName", ext, err)
			}
			if _, _, err := s.ExtensionGet(ext, "k"); !errors.Is(err, ErrInvalidName) {
				t.Errorf("ExtensionGet(%q) = %v, want ErrInvalidName", ext, err)
			}
			if _, err := s.ExtensionKeys(ext, ""); !errors.Is(err, ErrInvalidName) {
				t.Errorf("ExtensionKeys(%q) = %v, want ErrInvalidName", ext, err)
			}
			if err := s.ExtensionDelete(ext, "k", false); !errors.Is(err, ErrInvalidName) {
				t.Errorf("ExtensionDelete(%q) = %v, want ErrInvalidName", ext, err)
			}
		}
	})
	t.Run("extension data survives reopen and stays out of Load", func(t *testing.T) {
		mustDo(t, s.Close())
		s2 := openTest(t, dir, DurabilitySync)
		v, ok, err := s2.ExtensionGet("attrs", "other")
		if err != nil || !ok || string(v) != "3" {
			t.Errorf("after reopen: %q, %v, %v", v, ok, err)
		}
		snap, err := s2.Load()
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Sessions) != 1 || len(snap.Subscriptions)+len(snap.Inflight)+len(snap.Retained)+len(snap.Pending) != 0 {
			t.Errorf("Load sees extension data: %+v", snap)
		}
	})
}

func TestInvalidNames(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilityNone)
	bad := "a\x00b"
	calls := map[string]error{
		"PutSession":         s.PutSession(&Session{ClientID: bad}, false),
		"DeleteSession":      s.DeleteSession(bad, false),
		"PutSubscription":    s.PutSubscription(&Subscription{ClientID: "a", Filter: bad}, false),
		"DeleteSubscription": s.DeleteSubscription(bad, "f", false),
		"PutInflight":        s.PutInflight(&Message{ClientID: bad}, false),
		"DeleteInflight":     s.DeleteInflight(bad, 1, false),
		"PutRetained":        s.PutRetained(&Message{Topic: bad}, false),
		"DeleteRetained":     s.DeleteRetained(bad, false),
	}
	for name, err := range calls {
		t.Run(name, func(t *testing.T) {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("%s = %v, want ErrInvalidName", name, err)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), Durability: DurabilityPeriodic, FlushInterval: time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, s.Close())
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	calls := map[string]error{
		"PutSession":    s.PutSession(&Session{ClientID: "c"}, true),
		"DeleteSession": s.DeleteSession("c", true),
		"PutInflight":   s.PutInflight(&Message{ClientID: "c"}, true),
		"DeletePending": s.DeletePending(1, true),
		"ExtensionPut":  s.ExtensionPut("e", "k", nil, true),
	}
	_, calls["Load"] = s.Load()
	_, _, calls["ExtensionGet"] = s.ExtensionGet("e", "k")
	_, calls["ExtensionKeys"] = s.ExtensionKeys("e", "")
	for name, err := range calls {
		t.Run(name, func(t *testing.T) {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed", name, err)
			}
		})
	}
}

// TestDurabilityModes writes durable and non-durable records in each mode,
// closes and reopens, and checks everything is there.
func TestDurabilityModes(t *testing.T) {
	for _, mode := range []Durability{DurabilitySync, DurabilityPeriodic, DurabilityNone} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			const flush = 5 * time.Millisecond
			opened := time.Now()
			s, err := Open(Options{Dir: dir, Durability: mode, FlushInterval: flush, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if s.Dir() != dir {
				t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
			}
			for i := 0; i < 50; i++ {
				mustDo(t, s.PutInflight(&Message{ClientID: "c", PacketID: uint16(i), Created: int64(i)}, i%2 == 0))
				mustDo(t, s.PutPending(uint64(i), &Message{Topic: "t"}, i%2 == 1))
			}
			mustDo(t, s.DeleteInflight("c", 0, true))
			mustDo(t, s.DeletePending(0, false))
			if mode == DurabilityPeriodic {
				// The syncer runs on a ticker: real time must pass for it to
				// sync a few times before Close.
				poll.Until(t, "a few flush intervals to pass", func() bool { return time.Since(opened) > 6*flush })
			}
			mustDo(t, s.Close())
			s = openTest(t, dir, mode)
			snap, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Inflight) != 49 || len(snap.Pending) != 49 {
				t.Errorf("after reopen: %d in-flight, %d pending; want 49, 49", len(snap.Inflight), len(snap.Pending))
			}
		})
	}
	t.Run("unknown mode", func(t *testing.T) {
		if _, err := Open(Options{Dir: t.TempDir(), Durability: 7}); err == nil {
			t.Errorf("Open with durability 7 succeeded")
		}
	})
}

func TestOpenFresh(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string
	}{
		{"missing folder", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a", "b") }},
		{"empty folder", func(t *testing.T) string { return t.TempDir() }},
		{"only a stray FORMAT.tmp", func(t *testing.T) string {
			dir := t.TempDir()
			mustDo(t, os.WriteFile(filepath.Join(dir, formatTemp), []byte("propo"), 0o644))
			return dir
		}},
		{"FORMAT written but pebble never created", func(t *testing.T) string {
			dir := t.TempDir()
			mustDo(t, writeFormat(dir, FormatVersion))
			mustDo(t, os.WriteFile(filepath.Join(dir, pebbleLockFile), nil, 0o644))
			return dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			s := openTest(t, dir, DurabilitySync)
			mustDo(t, s.PutSession(&Session{ClientID: "c"}, true))
			mustDo(t, s.Close())
			if got, want := readFormatFile(t, dir), "propolis-data "+strconv.Itoa(FormatVersion)+"\n"; got != want {
				t.Errorf("FORMAT = %q, want %q", got, want)
			}
			if _, err := os.Stat(filepath.Join(dir, formatTemp)); err == nil {
				t.Errorf("FORMAT.tmp left behind")
			}
			s = openTest(t, dir, DurabilitySync)
			snap, err := s.Load()
			if err != nil || len(snap.Sessions) != 1 {
				t.Errorf("after reopen: %+v, %v", snap, err)
			}
		})
	}
	t.Run("no dir", func(t *testing.T) {
		if _, err := Open(Options{}); err == nil {
			t.Errorf("Open without Dir succeeded")
		}
	})
}

// TestOpenRefuses checks that folders Open refuses are left exactly as they
// were: same files, same contents.
func TestOpenRefuses(t *testing.T) {
	// A real store with some data, to corrupt in various ways.
	makeStore := func(t *testing.T) string {
		dir := t.TempDir()
		s := openTest(t, dir, DurabilitySync)
		for i := 0; i < 20; i++ {
			mustDo(t, s.PutInflight(&Message{ClientID: "c", PacketID: uint16(i)}, true))
		}
		mustDo(t, s.Close())
		return dir
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T) string
		want    error
		wantMsg []string
	}{
		{
			name: "newer format",
			setup: func(t *testing.T) string {
				dir := makeStore(t)
				mustDo(t, os.WriteFile(filepath.Join(dir, formatFile), []byte("propolis-data "+strconv.Itoa(FormatVersion+1)+"\n"), 0o644))
				return dir
			},
			want: ErrNewerFormat,
			wantMsg: []string{"has format " + strconv.Itoa(FormatVersion+1), "reads up to " + strconv.Itoa(FormatVersion),
				"upgrade propolis"},
		},
		{
			name: "garbage over the MANIFEST",
			setup: func(t *testing.T) string {
				dir := makeStore(t)
				ms, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
				if len(ms) == 0 {
					t.Fatal("no MANIFEST")
				}
				for _, m := range ms {
					mustDo(t, os.WriteFile(m, []byte(strings.Repeat("garbage!", 64)), 0o644))
				}
				return dir
			},
			want:    ErrCorrupt,
			wantMsg: []string{"pebble refused"},
		},
		{
			name: "garbage CURRENT and MANIFEST markers removed",
			setup: func(t *testing.T) string {
				dir := makeStore(t)
				ms, _ := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
				for _, m := range ms {
					mustDo(t, os.Remove(m))
				}
				mustDo(t, os.WriteFile(filepath.Join(dir, "CURRENT"), []byte("MANIFEST-999999\n"), 0o644))
				return dir
			},
			want:    ErrCorrupt,
			wantMsg: []string{"pebble refused"},
		},
		{
			name: "unparseable FORMAT",
			setup: func(t *testing.T) string {
				dir := makeStore(t)
				mustDo(t, os.WriteFile(filepath.Join(dir, formatFile), []byte("propolis-data two\n"), 0o644))
				return dir
			},
			want:    ErrCorrupt,
			wantMsg: []string{"FORMAT"},
		},
		{
			name: "not a data folder",
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				mustDo(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644))
				mustDo(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
				return dir
			},
			want: ErrNotDataDir,
		},
		{
			name: "cluster file, not folder",
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				mustDo(t, os.WriteFile(filepath.Join(dir, ClusterDir), []byte("mine"), 0o644))
				return dir
			},
			want: ErrNotDataDir,
		},
		{
			name: "pebble folder without FORMAT",
			setup: func(t *testing.T) string {
				dir := makeStore(t)
				mustDo(t, os.Remove(filepath.Join(dir, formatFile)))
				return dir
			},
			want: ErrNotDataDir,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			before := dirDigest(t, dir)
			s, err := Open(Options{Dir: dir, Logger: quiet})
			if err == nil {
				_ = s.Close()
				t.Fatalf("Open succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
			for _, m := range append(tt.wantMsg, dir) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if after := dirDigest(t, dir); !reflect.DeepEqual(before, after) {
				t.Errorf("refused Open changed the folder:\nbefore %v\n after %v", before, after)
			}
		})
	}
}

// TestConcurrentWriters runs writers on many goroutines in sync mode and
// checks nothing is lost (run with -race to check the locking).
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, DurabilitySync)
	const writers, each = 8, 25
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func(w int) {
			var err error
			for i := 0; i < each && err == nil; i++ {
				m := Message{ClientID: string(rune('a' + w)), PacketID: uint16(i), Created: int64(i)}
				err = s.PutInflight(&m, true)
			}
			errs <- err
		}(w)
	}
	for w := 0; w < writers; w++ {
		mustDo(t, <-errs)
	}
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Inflight) != writers*each {
		t.Errorf("%d in-flight, want %d", len(snap.Inflight), writers*each)
	}
}

func TestExtensionKeysAfter(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilitySync)
	for _, k := range []string{"a", "a/1", "a/2", "a/3", "b"} {
		mustDo(t, s.ExtensionPut("e", k, nil, false))
	}
	mustDo(t, s.ExtensionPut("e2", "a/0", nil, false))
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          []string
		more          bool
	}{
		{"a/", "", 2, []string{"a/1", "a/2"}, true},
		{"a/", "a/2", 2, []string{"a/3"}, false},
		{"a/", "a/3", 2, nil, false},
		{"a/", "a", 5, []string{"a/1", "a/2", "a/3"}, false},
		{"a/", "b", 5, nil, false},
		{"", "a/3", 5, []string{"b"}, false},
		{"", "", 5, []string{"a", "a/1", "a/2", "a/3", "b"}, false},
		{"", "", 4, []string{"a", "a/1", "a/2", "a/3"}, true},
	} {
		keys, more, err := s.ExtensionKeysAfter("e", tc.prefix, tc.after, tc.limit)
		if err != nil || !reflect.DeepEqual(keys, tc.want) || more != tc.more {
			t.Errorf("ExtensionKeysAfter(%q, %q, %d) = %q, %v, %v; want %q, %v", tc.prefix, tc.after, tc.limit, keys, more, err, tc.want, tc.more)
		}
	}
	if _, _, err := s.ExtensionKeysAfter("e", "", "", 0); err == nil {
		t.Error("limit 0 accepted")
	}
	if _, _, err := s.ExtensionKeysAfter("", "", "", 1); !errors.Is(err, ErrInvalidName) {
		t.Errorf("empty extension id: %v, want ErrInvalidName", err)
	}
}

// TestOpenBesideClusterDir: a fresh data folder holding only a cluster
// node's folder (ClusterDir, made before the store opens) opens as a new
// store, and the cluster folder is left alone.
func TestOpenBesideClusterDir(t *testing.T) {
	dir := t.TempDir()
	mustDo(t, os.MkdirAll(filepath.Join(dir, ClusterDir, "jetstream"), 0o755))
	s, err := Open(Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	mustDo(t, s.Close())
	if _, err := os.Stat(filepath.Join(dir, ClusterDir, "jetstream")); err != nil {
		t.Fatalf("cluster folder: %v", err)
	}
}
