package broker_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// The extension key-value storage (ExtensionStore) on a real broker and
// Pebble store.

func TestServiceStorage(t *testing.T) {
	b := startSvc(t)
	mustOK := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustOK(b.StoragePut("ext-a", "k", []byte("a's")))
	mustOK(b.StoragePut("ext-ab", "k", []byte("ab's")))
	mustOK(b.StoragePut("ext-a", "empty", nil))

	get := func(ext, key, want string, found bool) {
		t.Helper()
		v, ok, err := b.StorageGet(ext, key)
		if err != nil || ok != found || string(v) != want {
			t.Fatalf("StorageGet(%q, %q) = %q, %v, %v; want %q, %v", ext, key, v, ok, err, want, found)
		}
	}
	get("ext-a", "k", "a's", true)
	get("ext-ab", "k", "ab's", true)
	get("ext-a", "empty", "", true)
	get("ext-b", "k", "", false) // another extension sees nothing
	get("ext-a", "missing", "", false)

	mustOK(b.StorageDelete("ext-a", "k"))
	get("ext-a", "k", "", false)
	get("ext-ab", "k", "ab's", true)
	mustOK(b.StorageDelete("ext-a", "never there"))

	t.Run("limits", func(t *testing.T) {
		big := strings.Repeat("k", broker.MaxStorageKeyLen+1)
		for _, tc := range []struct {
			name string
			err  error
		}{
			{"empty key", b.StoragePut("e", "", nil)},
			{"long key", b.StoragePut("e", big, nil)},
			{"big value", b.StoragePut("e", "k", make([]byte, broker.MaxStorageValueLen+1))},
			{"empty ext", b.StoragePut("", "k", nil)},
			{"NUL in ext", b.StoragePut("a\x00b", "k", nil)},
			{"get long key", func() error { _, _, err := b.StorageGet("e", big); return err }()},
			{"delete empty key", b.StorageDelete("e", "")},
			{"limit 0", func() error { _, _, err := b.StorageKeys("e", "", "", 0); return err }()},
			{"limit too high", func() error { _, _, err := b.StorageKeys("e", "", "", broker.MaxStorageList+1); return err }()},
			{"long prefix", func() error { _, _, err := b.StorageKeys("e", big, "", 1); return err }()},
		} {
			if !errors.Is(tc.err, broker.ErrInvalidArgument) {
				t.Errorf("%s: %v, want ErrInvalidArgument", tc.name, tc.err)
			}
		}
		mustOK(b.StoragePut("e", big[1:], make([]byte, broker.MaxStorageValueLen)))
	})
}

func TestServiceStorageKeysPages(t *testing.T) {
	b := startSvc(t)
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("dev/%02d", i)
		want = append(want, k)
		if err := b.StoragePut("pager", k, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"de", "dev", "dew/1", "other"} { // outside the prefix "dev/"
		if err := b.StoragePut("pager", k, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.StoragePut("pager2", "dev/00", nil); err != nil { // another extension
		t.Fatal(err)
	}
	for _, limit := range []int{1, 7, 25, 26, broker.MaxStorageList} {
		var got []string
		after, pages := "", 0
		for {
			keys, more, err := b.StorageKeys("pager", "dev/", after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) > limit {
				t.Fatalf("limit %d: a page of %d keys", limit, len(keys))
			}
			got = append(got, keys...)
			pages++
			if !more {
				break
			}
			if pages > 100 {
				t.Fatalf("limit %d: more than 100 pages", limit)
			}
			after = keys[len(keys)-1]
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("limit %d: paged keys %q, want %q", limit, got, want)
		}
		if wantPages := (len(want) + limit - 1) / limit; pages != wantPages && pages != wantPages+1 {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	for _, tc := range []struct {
		prefix, after string
		want          []string
	}{
		{"", "", []string{"de", "dev", "dev/00", "dev/01"}},
		{"dev/", "dev/23", []string{"dev/24"}},
		{"dev/", "dev/24", nil},
		{"dev/", "a", []string{"dev/00", "dev/01", "dev/02", "dev/03"}},
		{"dev/", "z", nil},
		{"dev/1", "", []string{"dev/10", "dev/11", "dev/12", "dev/13"}},
		{"nothing", "", nil},
	} {
		keys, _, err := b.StorageKeys("pager", tc.prefix, tc.after, 4)
		if err != nil || !reflect.DeepEqual(keys, tc.want) {
			t.Errorf("StorageKeys(%q, after %q, 4) = %q, %v; want %q", tc.prefix, tc.after, keys, err, tc.want)
		}
	}
}

func TestServiceStorageSurvivesRestart(t *testing.T) {
	b := startSvc(t)
	if err := b.StoragePut("keeper", "state", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := b.StoragePut("keeper", "gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.StorageDelete("keeper", "gone"); err != nil {
		t.Fatal(err)
	}
	b.restart()
	v, ok, err := b.StorageGet("keeper", "state")
	if err != nil || !ok || string(v) != "v1" {
		t.Fatalf("after restart: %q, %v, %v; want v1", v, ok, err)
	}
	if _, ok, err := b.StorageGet("keeper", "gone"); ok || err != nil {
		t.Fatalf("a deleted key came back after restart: %v, %v", ok, err)
	}
	// Storage is not session state: Load ignores it, so nothing of it
	// turned into a session, subscription or message.
	if got := b.stored("keeper"); got != "[]" {
		t.Fatalf("store holds %s for id keeper", got)
	}
}

// childStoragePuts runs in a child broker (runChildBroker): it writes
// storage keys one after another, printing "PUT <key>" once each write
// returned, until killed; it stops by itself after 100,000 keys.
func childStoragePuts(s *broker.Server) {
	for i := range 100000 {
		key := fmt.Sprintf("k%06d", i)
		if err := s.StoragePut("crash-ext", key, []byte("value of "+key)); err != nil {
			fmt.Println("ERROR", err)
			return
		}
		fmt.Println("PUT", key)
	}
}

// childAttributePuts is the child broker's side of
// TestKill9KeepsAttributeWrites: a persistent session "dev" (its client
// stays connected) gets session attributes, each acknowledged on standard
// output once PutAttribute returned.
func childAttributePuts(s *broker.Server, addr string) {
	c, _, err := rawmqtt.DialSession(addr, "dev")
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	defer c.Close()
	for i := range 100000 {
		key := fmt.Sprintf("a%06d", i)
		if err := s.PutAttribute("dev", key, []byte("value of "+key)); err != nil {
			fmt.Println("ERROR", err)
			return
		}
		fmt.Println("PUT", key)
	}
}

// killMidWrites runs a child broker in sync durability that makes writes
// of kind ("storage", "attributes"; see runChildBroker), kills it with
// SIGKILL once 300 have returned, and returns its data folder and the key
// of every write acknowledged before the kill.
func killMidWrites(t *testing.T, kind string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	cmd, lines := runChild(t, dir, childEnv+"_WRITES="+kind)
	var acked []string
	deadline := time.After(poll.Timeout)
	for len(acked) < 300 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child ended after %d writes", len(acked))
			}
			switch {
			case strings.HasPrefix(l, "PUT "):
				acked = append(acked, strings.TrimPrefix(l, "PUT "))
			case strings.HasPrefix(l, "ERROR"):
				t.Fatalf("child: %s", l)
			}
		case <-deadline:
			t.Fatalf("only %d writes within %v", len(acked), poll.Timeout)
		}
	}
	_ = cmd.Process.Kill() // SIGKILL, mid-stream
	_ = cmd.Wait()
	for l := range lines { // acknowledged before the kill, read after it
		if strings.HasPrefix(l, "PUT ") {
			acked = append(acked, strings.TrimPrefix(l, "PUT "))
		}
	}
	t.Logf("%d %s writes acknowledged before SIGKILL", len(acked), kind)
	return dir, acked
}

// TestKill9KeepsStorageWrites: a child broker in sync durability writes
// storage keys and is killed with SIGKILL mid-stream; every write that
// returned before the kill is there after a restart on the same folder.
func TestKill9KeepsStorageWrites(t *testing.T) {
	dir, acked := killMidWrites(t, "storage")
	s, _ := startServer(t, testConfig(dir), broker.Extensions{})
	for _, k := range acked {
		v, ok, err := s.StorageGet("crash-ext", k)
		if err != nil || !ok || string(v) != "value of "+k {
			t.Fatalf("acknowledged key %s after kill -9: %q, %v, %v", k, v, ok, err)
		}
	}
}

// TestKill9KeepsAttributeWrites: the same for session attributes of a
// persistent session: every PutAttribute that returned before the kill is
// there after the restart, with its session.
func TestKill9KeepsAttributeWrites(t *testing.T) {
	dir, acked := killMidWrites(t, "attributes")
	s, _ := startServer(t, testConfig(dir), broker.Extensions{})
	for _, k := range acked {
		v, ok, err := s.Attribute("dev", k)
		if err != nil || !ok || string(v) != "value of "+k {
			t.Fatalf("acknowledged attribute %s after kill -9: %q, %v, %v", k, v, ok, err)
		}
	}
}
