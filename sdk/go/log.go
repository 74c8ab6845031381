package propolis

import "fmt"

// Level is the severity of a log line.
type Level int32

// Log levels, as the log host function numbers them.
const (
	// LevelDebug is for detail useful when debugging.
	LevelDebug Level = 0
	// LevelInfo is for normal operation.
	LevelInfo Level = 1
	// LevelWarn is for conditions an operator should look at.
	LevelWarn Level = 2
	// LevelError is for failures.
	LevelError Level = 3
)

// String returns the level's name, e.g. "warn".
func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarn:
		return "warn"
	case LevelError:
		return "error"
	}
	return "level(" + itoa(int64(l)) + ")"
}

// Log writes msg to the broker log at level, tagged with the extension id.
// The broker truncates lines longer than 4,096 bytes. Outside a Wasm
// build (native unit tests) it writes to standard error.
func Log(level Level, msg string) { host.log(level, msg) }

// Debugf logs at LevelDebug, formatting like fmt.Sprintf.
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// Infof logs at LevelInfo, formatting like fmt.Sprintf.
func Infof(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs at LevelWarn, formatting like fmt.Sprintf.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// Errorf logs at LevelError, formatting like fmt.Sprintf.
func Errorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }
