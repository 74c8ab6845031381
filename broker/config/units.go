package config

import "github.com/propolis-mqtt/propolis/internal/yamlconf"

// Duration is a time.Duration written as a Go duration string ("10s",
// "1h30m") or an integer number of seconds.
type Duration = yamlconf.Duration

// ByteSize is a number of bytes written as an integer or with a suffix: B,
// KiB, MiB, GiB (also KB/MB/GB meaning 1000-based).
type ByteSize = yamlconf.ByteSize
