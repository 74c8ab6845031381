package scrape

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Family is one metric family of an OpenMetrics exposition.
type Family struct {
	// Name is the family's name (a counter's without _total), Type its
	// # TYPE (counter, gauge, histogram, summary, unknown, info, stateset,
	// gaugehistogram), Help its # HELP text and Unit its # UNIT.
	Name, Type, Help, Unit string
	// Samples are its sample lines, in order.
	Samples []Sample
}

// Sample is one sample line.
type Sample struct {
	// Name is the sample's metric name: the family's name with the
	// suffix its type allows (_total, _bucket, _sum, _count, ...).
	Name   string
	Labels map[string]string
	Value  float64
}

// suffixes are the sample name suffixes each family type allows.
var suffixes = map[string][]string{
	"counter":        {"_total", "_created"},
	"gauge":          {""},
	"histogram":      {"_bucket", "_sum", "_count", "_created"},
	"gaugehistogram": {"_bucket", "_gsum", "_gcount"},
	"summary":        {"", "_sum", "_count", "_created"},
	"unknown":        {""},
	"info":           {"_info"},
	"stateset":       {""},
}

// OpenMetrics parses an OpenMetrics text exposition strictly: every
// family declared once with # TYPE before its samples and its samples
// together, sample names matching their family and type (histogram
// buckets with an le label, summary quantiles with a quantile label),
// counters not negative, label syntax and escapes, and a final "# EOF"
// with nothing after it. The error names the line.
func OpenMetrics(body []byte) (map[string]*Family, error) {
	text := string(body)
	if !strings.HasSuffix(text, "# EOF\n") {
		return nil, errors.New(`openmetrics: does not end with "# EOF" and a newline`)
	}
	lines := strings.Split(strings.TrimSuffix(text, "# EOF\n"), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline
	fams := map[string]*Family{}
	var cur *Family
	for i, line := range lines {
		n := i + 1
		fail := func(format string, args ...any) error {
			return fmt.Errorf("openmetrics line %d %q: %s", n, line, fmt.Sprintf(format, args...))
		}
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 || f[0] != "#" {
				return nil, fail("malformed comment")
			}
			kind, name, rest := f[1], f[2], ""
			if len(f) == 4 {
				rest = f[3]
			}
			if !validName(name) {
				return nil, fail("invalid metric name %q", name)
			}
			if cur == nil || cur.Name != name {
				if fams[name] != nil {
					return nil, fail("family %s declared again, apart from its first lines", name)
				}
				cur = &Family{Name: name}
				fams[name] = cur
			} else if len(cur.Samples) > 0 {
				return nil, fail("metadata after samples of %s", name)
			}
			switch kind {
			case "TYPE":
				if _, ok := suffixes[rest]; !ok {
					return nil, fail("unknown type %q", rest)
				}
				if cur.Type != "" {
					return nil, fail("second # TYPE for %s", name)
				}
				cur.Type = rest
			case "HELP":
				cur.Help = rest
			case "UNIT":
				cur.Unit = rest
			default:
				return nil, fail("unknown metadata %q", kind)
			}
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fail("%v", err)
		}
		if cur == nil || cur.Type == "" || !belongs(cur, s) {
			return nil, fail("sample %s outside a family with a # TYPE that allows it", s.Name)
		}
		if strings.HasSuffix(s.Name, "_bucket") && s.Labels["le"] == "" {
			return nil, fail("bucket without an le label")
		}
		if cur.Type == "summary" && s.Name == cur.Name && s.Labels["quantile"] == "" {
			return nil, fail("summary quantile without a quantile label")
		}
		if cur.Type == "counter" && (s.Value < 0 || math.IsNaN(s.Value)) {
			return nil, fail("counter value %v", s.Value)
		}
		cur.Samples = append(cur.Samples, s)
	}
	return fams, nil
}

// belongs reports whether s is a sample name family f's type allows.
func belongs(f *Family, s Sample) bool {
	for _, suf := range suffixes[f.Type] {
		if s.Name == f.Name+suf {
			return true
		}
	}
	return false
}

// parseSample parses `name{labels} value [timestamp]` (exemplars are not
// expected and refused).
func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, errors.New("no value")
	}
	s.Name = line[:i]
	if !validName(s.Name) {
		return s, fmt.Errorf("invalid metric name %q", s.Name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		var err error
		if rest, err = parseLabels(rest[1:], s.Labels); err != nil {
			return s, err
		}
	}
	if !strings.HasPrefix(rest, " ") {
		return s, errors.New("want a space before the value")
	}
	f := strings.Split(rest[1:], " ")
	if len(f) > 2 {
		return s, errors.New("more than a value and a timestamp")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("value %q: %v", f[0], err)
	}
	s.Value = v
	if len(f) == 2 {
		if _, err := strconv.ParseFloat(f[1], 64); err != nil {
			return s, fmt.Errorf("timestamp %q: %v", f[1], err)
		}
	}
	return s, nil
}

// parseLabels parses `name="value",...}` into labels and returns what
// follows the closing brace.
func parseLabels(s string, labels map[string]string) (string, error) {
	for {
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.Index(s, `="`)
		if eq <= 0 {
			return "", errors.New(`want label="value"`)
		}
		name := s[:eq]
		if !validName(name) || strings.Contains(name, ":") {
			return "", fmt.Errorf("invalid label name %q", name)
		}
		if _, dup := labels[name]; dup {
			return "", fmt.Errorf("label %s twice", name)
		}
		s = s[eq+2:]
		var v strings.Builder
		for {
			if s == "" {
				return "", errors.New("unterminated label value")
			}
			c := s[0]
			s = s[1:]
			if c == '"' {
				break
			}
			if c == '\\' {
				if s == "" {
					return "", errors.New("unterminated escape")
				}
				switch s[0] {
				case '\\':
					v.WriteByte('\\')
				case '"':
					v.WriteByte('"')
				case 'n':
					v.WriteByte('\n')
				default:
					return "", fmt.Errorf("bad escape \\%c", s[0])
				}
				s = s[1:]
				continue
			}
			if c == '\n' {
				return "", errors.New("newline in label value")
			}
			v.WriteByte(c)
		}
		labels[name] = v.String()
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		}
	}
}

// validName reports whether s is a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return true
}
