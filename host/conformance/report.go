package conformance

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Formats names the output formats of `propolis extensions check`.
var Formats = []string{"text", "junit", "json"}

// Write renders the report in format ("text", "junit" or "json").
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "text", "":
		return r.WriteText(w)
	case "junit":
		return r.WriteJUnit(w)
	case "json":
		return r.WriteJSON(w)
	}
	return fmt.Errorf("unknown format %q (want %s)", format, strings.Join(Formats, ", "))
}

// Replay is the command line that runs the same checks again, for a
// POSIX shell. A password given is shown as "--password ...": the report
// never holds it.
func (r *Report) Replay() string {
	flags := ""
	if r.Network {
		flags += "--network "
	}
	if r.MQTT {
		flags += "--mqtt "
	}
	if r.Username != "" {
		flags += "--username " + shellQuote(r.Username) + " "
	}
	if r.PasswordSet {
		flags += "--password ... "
	}
	return fmt.Sprintf("propolis extensions check --seed %d --calls %d %s%s", r.Seed, r.Calls, flags, shellQuote(r.Path))
}

// shellQuote quotes s for a POSIX shell, unless it needs no quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-+:=@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (r *Report) counts() (pass, fail, skip int) {
	for _, x := range r.Results {
		switch x.Status {
		case Pass:
			pass++
		case Fail:
			fail++
		case Skip:
			skip++
		}
	}
	return
}

// WriteText writes the human summary: one line per check, failures with
// their message, the totals and the command that replays the run.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	id := r.Extension
	if id == "" {
		id = "?"
	}
	fmt.Fprintf(&b, "checking %s (extension %s), seed %d, %d inputs per callback\n", r.Path, id, r.Seed, r.Calls)
	for _, x := range r.Results {
		fmt.Fprintf(&b, "%-4s  %-6s  %s", strings.ToUpper(string(x.Status)), x.Group, x.Name)
		if x.Status == Pass && x.Message != "" {
			fmt.Fprintf(&b, ": %s", firstLine(x.Message))
		}
		b.WriteByte('\n')
		if x.Status != Pass && x.Message != "" {
			for _, line := range strings.Split(x.Message, "\n") {
				fmt.Fprintf(&b, "              %s\n", line)
			}
		}
	}
	pass, fail, skip := r.counts()
	verdict := "PASSED"
	if fail > 0 {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "%s: %d checks, %d passed, %d failed, %d skipped; %d calls in %v\n", verdict, len(r.Results), pass, fail, skip,
		r.CallsMade, r.Took.Round(time.Millisecond))
	fmt.Fprintf(&b, "replay: %s\n", r.Replay())
	_, err := io.WriteString(w, b.String())
	return err
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// WriteJSON writes the report as one JSON object (Report's fields).
func (r *Report) WriteJSON(w io.Writer) error {
	pass, fail, skip := r.counts()
	out := struct {
		*Report
		Passed  bool   `json:"passed"`
		Pass    int    `json:"pass"`
		Fail    int    `json:"fail"`
		Skip    int    `json:"skip"`
		Command string `json:"replay"`
	}{r, fail == 0, pass, fail, skip, r.Replay()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Class   string        `xml:"classname,attr"`
	Name    string        `xml:"name,attr"`
	Time    string        `xml:"time,attr"`
	Failure *junitMessage `xml:"failure,omitempty"`
	Skipped *junitMessage `xml:"skipped,omitempty"`
	Output  string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// WriteJUnit writes the report as JUnit XML: one test suite, one test case
// per check (class propolis.GROUP), the seed and the replay command as
// properties.
func (r *Report) WriteJUnit(w io.Writer) error {
	_, fail, skip := r.counts()
	id := r.Extension
	if id == "" {
		id = r.Path
	}
	s := junitSuite{Name: "propolis extensions check " + id, Tests: len(r.Results), Failures: fail, Skipped: skip, Time: seconds(r.Took),
		Properties: []junitProperty{{"path", r.Path}, {"seed", strconv.FormatUint(r.Seed, 10)}, {"calls", strconv.Itoa(r.Calls)}, {"replay", r.Replay()}}}
	for _, x := range r.Results {
		c := junitCase{Class: "propolis." + x.Group, Name: x.Name, Time: seconds(x.Took)}
		switch x.Status {
		case Fail:
			c.Failure = &junitMessage{Message: firstLine(x.Message), Text: x.Message + "\nreplay: " + r.Replay()}
		case Skip:
			c.Skipped = &junitMessage{Message: x.Message}
		default:
			c.Output = x.Message
		}
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
