package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestReserveBelowEphemeral: the addresses are distinct, bindable once
// returned, and below the kernel's ephemeral range when it is known.
func TestReserveBelowEphemeral(t *testing.T) {
	addrs := Reserve(t, 5)
	seen := map[string]bool{}
	floor := ephemeralFloor()
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s returned twice in %v", a, addrs)
		}
		seen[a] = true
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if floor > 0 && (port < lowest || port >= floor) {
			t.Fatalf("port %d outside %d-%d", port, lowest, floor-1)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s not free after Reserve: %v", a, err)
		}
		l.Close()
	}
}
