package propolis

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestVerdictEncode(t *testing.T) {
	tests := []struct {
		name string
		v    Verdict
		want uint32
	}{
		// The examples of ABI.md section 3.
		{"allow", Allow(), 0x00000001},
		{"deny 0x86", Deny(0x86, "bad password"), 0x00008602},
		{"disconnect 0x98", Disconnect(0x98, ""), 0x00009803},
		// The rest of the encoding.
		{"next", Next(), 0},
		{"zero verdict is next", Verdict{}, 0},
		{"deny default code", Deny(0, ""), 0x00000002},
		{"disconnect default code", Disconnect(0, "x"), 0x00000003},
		{"deny 0xff", Deny(0xff, ""), 0x0000ff02},
		{"allow ignores code", Verdict{Decision: DecisionAllow, Code: 0x87}, 1},
		{"next ignores code", Verdict{Code: 0x87}, 0},
		{"code below 0x80 fails closed", Deny(0x05, ""), 0x00008002},
		{"disconnect code below 0x80", Disconnect(0x01, ""), 0x00008003},
		{"unknown decision fails closed", Verdict{Decision: 9, Code: 0x99}, 0x00008002},
	}
	for _, tt := range tests {
		if got := tt.v.Encode(); got != tt.want {
			t.Errorf("%s: Encode() = %#08x, want %#08x", tt.name, got, tt.want)
		}
		if got := tt.v.Encode(); got>>16 != 0 {
			t.Errorf("%s: bits 16-31 set: %#x", tt.name, got)
		}
	}
}

func TestVerdictForAuthenticate(t *testing.T) {
	if got := Disconnect(0x98, "r").forAuthenticate(); got != Deny(0x98, "r") {
		t.Errorf("disconnect from authenticate = %+v, want a deny", got)
	}
	for _, v := range []Verdict{Allow(), Next(), Deny(0x86, "")} {
		if got := v.forAuthenticate(); got != v {
			t.Errorf("%+v changed to %+v", v, got)
		}
	}
}

func TestTruncateReason(t *testing.T) {
	if got := truncateReason("short"); got != "short" {
		t.Errorf("got %q", got)
	}
	ascii := strings.Repeat("a", 2000)
	if got := truncateReason(ascii); len(got) != maxReason {
		t.Errorf("len %d", len(got))
	}
	// A 3-byte rune straddling the limit is dropped whole.
	s := strings.Repeat("a", maxReason-1) + "€" + "tail"
	got := truncateReason(s)
	if len(got) != maxReason-1 || !utf8.ValidString(got) {
		t.Errorf("len %d, valid %v", len(got), utf8.ValidString(got))
	}
}

func TestStrings(t *testing.T) {
	if DecisionDisconnect.String() != "disconnect" || Decision(7).String() != "invalid" {
		t.Error("Decision.String")
	}
	if EventUnsubscribe.String() != "unsubscribe" || DisconnectConnectionLost.String() != "lost" || EventConnectionStart.String() != "connection_start" {
		t.Error("EventKind/DisconnectKind.String")
	}
	if LevelWarn.String() != "warn" || Level(-12).String() != "level(-12)" {
		t.Error("Level.String")
	}
	if statusName(-7) != "TOO_LARGE" || statusName(-99) != "unknown status -99" || statusName(3) != "OK" {
		t.Error("statusName")
	}
}
