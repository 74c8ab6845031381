//go:build race

package host

// raceEnabled: the race detector keeps shadow memory for every byte the
// program touched and never returns it, so resident-size checks do not hold.
const raceEnabled = true
