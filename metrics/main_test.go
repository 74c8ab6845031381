package metrics

import (
	"os"
	"testing"
)

// TestMain removes the folder the tests built guests into (guest) once
// every test has run, rather than leave it in the system's temporary
// folder.
func TestMain(m *testing.M) {
	code := m.Run()
	if guests.dir != "" {
		_ = os.RemoveAll(guests.dir)
	}
	os.Exit(code)
}
