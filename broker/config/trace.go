package config

// Trace holds the limits of trace recordings (package trace): files of the
// MQTT packets chosen clients send and receive, written to
// <data_dir>/traces. Both keys are read when the broker starts (the
// recorder is opened with them), so a reload changing them is refused.
type Trace struct {
	// MaxFileSize is the size at which a recording's file is closed and
	// the next one begun, 4KiB to 1GiB. Default 16MiB.
	MaxFileSize ByteSize `yaml:"max_file_size"`
	// MaxTotalSize caps all recordings on disk together, 64KiB to 1024GiB: a
	// recording that would go beyond it stops ("total size cap"), and no
	// recording starts while it is reached, until recordings are deleted.
	// Recordings are never deleted by the broker. Default 256MiB.
	MaxTotalSize ByteSize `yaml:"max_total_size"`
}

// Defaults and limits of the trace section.
const (
	DefaultTraceMaxFileSize  = 16 << 20
	DefaultTraceMaxTotalSize = 256 << 20
	minTraceFileSize         = 4 << 10
	maxTraceFileSize         = 1 << 30
	minTraceTotalSize        = 64 << 10
	maxTraceTotalSize        = 1 << 40
)

// validateTrace checks the trace section.
func (c *Config) validateTrace(ch *checker) {
	t := &c.Trace
	if t.MaxFileSize < minTraceFileSize || t.MaxFileSize > maxTraceFileSize {
		ch.addf("trace.max_file_size", "%s out of range %s-%s", t.MaxFileSize, ByteSize(minTraceFileSize), ByteSize(maxTraceFileSize))
	}
	if t.MaxTotalSize < minTraceTotalSize || t.MaxTotalSize > maxTraceTotalSize {
		ch.addf("trace.max_total_size", "%s out of range %s-%s", t.MaxTotalSize, ByteSize(minTraceTotalSize), ByteSize(maxTraceTotalSize))
	}
}
