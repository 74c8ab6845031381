//go:build !clustersoak

package main

// scenario sizes the cluster scenarios (cluster_upgrade_test.go,
// cluster_partition_test.go) for `make test`: one rolling upgrade, one
// node stopped, a few dozen messages. `make soak-cluster` builds the
// tests with the tag clustersoak, which takes cluster_soak_test.go's
// sizes instead.
var scenario = clusterScenario{
	upgradeRounds: 1,
	messages:      20,
	partitioned:   []int{2},
}
