package main

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// waitingLine is what serve logs while its node waits for its peers.
const waitingLine = "cluster routing waits for the other nodes"

// clusterNodeConfig writes the configuration of node name of a test
// cluster (allow-all, folders of its own, every route as a seed) and
// returns its file.
func clusterNodeConfig(t *testing.T, name, listen string, routes []string) string {
	t.Helper()
	return allowAllConfig(t, t.TempDir(), fmt.Sprintf(`cluster:
  name: %s
  listen: %s
  seeds: [%s]
`, name, listen, strings.Join(routes, ", ")))
}

// startWaiting starts `propolis serve` on file in the background and
// returns it with its log, once the log says it waits for its peers (the
// node's JetStream start-up wait, 30 s, comes first: the deadline is
// twice the usual one).
func startWaiting(t *testing.T, file string) (*exec.Cmd, *syncLog, chan string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", file)
	log, addr := startLogged(t, cmd)
	deadline := time.Now().Add(2 * poll.Timeout)
	for !strings.Contains(log.String(), waitingLine) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log of the lone node:\n%s", waitingLine, log.String())
		}
		select {
		case a := <-addr:
			t.Fatalf("the lone node listens for clients (%s) before its peers are up:\n%s", a, log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return cmd, log, addr
}

// TestClusterNodeWaitsForPeers starts node 1 of two alone: it does not
// exit, logs that it waits naming its seeds, accepts no client, and
// serves once node 2 starts.
func TestClusterNodeWaitsForPeers(t *testing.T) {
	routes := testport.Reserve(t, 2)
	cmd, log, addr := startWaiting(t, clusterNodeConfig(t, "n1", routes[0], routes))
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(t, cmd); err != nil {
			t.Errorf("node 1 exit after SIGTERM: %v\n%s", err, log.String())
		}
	})
	if !strings.Contains(log.String(), routes[1]) {
		t.Fatalf("the waiting line does not name the seed %s:\n%s", routes[1], log.String())
	}
	serveForClients(t, exec.Command(bin, "serve", "--config", clusterNodeConfig(t, "n2", routes[1], routes)))
	select {
	case a := <-addr:
		connackCode(t, a)
	case <-time.After(2 * poll.Timeout):
		t.Fatalf("node 1 does not serve once node 2 runs:\n%s", log.String())
	}
}

// TestClusterNodeWaitingStopsOnSIGTERM: a node waiting for its peers
// stops on SIGTERM, cleanly (exit 0).
func TestClusterNodeWaitingStopsOnSIGTERM(t *testing.T) {
	routes := testport.Reserve(t, 2)
	cmd, log, _ := startWaiting(t, clusterNodeConfig(t, "n1", routes[0], routes))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit after SIGTERM while waiting: %v\n%s", err, log.String())
	}
}

// startLogged starts cmd (a `propolis serve`) and collects its log; the
// address its tcp listener reports, if it ever does, goes to the channel.
func startLogged(t *testing.T, cmd *exec.Cmd) (*syncLog, chan string) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrRe := regexp.MustCompile(`msg=listening .*address=(\S+)`)
	log := &syncLog{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.add(sc.Text())
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	return log, addr
}
