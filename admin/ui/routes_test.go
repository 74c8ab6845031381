package ui_test

import (
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/admin/ui"
)

// apiCall is a call of the control center's api.js in a script: the
// function (get, post, del, download) and the literal path, up to its query
// string or its end.
var apiCall = regexp.MustCompile("api\\.(get|post|del|download)\\(\\s*[\"`]([^\"`?]*)")

// pathParam is a path segment a script fills in (${api.seg(...)}).
var pathParam = regexp.MustCompile(`\$\{[^}]*\}`)

// specPath is a path of admin/openapi.yaml ("  /clients/{id}:"), with
// its methods on the lines below ("    get:").
var (
	specPath   = regexp.MustCompile(`^  (/[^:]*):\s*$`)
	specMethod = regexp.MustCompile(`^    (get|post|put|patch|delete):`)
)

// TestCallsDocumentedRoutes: every API route the pages call (method and
// path) is a route of admin/openapi.yaml, which the admin package checks
// against its handlers; a route renamed there fails here, naming the
// script and the call.
func TestCallsDocumentedRoutes(t *testing.T) {
	spec, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	path := ""
	for _, line := range strings.Split(string(spec), "\n") {
		if m := specPath.FindStringSubmatch(line); m != nil {
			path = m[1]
			continue
		}
		if strings.HasPrefix(line, "  ") || line == "" {
			if m := specMethod.FindStringSubmatch(line); m != nil && path != "" {
				documented[strings.ToUpper(m[1])+" "+path] = true
			}
			continue
		}
		path = "" // a top-level key ends paths:
	}
	if len(documented) < 10 {
		t.Fatalf("read only %d routes from ../openapi.yaml: %v", len(documented), documented)
	}
	methods := map[string]string{"get": "GET", "download": "GET", "post": "POST", "del": "DELETE"}
	files := ui.Files()
	calls := 0
	err = fs.WalkDir(files, "js", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(name, ".js") {
			return err
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		if n := strings.Count(string(b), "api.get(") + strings.Count(string(b), "api.post(") + strings.Count(string(b), "api.del(") +
			strings.Count(string(b), "api.download("); n != len(apiCall.FindAllString(string(b), -1)) {
			t.Errorf("%s: %d API calls, of which only %d start with a literal path: write each path as a literal", name, n, len(apiCall.FindAllString(string(b), -1)))
		}
		for _, m := range apiCall.FindAllStringSubmatch(string(b), -1) {
			calls++
			route := methods[m[1]] + " " + pathParam.ReplaceAllString(m[2], "{id}")
			if !documented[route] {
				t.Errorf("%s calls %s (%s), which admin/openapi.yaml does not document", name, route, m[0])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 15 {
		t.Fatalf("found only %d API calls in the scripts", calls)
	}
}
