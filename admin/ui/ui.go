// Package ui is the web control center: a single page of plain HTML, CSS
// and JavaScript, embedded in the binary, that an operator opens in a
// browser to watch the broker and act on clients, retained messages,
// extensions and trace recordings. Every figure it shows and every action
// it takes goes through the admin API under /api/v1 (package admin), with
// the user's session cookie and CSRF token; the page itself holds no
// secret and decides nothing: it hides the buttons the user's permissions
// do not allow, and the API refuses them anyway.
//
// cmd/propolis mounts it on the operator endpoint's mux with Mount. The
// files are served as they are in static/ (no build step, no external
// resources), under a Content-Security-Policy that allows scripts, styles
// and requests from the endpoint itself only.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is the path under which the control center is served; "/"
// redirects to it.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every response of Handler: no inline
// script or style, no frame, no form posted elsewhere, and nothing
// fetched from another origin (no CDN, no external font); images (the
// icon) from the endpoint only.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed static
var static embed.FS

// Files returns the embedded files, rooted at static/ (index.html,
// app.css, js/...). Tests read them to check that no file loads anything
// from outside.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // static/ is embedded above: it exists
	}
	return sub
}

// Handler serves the control center: GET or HEAD of "/" redirects (302)
// to Prefix, and paths under Prefix serve the embedded files
// (Prefix itself serves index.html; another folder, such as /ui/js/, gets
// 404 rather than a listing of its files). Any other path gets 404 and any
// other method 405. Every response carries ContentSecurityPolicy and
// headers that keep the page out of frames and other sites' caches.
// Safe for concurrent use; it keeps no state.
func Handler() http.Handler {
	files := http.StripPrefix(Prefix, http.FileServerFS(Files()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		// The files change with the binary: the browser revalidates
		// rather than keeping an old page after an upgrade.
		h.Set("Cache-Control", "no-cache")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch {
		case r.URL.Path == "/":
			http.Redirect(w, r, Prefix, http.StatusFound)
		case r.URL.Path == Prefix:
			files.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, Prefix):
			if st, err := fs.Stat(Files(), strings.TrimPrefix(r.URL.Path, Prefix)); err == nil && st.IsDir() || strings.HasSuffix(r.URL.Path, "/") {
				http.NotFound(w, r) // no directory listing
				return
			}
			files.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// Mount adds Handler to mux for "/" (the redirect) and every path under
// Prefix. "/" is mounted as an exact path ("/{$}"), so other paths of
// the mux (/metrics, /api/v1/...) and unknown paths are left as they were.
func Mount(mux *http.ServeMux) {
	h := Handler()
	mux.Handle("/{$}", h)
	mux.Handle(Prefix, h)
}
