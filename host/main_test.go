package host

import (
	"os"
	"testing"
)

// TestMain removes the folders the tests built guests into (buildGuest,
// rustBuild, sdkBuilt) once every test has run: ~70 MB a run otherwise
// left in the system's temporary folder.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{guestCache.dir, sdkBuilds.dir} {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}
