package rawmqtt

import "testing"

// TestReasonString reads the Reason String out of MQTT 5 CONNACK
// properties, past the properties before it, and gives up on what it
// cannot skip.
func TestReasonString(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props []byte
		want  string
	}{
		{"none", []byte{0}, ""},
		{"alone", []byte{8, 0x1F, 0, 5, 'n', 'o', ' ', 'q', 'u'}, ": no qu"},
		{"after a receive maximum and a session expiry", []byte{12, 0x21, 0, 10, 0x11, 0, 0, 0, 60, 0x1F, 0, 1, 'x'}, ": x"},
		{"string longer than the properties", []byte{4, 0x1F, 0, 9, 'x'}, ""},
		{"length past the end", []byte{9, 0x1F, 0, 1, 'x'}, ""},
		{"user property first", []byte{6, 0x26, 0, 1, 'k', 0, 0}, ""},
		{"truncated integer", []byte{2, 0x11, 0}, ""},
	} {
		if got := reasonString(tc.props); got != tc.want {
			t.Errorf("%s: reasonString(% x) = %q, want %q", tc.name, tc.props, got, tc.want)
		}
	}
}
