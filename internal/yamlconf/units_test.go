package yamlconf

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		name, in string
		want     Duration
		err      string
	}{
		{name: "go syntax", in: "1h30m", want: Duration(90 * time.Minute)},
		{name: "milliseconds", in: "100ms", want: Duration(100 * time.Millisecond)},
		{name: "seconds as text", in: "3600", want: Duration(time.Hour)},
		{name: "zero", in: "0", want: 0},
		{name: "negative", in: "-5s", want: Duration(-5 * time.Second)},
		{name: "spaces trimmed", in: " 10s ", want: Duration(10 * time.Second)},
		{name: "unknown unit", in: "10 seconds",
			err: `want a duration such as "10s" or "1h30m", or a whole number of seconds, got "10 seconds"`},
		{name: "empty", in: "",
			err: `want a duration such as "10s" or "1h30m", or a whole number of seconds, got ""`},
		{name: "too many seconds", in: "9223372037", err: "9223372037 seconds is too large"},
		{name: "not even int64", in: "99999999999999999999", err: "99999999999999999999 seconds is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Duration
			err := got.UnmarshalText([]byte(tt.in))
			switch {
			case tt.err != "" && (err == nil || err.Error() != tt.err):
				t.Errorf("UnmarshalText(%q) error = %v, want %s", tt.in, err, tt.err)
			case tt.err == "" && err != nil:
				t.Errorf("UnmarshalText(%q) error = %v", tt.in, err)
			case tt.err == "" && got != tt.want:
				t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		name string
		in   Duration
		want string
	}{
		{"zero", 0, "0s"},
		{"sub-second", Duration(100 * time.Millisecond), "100ms"},
		{"minute", Duration(time.Minute), "1m"},
		{"minute and seconds", Duration(90 * time.Second), "1m30s"},
		{"week", Duration(168 * time.Hour), "168h"},
		{"hour and minutes", Duration(90 * time.Minute), "1h30m"},
		{"hour and seconds", Duration(time.Hour + time.Second), "1h0m1s"},
		{"ten minutes", Duration(10 * time.Minute), "10m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			var back Duration
			if err := back.UnmarshalText([]byte(tt.in.String())); err != nil || back != tt.in {
				t.Errorf("round trip of %q = %v, %v", tt.want, back, err)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		name, in string
		want     ByteSize
		err      string
	}{
		{name: "plain", in: "65536", want: 65536},
		{name: "bytes", in: "64B", want: 64},
		{name: "kibibytes", in: "512KiB", want: 512 << 10},
		{name: "mebibytes with space", in: "1 MiB", want: 1 << 20},
		{name: "gibibytes", in: "2GiB", want: 2 << 30},
		{name: "kilobytes", in: "64KB", want: 64000},
		{name: "megabytes", in: "3MB", want: 3000000},
		{name: "gigabytes", in: "1GB", want: 1000000000},
		{name: "unknown unit", in: "1 MeB",
			err: `want a byte size such as 65536, "512KiB" or "1MiB" (units: B, KiB, MiB, GiB, KB, MB, GB), got "1 MeB"`},
		{name: "lowercase unit", in: "1mib",
			err: `want a byte size such as 65536, "512KiB" or "1MiB" (units: B, KiB, MiB, GiB, KB, MB, GB), got "1mib"`},
		{name: "fraction", in: "1.5MiB",
			err: `want a byte size such as 65536, "512KiB" or "1MiB" (units: B, KiB, MiB, GiB, KB, MB, GB), got "1.5MiB"`},
		{name: "no number", in: "MiB",
			err: `want a byte size such as 65536, "512KiB" or "1MiB" (units: B, KiB, MiB, GiB, KB, MB, GB), got "MiB"`},
		{name: "negative", in: "-1",
			err: `want a byte size such as 65536, "512KiB" or "1MiB" (units: B, KiB, MiB, GiB, KB, MB, GB), got "-1"`},
		{name: "overflow", in: "9000000000GiB", err: "byte size 9000000000GiB is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ByteSize
			err := got.UnmarshalText([]byte(tt.in))
			switch {
			case tt.err != "" && (err == nil || err.Error() != tt.err):
				t.Errorf("UnmarshalText(%q) error = %v, want %s", tt.in, err, tt.err)
			case tt.err == "" && err != nil:
				t.Errorf("UnmarshalText(%q) error = %v", tt.in, err)
			case tt.err == "" && got != tt.want:
				t.Errorf("UnmarshalText(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		name string
		in   ByteSize
		want string
	}{
		{"zero", 0, "0B"},
		{"bytes", 100, "100B"},
		{"kibibytes", 3072, "3KiB"},
		{"one and a half kibibytes", 1536, "1536B"},
		{"mebibyte", 1 << 20, "1MiB"},
		{"gibibytes", 3 << 30, "3GiB"},
		{"not a binary multiple", 64000, "64000B"},
		{"mqtt maximum", 268435455, "268435455B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
