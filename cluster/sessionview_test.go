package cluster

import (
	"math"
	"testing"
	"time"
)

// TestViewOf: an offline record's disconnect and expiry times, none for
// an online one, no expiry time for a session that never expires.
func TestViewOf(t *testing.T) {
	at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		r    sessionRecord
		want SessionView
	}{
		{"offline", sessionRecord{Node: "n1", Expiry: 3600, DisconnectedAt: at.Unix()},
			SessionView{Node: "n1", Expiry: 3600, DisconnectedAt: at, ExpiresAt: at.Add(time.Hour)}},
		{"offline, never expires", sessionRecord{Node: "n1", Expiry: math.MaxUint32, DisconnectedAt: at.Unix()},
			SessionView{Node: "n1", Expiry: math.MaxUint32, DisconnectedAt: at}},
		{"online", sessionRecord{Node: "n2", Online: true, Expiry: 60},
			SessionView{Node: "n2", Online: true, Expiry: 60}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := *viewOf(&tt.r); got != tt.want {
				t.Errorf("viewOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}
