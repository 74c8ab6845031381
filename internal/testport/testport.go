// Package testport picks loopback ports for listeners a test must name
// before they bind, such as the route listeners of a test cluster, whose
// every node's seeds list them all.
//
// A port the kernel hands out for port 0 comes from its ephemeral range,
// the same range outgoing connections take their local ports from: between
// the moment a test closes its probe listener and the moment a server
// binds the port, a connection of another node can take it, and the
// server fails with "address already in use". The ports Reserve returns
// lie below that range, so no outgoing connection takes them.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowest is the lowest port Reserve picks: above the well-known and
// commonly registered ports services on a developer's machine use.
const lowest = 10000

// ephemeralFloor is the first port of the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), or 0 when it cannot be read
// or leaves no room below it.
func ephemeralFloor() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= lowest+1000 {
		return 0
	}
	return lo
}

// Reserve returns n distinct loopback addresses ("127.0.0.1:PORT"), each
// free a moment ago, below the kernel's ephemeral range when it is known
// (else from port 0, as before). It fails the test when none can be had.
func Reserve(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := Pick(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// Pick is Reserve for code that is not a test (the benchmark harness,
// which starts brokers on ports it names): the error says why no port
// could be had.
func Pick(n int) ([]string, error) {
	floor := ephemeralFloor()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for tries := 0; len(addrs) < n; tries++ {
		port := 0
		if floor > 0 {
			if tries > 1000 {
				return nil, fmt.Errorf("no free loopback port among 1,000 tried in %d-%d", lowest, floor-1)
			}
			port = lowest + rand.IntN(floor-lowest)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			if port == 0 {
				return nil, err
			}
			continue // taken: try another
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
