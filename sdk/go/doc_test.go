package propolis

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestDocExample checks that the example in the package documentation is
// testdata/docexample/main.go, which TestWasmBuild compiles.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile("testdata/docexample/main.go")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	start := strings.Index(text, "//\tpackage main")
	end := strings.Index(text, "// # Handlers")
	if start < 0 || end < start {
		t.Fatal("example not found in doc.go")
	}
	var example []string
	for _, line := range strings.Split(text[start:end], "\n") {
		if code, ok := strings.CutPrefix(line, "//\t"); ok {
			example = append(example, code)
		} else if line == "//" {
			example = append(example, "")
		}
	}
	want := strings.TrimSpace(strings.Join(example, "\n"))
	got := string(file)
	got = strings.TrimSpace(got[strings.Index(got, "package main"):])
	if got != want {
		t.Errorf("testdata/docexample/main.go differs from the example in doc.go:\n%s", got)
	}
}

// TestReadmeVersion checks that the README's instructions name the SDK
// version of the ABI this SDK implements (v1.<abiMinor>.0), so that the
// version an author is told to depend on moves with the ABI table.
func TestReadmeVersion(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	v := "v1." + strconv.Itoa(abiMinor) + ".0"
	for _, want := range []string{
		"go get github.com/propolis-mqtt/propolis/sdk/go@" + v,
		"`sdk/go/" + v + "`",
		"ABI 1." + strconv.Itoa(abiMinor),
	} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md does not say %q", want)
		}
	}
}
