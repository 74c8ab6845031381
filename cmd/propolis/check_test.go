package main

import (
	"encoding/json"
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"
)

// fixture returns the absolute path of a committed WAT fixture's module.
func fixture(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "testdata", "wasm", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExtensionsCheck: exit status 0 only when every check passed, the
// seed in the output, each format parseable, and usage errors with 2.
func TestExtensionsCheck(t *testing.T) {
	code, out, errOut := runCLI(t, "extensions", "check", "--seed", "11", "--calls", "20", fixture(t, "ok/wat_auth"))
	if code != 0 || !strings.Contains(out, "PASSED") || !strings.Contains(out, "replay: propolis extensions check --seed 11 --calls 20 ") {
		t.Fatalf("wat_auth: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "extensions", "check", "--seed", "11", "--calls", "20", fixture(t, "error/trap"))
	if code != 1 || !strings.Contains(out, "FAIL  run     authenticate: no trap") || !strings.Contains(errOut, "--seed 11") {
		t.Fatalf("trap: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "extensions", "check", "--format", "json", "--seed", "11", "--calls", "20", fixture(t, "error/bad_answer"))
	var js struct {
		Passed bool   `json:"passed"`
		Seed   uint64 `json:"seed"`
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil || code != 1 || js.Passed || js.Seed != 11 {
		t.Fatalf("json: exit %d, %v, %+v\n%s", code, err, js, out)
	}
	code, out, _ = runCLI(t, "extensions", "check", "--format", "junit", "--calls", "20", fixture(t, "ok/minimal"))
	var ju struct {
		Suites []struct {
			Failures int `xml:"failures,attr"`
			Tests    int `xml:"tests,attr"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(out), &ju); err != nil || code != 0 || len(ju.Suites) != 1 || ju.Suites[0].Failures != 0 || ju.Suites[0].Tests == 0 {
		t.Fatalf("junit: exit %d, %v, %+v\n%s", code, err, ju, out)
	}
	for _, args := range [][]string{
		{"extensions", "check"},
		{"extensions", "check", "--format", "yaml", fixture(t, "ok/minimal")},
		{"extensions", "check", "--seed", "-1", fixture(t, "ok/minimal")},
	} {
		if code, _, errOut := runCLI(t, args...); code != 2 || !strings.Contains(errOut, "extensions check") {
			t.Errorf("%v: exit %d, %s", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "extensions", "check", t.TempDir()); code != 1 || !strings.Contains(errOut, "no propolis-extension.yaml") {
		t.Errorf("empty folder: exit %d, %s", code, errOut)
	}
}
