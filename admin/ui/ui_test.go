package ui_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/admin/ui"
)

// TestHandler: "/" redirects to /ui/, /ui/ serves the page and its files
// with the Content-Security-Policy, other paths get 404 and other methods
// 405; mounted on a mux, it leaves the mux's other paths alone.
func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") })
	ui.Mount(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	for _, tc := range []struct {
		name, method, path string
		code               int
		contentType        string
		body               string
		location           string
		csp                bool
	}{
		{name: "root redirects", method: "GET", path: "/", code: 302, location: "/ui/", csp: true},
		{name: "page", method: "GET", path: "/ui/", code: 200, contentType: "text/html; charset=utf-8", body: `<script type="module" src="js/app.js">`, csp: true},
		{name: "script", method: "GET", path: "/ui/js/app.js", code: 200, contentType: "text/javascript; charset=utf-8", body: "function route", csp: true},
		{name: "style", method: "GET", path: "/ui/app.css", code: 200, contentType: "text/css; charset=utf-8", body: ".warnings", csp: true},
		{name: "head", method: "HEAD", path: "/ui/", code: 200, csp: true},
		{name: "missing file", method: "GET", path: "/ui/nothing.js", code: 404, csp: true},
		{name: "folder: no listing", method: "GET", path: "/ui/js/", code: 404, csp: true},
		{name: "folder without slash: no listing", method: "GET", path: "/ui/js", code: 404, csp: true},
		{name: "post refused", method: "POST", path: "/ui/", code: 405, csp: true},
		{name: "other path of the mux", method: "GET", path: "/metrics", code: 200, body: "metrics"},
		{name: "unknown path", method: "GET", path: "/nothing", code: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d, want %d\n%s", tc.method, tc.path, resp.StatusCode, tc.code, b)
			}
			if tc.contentType != "" && resp.Header.Get("Content-Type") != tc.contentType {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.contentType)
			}
			if !strings.Contains(string(b), tc.body) {
				t.Errorf("body does not contain %q:\n%.400s", tc.body, b)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if got := resp.Header.Get("Content-Security-Policy"); tc.csp && got != ui.ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy %q, want %q", got, ui.ContentSecurityPolicy)
			}
			if tc.csp && resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("X-Frame-Options %q, want DENY", resp.Header.Get("X-Frame-Options"))
			}
		})
	}
}

// Patterns the static files must not contain: an inline script or event
// handler or style (the CSP refuses them, so they would silently not
// work), markup built from strings (every text from the broker must stay
// text), and anything loaded from another origin.
var forbidden = []struct {
	what string
	re   *regexp.Regexp
	ext  string // only files with this extension; "" for all
}{
	{"an inline <script> (no src)", regexp.MustCompile(`<script(?:\s+type="[^"]*")?\s*>`), ".html"},
	{"an inline event handler attribute", regexp.MustCompile(`\son[a-z]+\s*=\s*["']`), ".html"},
	{"an inline style attribute", regexp.MustCompile(`\sstyle\s*=`), ".html"},
	{"innerHTML or outerHTML", regexp.MustCompile(`(?:inner|outer)HTML|insertAdjacentHTML|document\.write`), ".js"},
	{"eval or new Function", regexp.MustCompile(`\beval\(|new Function\(`), ".js"},
	{"an inline style set from script", regexp.MustCompile(`setAttribute\(\s*["']style`), ".js"},
	{"an absolute URL (another origin)", regexp.MustCompile(`(?:https?:)?//[a-zA-Z0-9.-]+\.[a-z]{2,}[/"' )]`), ""},
	{"a CSS import or font", regexp.MustCompile(`@import|@font-face|url\(`), ".css"},
}

// TestStaticFilesSelfContained reads every embedded file and fails on any
// forbidden pattern, naming the file and line; and checks that every
// module a script imports and every file the page links exists.
func TestStaticFilesSelfContained(t *testing.T) {
	files := ui.Files()
	imports := regexp.MustCompile(`(?:import\s[^"']*|from\s)["'](\./[^"']+)["']`)
	links := regexp.MustCompile(`(?:src|href)="([^"#][^"]*)"`)
	n := 0
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, f := range forbidden {
				if f.ext != "" && !strings.HasSuffix(path, f.ext) {
					continue
				}
				// the SVG icon names its XML namespace, which is not a fetch
				if strings.HasSuffix(path, ".svg") && strings.Contains(line, `xmlns="http://www.w3.org/2000/svg"`) {
					continue
				}
				if f.re.MatchString(line) {
					t.Errorf("%s:%d: %s: %s", path, i+1, f.what, strings.TrimSpace(line))
				}
			}
		}
		dir := path[:strings.LastIndex(path, "/")+1]
		if strings.HasSuffix(path, ".js") {
			for _, m := range imports.FindAllStringSubmatch(string(b), -1) {
				if _, err := fs.Stat(files, dir+strings.TrimPrefix(m[1], "./")); err != nil {
					t.Errorf("%s imports %s, which is not embedded", path, m[1])
				}
			}
		}
		if strings.HasSuffix(path, ".html") {
			for _, m := range links.FindAllStringSubmatch(string(b), -1) {
				if _, err := fs.Stat(files, dir+m[1]); err != nil {
					t.Errorf("%s links %s, which is not embedded", path, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d embedded files", n)
	}
}
