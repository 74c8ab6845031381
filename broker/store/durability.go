package store

import (
	"fmt"
	"strings"
)

// Durability says when a write reaches the disk. The broker picks it once,
// from configuration, and passes it to Open in Options.
type Durability int

const (
	// DurabilitySync fsyncs writes marked durable before the call returns.
	// Concurrent callers share one fsync: pebble's commit pipeline groups
	// the syncs of all batches that are waiting at the same time.
	DurabilitySync Durability = iota
	// DurabilityPeriodic never fsyncs per write; a background goroutine
	// syncs the write-ahead log every Options.FlushInterval, so a power loss
	// loses at most that much.
	DurabilityPeriodic
	// DurabilityNone never fsyncs explicitly; the operating system decides.
	// A process crash loses nothing pebble already handed to the OS, a
	// power loss may lose whatever the OS had not written.
	DurabilityNone
)

// String returns the configuration name of d ("sync", "periodic", "none"),
// the form ParseDurability accepts, or "Durability(N)" for an unknown value.
func (d Durability) String() string {
	switch d {
	case DurabilitySync:
		return "sync"
	case DurabilityPeriodic:
		return "periodic"
	case DurabilityNone:
		return "none"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// ParseDurability turns a configuration value into a Durability. The
// config loader calls it; it accepts "sync", "periodic" and "none"
// (case-insensitive, surrounding spaces ignored) and otherwise returns an
// error that names the bad value and the allowed ones.
func ParseDurability(s string) (Durability, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "sync":
		return DurabilitySync, nil
	case "periodic":
		return DurabilityPeriodic, nil
	case "none":
		return DurabilityNone, nil
	}
	return 0, fmt.Errorf("parse durability %q: want one of sync, periodic, none", s)
}
