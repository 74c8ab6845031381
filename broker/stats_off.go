//go:build propolis_nometrics

package broker

// countMessages is false in a build with the propolis_nometrics tag: no
// per-message counting (see stats_on.go).
const countMessages = false
