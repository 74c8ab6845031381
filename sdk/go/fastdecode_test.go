package propolis

import (
	"encoding/binary"
	"math/rand"
	"reflect"
	"testing"
)

// The per-message decoders have a fast path (decodePublishFast,
// decodeMessageFast) for a whole record and a careful one
// (decodePublishFields, decodeMessageFields) for the rest. These tests
// check that the fast path is the one taken for the records a host
// writes, and that whatever it accepts, the careful one decodes alike.

// publishRecords returns PUBLISH records a host writes.
func publishRecords() map[string][]byte {
	return map[string][]byte{
		"typical":       publishFields(1, 1, "sensor-1", "u", "devices/sensor-1/temperature", `{"t":21.5}`),
		"empty payload": publishFields(0, 0, "c", "", "a", ""),
		"all empty":     publishFields(0, 0, "", "", "", ""),
		"will":          publishFields(2, 3, "c", "u", "w/t", "gone"),
		"trailing":      trailing(publishFields(0, 0, "c", "u", "t", "p"), 1, 2, 3, 4, 5), // a later minor's field
	}
}

func publishFields(qos, flags byte, client, user, topic, payload string) []byte {
	return makeRecord(kindPublish, []byte{qos, flags, 0, 0}, str(client), str(user), str(topic), str(payload))
}

// messageRecords returns MESSAGE records: those with an empty tail, which
// take the fast path, and others.
func messageRecords() (fast, other map[string][]byte) {
	head := [][]byte{{2, 4, 0, 0}, str("sub-1"), str("user"), str("pub-1"), {1, 1, 1, 0}, u32(60), str("a/b"), str("hello")}
	fields := func(tail ...[]byte) []byte {
		return makeRecord(kindMessage, append(append([][]byte{}, head...), tail...)...)
	}
	empty := [][]byte{u32(0), str(""), str(""), str("")}
	fast = map[string][]byte{
		"empty tail": fields(empty...),
		"trailing":   append(fields(empty...), 9, 9, 9, 9),
		"inbound qos 0": (makeRecord(kindMessage, []byte{1, 4, 0, 0}, str("c"), str("u"), str("c"), []byte{0, 0, 0, 0}, u32(0),
			str("t"), str("x"), u32(0), str(""), str(""), str(""))),
		"empty payload": (makeRecord(kindMessage, []byte{1, 5, 0, 0}, str("c"), str(""), str("c"), []byte{0, 0, 0, 0}, u32(0),
			str("t"), str(""), u32(0), str(""), str(""), str(""))),
	}
	other = map[string][]byte{
		"no tail":        fields(),
		"properties":     (messageRecord(2, 1, 1, "a/b", "hello", "k", "v")),
		"content type":   fields(u32(0), str("ct"), str(""), str("")),
		"correlation":    fields(u32(0), str(""), str(""), str("c")),
		"tail cut short": fields(u32(0), str("")),
	}
	return fast, other
}

func TestDecodeFastPathTaken(t *testing.T) {
	for name, b := range publishRecords() {
		var fast, slow Publish
		if !decodePublishFast(b, &fast) {
			t.Errorf("PUBLISH %s: not decoded by the fast path", name)
			continue
		}
		if err := decodePublishFields(fields(b), &slow); err != nil || !reflect.DeepEqual(fast, slow) {
			t.Errorf("PUBLISH %s: fast %+v, fields %+v (%v)", name, fast, slow, err)
		}
	}
	fast, other := messageRecords()
	for name, b := range fast {
		var f, s PublishPacket
		if !decodeMessageFast(b, &f) {
			t.Errorf("MESSAGE %s: not decoded by the fast path", name)
			continue
		}
		if err := decodeMessageFields(fields(b), &s); err != nil || !reflect.DeepEqual(f, s) {
			t.Errorf("MESSAGE %s: fast %+v, fields %+v (%v)", name, f, s, err)
		}
		if f.Payload != nil && len(f.Payload) == 0 {
			t.Errorf("MESSAGE %s: empty payload not nil", name)
		}
	}
	for name, b := range other {
		var p PublishPacket
		if decodeMessageFast(b, &p) {
			t.Errorf("MESSAGE %s: decoded by the fast path, which knows no tail", name)
		}
	}
	// An empty PUBLISH payload stays an empty slice, not nil, as before
	// the fast path.
	var p Publish
	if !decodePublishFast(publishRecords()["empty payload"], &p) || p.Payload == nil {
		t.Errorf("empty payload decoded as %#v", p.Payload)
	}
}

// TestDecodeFastAgreesWithFields mutates records at random (a fixed seed,
// a bounded count): lengths made huge, cut, off by a few; bytes flipped;
// records cut short or extended. Whenever the fast path accepts one, the
// careful decoder must accept it too and decode the same; a record a
// field of which runs past the end must never be accepted.
func TestDecodeFastAgreesWithFields(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var seeds [][]byte
	for _, b := range publishRecords() {
		seeds = append(seeds, b)
	}
	fastMsgs, otherMsgs := messageRecords()
	var msgSeeds [][]byte
	for _, m := range []map[string][]byte{fastMsgs, otherMsgs} {
		for _, b := range m {
			msgSeeds = append(msgSeeds, b)
		}
	}
	accepted := 0
	for i := 0; i < 20000; i++ {
		isMsg := i%2 == 1
		src := seeds
		if isMsg {
			src = msgSeeds
		}
		b := mutate(rng, src[rng.Intn(len(src))])
		if isMsg {
			var f, s PublishPacket
			if !decodeMessageFast(b, &f) {
				continue
			}
			accepted++
			if err := decodeMessageFields(fields(b), &s); err != nil || !reflect.DeepEqual(f, s) {
				t.Fatalf("MESSAGE % x: fast %+v, fields %+v (%v)", b, f, s, err)
			}
			continue
		}
		var f, s Publish
		if !decodePublishFast(b, &f) {
			continue
		}
		accepted++
		if err := decodePublishFields(fields(b), &s); err != nil || !reflect.DeepEqual(f, s) {
			t.Fatalf("PUBLISH % x: fast %+v, fields %+v (%v)", b, f, s, err)
		}
	}
	if accepted < 1000 {
		t.Errorf("only %d mutated records took the fast path: the test checks little", accepted)
	}
}

// trailing returns rec with more fields (a later minor's) at its end.
func trailing(rec []byte, more ...byte) []byte {
	rec = append(append([]byte(nil), rec...), more...)
	binary.LittleEndian.PutUint32(rec, uint32(len(rec)))
	return rec
}

// fields returns rec's fields, as the careful decoders take them.
func fields(rec []byte) []byte { return rec[headerSize:binary.LittleEndian.Uint32(rec)] }

// mutate returns a changed copy of b.
func mutate(rng *rand.Rand, b []byte) []byte {
	b = append([]byte(nil), b...)
	for n := rng.Intn(3); n >= 0; n-- {
		switch k := rng.Intn(6); {
		case k == 0 && len(b) > 0: // cut short
			b = b[:rng.Intn(len(b))]
		case k == 1: // extended
			b = append(b, make([]byte, rng.Intn(8))...)
		case k == 2 && len(b) >= 4: // a huge length somewhere
			binary.LittleEndian.PutUint32(b[rng.Intn(len(b)-3):], 0xffffffff-uint32(rng.Intn(4)))
		case k == 3 && len(b) > 0: // a length off by a little
			i := rng.Intn(len(b))
			b[i] += byte(rng.Intn(5)) - 2
		case len(b) > 0: // any byte
			b[rng.Intn(len(b))] = byte(rng.Intn(256))
		}
	}
	return b
}
