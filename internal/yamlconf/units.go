package yamlconf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("10s",
// "1h30m") or an integer number of seconds.
type Duration time.Duration

// String formats d like time.Duration.String but drops zero trailing units,
// so one minute is "1m" rather than "1m0s" and one week is "168h".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalText implements encoding.TextMarshaler using String.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts the same
// forms as Decode, so a Duration can also be a command-line flag.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// errDurationSyntax is the message for a value that is not a duration.
const errDurationSyntax = `want a duration such as "10s" or "1h30m", or a whole number of seconds`

// parseDuration parses a Go duration string or a decimal number of seconds.
func parseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if isDecimal(s) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s seconds is too large", s)
		}
		return secondsToDuration(n)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s, got %q", errDurationSyntax, s)
	}
	return Duration(v), nil
}

// secondsToDuration converts n seconds to a Duration, rejecting overflow.
func secondsToDuration(n int64) (Duration, error) {
	const limit = math.MaxInt64 / int64(time.Second)
	if n > limit || n < -limit {
		return 0, fmt.Errorf("%d seconds is too large", n)
	}
	return Duration(time.Duration(n) * time.Second), nil
}

// ByteSize is a number of bytes written as an integer or with a suffix: B,
// KiB, MiB, GiB (also KB/MB/GB meaning 1000-based).
type ByteSize int64

// Byte size units accepted after a number.
const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// byteUnits maps each accepted suffix to its multiplier.
var byteUnits = map[string]int64{
	"B":   1,
	"KiB": kib,
	"MiB": mib,
	"GiB": gib,
	"KB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
}

// String formats b with the largest binary unit that divides it exactly,
// for example "1MiB", "1536KiB" or "100B".
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%gib == 0:
		return strconv.FormatInt(int64(b/gib), 10) + "GiB"
	case b != 0 && b%mib == 0:
		return strconv.FormatInt(int64(b/mib), 10) + "MiB"
	case b != 0 && b%kib == 0:
		return strconv.FormatInt(int64(b/kib), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalText implements encoding.TextMarshaler using String.
func (b ByteSize) MarshalText() ([]byte, error) {
	return []byte(b.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts the same
// forms as Decode, so a ByteSize can also be a command-line flag.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := parseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// errByteSizeSyntax is the message for a value that is not a byte size.
const errByteSizeSyntax = `want a byte size such as 65536, "512KiB" or "1MiB" (units: B, KiB, MiB, GiB, KB, MB, GB)`

// parseByteSize parses a decimal number with an optional unit suffix,
// optionally separated from the number by spaces.
func parseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	mult, ok := byteUnits[unit]
	if unit == "" {
		mult, ok = 1, true
	}
	if num == "" || !ok {
		return 0, fmt.Errorf("%s, got %q", errByteSizeSyntax, s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("byte size %s is too large", s)
	}
	return ByteSize(n * mult), nil
}

// isDecimal reports whether s is an optionally signed run of decimal digits.
func isDecimal(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
