//go:build clustersoak

package main

// scenario sizes the cluster scenarios for `make soak-cluster` (build tag
// clustersoak, a few minutes): five rolling replacements of every node,
// protocol 1 -> 2 -> 1 -> 2 -> 1 -> 2, every other node killed (SIGKILL)
// instead of stopped; each node of the three stopped (SIGSTOP) in turn,
// twice; hundreds of messages at each step.
var scenario = clusterScenario{
	upgradeRounds: 5,
	messages:      300,
	kill:          true,
	partitioned:   []int{0, 1, 2, 2, 1, 0},
}
