package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
)

func TestAttributes(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, DurabilitySync)

	// No session record: nothing can be written, reads find nothing.
	if err := s.AttributePut("c", Attribute{Key: "k", Value: []byte("v"), Time: 1}, true); !errors.Is(err, ErrNoSession) {
		t.Fatalf("AttributePut without a session = %v, want ErrNoSession", err)
	}
	if _, _, _, err := s.AttributePutIfNewer("c", Attribute{Key: "k", Time: 1}, false, true); !errors.Is(err, ErrNoSession) {
		t.Fatalf("AttributePutIfNewer without a session = %v, want ErrNoSession", err)
	}
	if _, ok, err := s.AttributeGet("c", "k"); ok || err != nil {
		t.Fatalf("AttributeGet without a session = %v, %v", ok, err)
	}

	mustDo(t, s.PutSession(&Session{ClientID: "c"}, true))
	mustDo(t, s.PutSession(&Session{ClientID: "cc"}, true)) // an id extending "c"
	want := []Attribute{
		{Key: "", Value: []byte("empty key"), Time: -5},
		{Key: "b", Value: []byte{}, Time: 0},
		{Key: "k", Value: []byte{0, 1, 2}, Time: 1 << 62},
		{Key: "k\x00nul", Value: []byte("x"), Time: 7},
	}
	for _, a := range want {
		mustDo(t, s.AttributePut("c", a, true))
	}
	mustDo(t, s.AttributePut("cc", Attribute{Key: "k", Value: []byte("other")}, true))

	got, ok, err := s.AttributeGet("c", "k")
	if err != nil || !ok || !reflect.DeepEqual(got, want[2]) {
		t.Fatalf("AttributeGet = %+v, %v, %v; want %+v", got, ok, err, want[2])
	}
	got.Value[0] = 99 // the caller's own copy
	if again, _, _ := s.AttributeGet("c", "k"); again.Value[0] != 0 {
		t.Fatal("AttributeGet returned pebble's buffer")
	}
	list, err := s.AttributeList("c")
	if err != nil || !reflect.DeepEqual(list, want) {
		t.Fatalf("AttributeList = %+v, %v;\nwant %+v", list, err, want)
	}

	// They survive a reopen.
	mustDo(t, s.Close())
	s = openTest(t, dir, DurabilitySync)
	if list, err := s.AttributeList("c"); err != nil || !reflect.DeepEqual(list, want) {
		t.Fatalf("AttributeList after reopen = %+v, %v", list, err)
	}

	mustDo(t, s.AttributeDelete("c", "b", true))
	mustDo(t, s.AttributeDelete("c", "missing", true))
	mustDo(t, s.AttributeDelete("nobody", "k", true))
	if _, ok, _ := s.AttributeGet("c", "b"); ok {
		t.Fatal("attribute b still there after AttributeDelete")
	}

	// DeleteSession takes the attributes with it, and no other client's.
	mustDo(t, s.DeleteSession("c", true))
	if list, err := s.AttributeList("c"); err != nil || list != nil {
		t.Fatalf("AttributeList after DeleteSession = %+v, %v", list, err)
	}
	if err := s.AttributePut("c", Attribute{Key: "k"}, true); !errors.Is(err, ErrNoSession) {
		t.Fatalf("AttributePut after DeleteSession = %v, want ErrNoSession", err)
	}
	if got, ok, _ := s.AttributeGet("cc", "k"); !ok || string(got.Value) != "other" {
		t.Fatalf("client cc lost its attribute: %+v %v", got, ok)
	}
	// Load knows nothing of attributes.
	snap, err := s.Load()
	if err != nil || len(snap.Sessions) != 1 || snap.Sessions[0].ClientID != "cc" {
		t.Fatalf("Load = %+v, %v", snap, err)
	}
}

func TestAttributePutIfNewer(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilityNone)
	mustDo(t, s.PutSession(&Session{ClientID: "c"}, false))
	tests := []struct {
		name         string
		time         int64
		orEqual      bool
		wantReplaced bool
		wantValue    string // stored afterwards
	}{
		{"first write", 10, false, true, "t10"},
		{"older", 9, true, false, "t10"},
		{"equal", 10, false, false, "t10"},
		{"equal or equal", 10, true, true, "t10 or equal"},
		{"newer", 11, false, true, "t11"},
		{"negative", -1, true, false, "t11"},
	}
	prevValue := ""
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := fmt.Sprintf("t%d", tt.time)
			if tt.orEqual && tt.wantReplaced {
				value += " or equal"
			}
			prev, had, replaced, err := s.AttributePutIfNewer("c", Attribute{Key: "k", Value: []byte(value), Time: tt.time}, tt.orEqual, false)
			if err != nil {
				t.Fatal(err)
			}
			if replaced != tt.wantReplaced {
				t.Errorf("replaced = %v, want %v", replaced, tt.wantReplaced)
			}
			if had != (prevValue != "") || string(prev.Value) != prevValue {
				t.Errorf("previous = %q (had %v), want %q", prev.Value, had, prevValue)
			}
			cur, _, _ := s.AttributeGet("c", "k")
			if string(cur.Value) != tt.wantValue {
				t.Errorf("stored %q, want %q", cur.Value, tt.wantValue)
			}
			prevValue = string(cur.Value)
		})
	}
}

// TestAttributePutIfNewerHammer has 8 goroutines write random times to one
// key at once: the value with the latest time must win, and exactly the
// calls that raised the maximum must report a replacement.
func TestAttributePutIfNewerHammer(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilityNone)
	mustDo(t, s.PutSession(&Session{ClientID: "c"}, false))
	const writers, perWriter = 8, 200
	var wg sync.WaitGroup
	maxTime := make([]int64, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			maxTime[w] = -1
			for range perWriter {
				ts := r.Int64N(1_000_000)
				prev, had, replaced, err := s.AttributePutIfNewer("c", Attribute{Key: "k", Value: fmt.Appendf(nil, "%d", ts), Time: ts}, false, false)
				if err != nil {
					t.Error(err)
					return
				}
				if want := !had || ts > prev.Time; replaced != want {
					t.Errorf("time %d over %d (had %v): replaced = %v", ts, prev.Time, had, replaced)
				}
				maxTime[w] = max(maxTime[w], ts)
			}
		}()
	}
	wg.Wait()
	best := int64(-1)
	for _, m := range maxTime {
		best = max(best, m)
	}
	got, ok, err := s.AttributeGet("c", "k")
	if err != nil || !ok || got.Time != best || string(got.Value) != fmt.Sprint(best) {
		t.Fatalf("after the hammer: %+v %v %v; want time and value %d", got, ok, err, best)
	}
}

// TestAttributeWritesRaceDeleteSession writes attributes while the session
// is deleted: whatever the interleaving, no attribute outlives it.
func TestAttributeWritesRaceDeleteSession(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilityNone)
	for round := range 50 {
		mustDo(t, s.PutSession(&Session{ClientID: "c"}, false))
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					a := Attribute{Key: fmt.Sprintf("k%d-%d", w, i), Time: int64(i)}
					var err error
					if w%2 == 0 {
						err = s.AttributePut("c", a, false)
					} else {
						_, _, _, err = s.AttributePutIfNewer("c", a, false, false)
					}
					if errors.Is(err, ErrNoSession) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		mustDo(t, s.DeleteSession("c", false))
		wg.Wait()
		if list, err := s.AttributeList("c"); err != nil || len(list) != 0 {
			t.Fatalf("round %d: %d attributes outlived their session (%v)", round, len(list), err)
		}
	}
}

func TestAttributeErrors(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilityNone)
	bad := "a\x00b"
	for name, err := range map[string]error{
		"get":    third(s.AttributeGet(bad, "k")),
		"put":    s.AttributePut(bad, Attribute{Key: "k"}, false),
		"delete": s.AttributeDelete(bad, "k", false),
		"list":   second(s.AttributeList(bad)),
	} {
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("%s with NUL in the client id = %v, want ErrInvalidName", name, err)
		}
	}
	if _, _, _, err := s.AttributePutIfNewer(bad, Attribute{Key: "k"}, false, false); !errors.Is(err, ErrInvalidName) {
		t.Errorf("put if newer with NUL in the client id = %v, want ErrInvalidName", err)
	}

	mustDo(t, s.Close())
	for name, err := range map[string]error{
		"get":    third(s.AttributeGet("c", "k")),
		"put":    s.AttributePut("c", Attribute{Key: "k"}, false),
		"delete": s.AttributeDelete("c", "k", false),
		"list":   second(s.AttributeList("c")),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	want := `put attribute "k" of "c" if newer: store closed`
	if _, _, _, err := s.AttributePutIfNewer("c", Attribute{Key: "k"}, false, false); err == nil || err.Error() != want {
		t.Errorf("put if newer after Close = %v, want %q", err, want)
	}
}

func TestAttributeCorrupt(t *testing.T) {
	s := openTest(t, t.TempDir(), DurabilityNone)
	mustDo(t, s.PutSession(&Session{ClientID: "c"}, false))
	mustDo(t, s.set(attrKey(nil, "c", "k"), []byte{recordVersion, 0, 2}, false, false)) // truncated after the time
	if _, _, err := s.AttributeGet("c", "k"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("AttributeGet of a truncated record = %v, want ErrCorrupt", err)
	}
	if _, err := s.AttributeList("c"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("AttributeList with a truncated record = %v, want ErrCorrupt", err)
	}
}

// second and third return the error of a call, for tables of errors.
func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }
