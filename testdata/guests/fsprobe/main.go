// Command fsprobe reports what the file system the host gives it allows:
// its start always refuses, with the outcome of each probe as the reason,
// for the host's test of the manifest's files key to read in the status.
package main

import (
	"errors"
	"os"
	"strings"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, Authenticate: func(*propolis.Connect) propolis.AuthResult {
		return propolis.AuthResult{Verdict: propolis.Allow()}
	}})
}

func main() {}

// start probes reading its own manifest, writing, removing and renaming
// in its folder, and reading outside it, directly or through symbolic
// links.
func start(propolis.StartInfo) error {
	var out []string
	probe := func(name string, err error) {
		if err == nil {
			out = append(out, name+" ok")
		} else {
			out = append(out, name+" failed")
		}
	}
	_, err := os.ReadFile("/extension/propolis-extension.yaml")
	probe("read", err)
	probe("write", os.WriteFile("/extension/new", []byte("x"), 0o644))
	probe("append", appendTo("/extension/propolis-extension.yaml"))
	probe("remove", os.Remove("/extension/propolis-extension.yaml"))
	probe("rename", os.Rename("/extension/propolis-extension.yaml", "/extension/moved"))
	_, err = os.ReadFile("/extension/../../etc/hostname")
	probe("escape", err)
	_, err = os.ReadFile("/etc/hostname")
	probe("outside", err)
	// The host's test links "inlink" to the manifest and "outlink" to
	// the host's root directory.
	_, err = os.ReadFile("/extension/inlink")
	probe("inlink", err)
	_, err = os.ReadFile("/extension/outlink/etc/hostname")
	probe("outlink", err)
	return errors.New(strings.Join(out, ", "))
}

// appendTo opens a file for writing and writes to it.
func appendTo(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("x")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
