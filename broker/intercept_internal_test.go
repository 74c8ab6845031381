package broker

import (
	"bytes"
	"testing"
)

// TestDropMarked: the markers of prevented deliveries (AUTH 0xFF) are cut
// out of what mochi writes, whole packets as they come, one per marker
// counted; anything else passes untouched.
func TestDropMarked(t *testing.T) {
	marker := []byte{0xF0, 2, 0xFF, 0}
	pub1, pub2 := pubFrame(0, 0, 3), pubFrame(1, 7, 5)
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	for _, tc := range []struct {
		name   string
		marked int32
		in     []byte
		want   []byte
		left   int32
	}{
		{"marker alone", 1, marker, []byte{}, 0},
		{"marker between deliveries", 1, cat(pub1, marker, pub2), cat(pub1, pub2), 0},
		{"two markers, one counted", 1, cat(marker, pub1, marker), cat(pub1, marker), 0},
		{"two markers", 2, cat(marker, pub1, marker), pub1, 0},
		{"no marker", 1, cat(pub1, pub2), cat(pub1, pub2), 1},
		{"not whole packets", 1, pub1[:3], pub1[:3], 1},
		{"marker, then a partial packet", 1, cat(marker, pub1[:3]), pub1[:3], 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &outConn{}
			c.marked.Store(tc.marked)
			in := append([]byte(nil), tc.in...)
			got := c.dropMarked(in)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got % x, want % x", got, tc.want)
			}
			if !bytes.Equal(in, tc.in) {
				t.Fatalf("input changed: % x", in)
			}
			if n := c.marked.Load(); n != tc.left {
				t.Fatalf("%d markers left, want %d", n, tc.left)
			}
		})
	}
}
