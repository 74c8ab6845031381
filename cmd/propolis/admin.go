package main

import (
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/admin/ui"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/opshttp"
	"github.com/propolis-mqtt/propolis/trace"
)

// The admin API of `serve` (package admin) on the operator's HTTP
// endpoint, and `propolis admin token`. serve calls, in order:
//
//  1. adminPolicy, right after loading the configuration: the users,
//     roles and tokens (reading admin.users_file), and the refusal to
//     start a non-loopback http.address with none of them;
//  2. mountAdmin from serveOps, once the broker and host exist: opens the
//     audit log in the data folder and adds /api/v1 and the control center
//     (/ui/, package admin/ui) to the endpoint's mux;
//  3. reloadAdmin on SIGHUP, before the broker takes the new file.

// adminPolicy builds the admin API's policy from cfg, or fails the start:
// on an error of the admin section, or when the endpoint would serve a
// non-loopback address in local mode (no users, no tokens).
func adminPolicy(cfg *config.Config) (*access.Policy, error) {
	p, err := access.Build(cfg.Admin, cfg.Source)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Source, err)
	}
	if err := checkLocal(cfg, p); err != nil {
		return nil, err
	}
	return p, nil
}

// checkLocal refuses local mode on an http.address that is not loopback.
func checkLocal(cfg *config.Config, p *access.Policy) error {
	if cfg.HTTP.Address == "" || !p.Local() || loopback(cfg.HTTP.Address) {
		return nil
	}
	return fmt.Errorf("config %s: admin.users: none configured (nor admin.tokens), and http.address %s is not a loopback address: "+
		"anyone reaching it could use the admin API; add admin.users (propolis passwd makes the hashes) or admin.tokens, "+
		"or bind http.address to 127.0.0.1", cfg.Source, cfg.HTTP.Address)
}

// loopback reports whether the host of addr (host:port) is a loopback
// name or address; an empty host (every interface) is not.
func loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// adminState is the admin API of a running serve.
type adminState struct {
	acc   *access.Access
	audit *access.Audit
	rec   *trace.Recorder
	where []any // the log attributes naming the control center, the API and the audit log
}

// logMode logs the admin API's mode with a's addresses: local mode (p has
// no user and no token) warns that anyone on this machine can use it. The
// start-up and a reload that enters local mode say the same.
func (a *adminState) logMode(p *access.Policy, log *slog.Logger) {
	if p.Local() {
		log.Warn("admin API in local mode: no admin.users or admin.tokens are configured, so anyone on this machine can use the admin API and the control center, as the user \"local\" with every permission",
			a.where...)
		return
	}
	log.Info("admin API", append(slices.Clone(a.where), "users", strings.Join(p.Users(), ","), "tokens", strings.Join(p.Tokens(), ","))...)
}

// mountAdmin opens the audit log (admin.audit_log, relative to data_dir),
// makes the Access over p and mounts the API on mux. It logs the mode:
// local mode warns that anyone on this machine can use the API.
func mountAdmin(mux *http.ServeMux, ops *opshttp.Server, cfg *config.Config, p *access.Policy, srv *broker.Server, h *host.Host,
	log *slog.Logger) (*adminState, error) {
	path := cfg.Admin.AuditLog
	if !filepath.IsAbs(path) {
		path = filepath.Join(cfg.DataDir, path)
	}
	audit, err := access.OpenAudit(path)
	if err != nil {
		return nil, err
	}
	// Trace recordings (<data>/traces), started and downloaded through the
	// API; the recorder is the broker's packet tap only while one runs.
	rec, err := trace.OpenDataDir(cfg.DataDir, cfg.Trace, log)
	if err != nil {
		_ = audit.Close()
		return nil, err
	}
	rec.Attach(srv)
	acc := access.New(p, access.Options{Addr: ops.Addr(), TLS: strings.HasPrefix(ops.URL(), "https:"), Audit: audit, Logger: log})
	admin.New(admin.Options{Broker: srv, Queries: srv, Host: h, Access: acc, Recorder: rec, ExtensionsDir: cfg.ExtensionsDir,
		Version: version, Logger: log}).Mount(mux)
	ui.Mount(mux) // the web control center at /ui/; / redirects there
	a := &adminState{acc: acc, audit: audit, rec: rec,
		where: []any{"control_center", ops.URL() + ui.Prefix, "api", ops.URL() + admin.Prefix, "audit_log", path}}
	a.logMode(p, log)
	return a, nil
}

// close stops the trace recordings ("broker stopped") and closes the
// audit log (nil: the endpoint was off).
func (a *adminState) close(log *slog.Logger) {
	if a == nil {
		return
	}
	if err := a.rec.Close(); err != nil {
		log.Error("trace recordings", "error", err)
	}
	if err := a.audit.Close(); err != nil {
		log.Error("audit log", "error", err)
	}
}

// reloadAdmin builds the policy of a reloaded configuration: an error
// refuses the whole reload. The returned function puts it in effect and
// logs each user and token added or removed, each user whose password
// changed, and a change of mode: entering local mode (the last user and
// token removed, on loopback) warns as the start-up does.
func (a *adminState) reloadAdmin(cfg *config.Config, log *slog.Logger) (func(), error) {
	if a == nil {
		return func() {}, nil
	}
	p, err := adminPolicy(cfg)
	if err != nil {
		return nil, err
	}
	return func() {
		old := a.acc.Policy()
		for _, d := range []struct {
			what     string
			old, new []string
		}{{"user", old.Users(), p.Users()}, {"token", old.Tokens(), p.Tokens()}} {
			for _, n := range d.new {
				if !slices.Contains(d.old, n) {
					log.Info("admin "+d.what+" added", d.what, n)
				}
			}
			for _, n := range d.old {
				if !slices.Contains(d.new, n) {
					log.Info("admin "+d.what+" removed", d.what, n)
				}
			}
		}
		for _, n := range p.PasswordsChanged(old) {
			log.Info("admin user password changed: the user's sessions end", "user", n)
		}
		a.acc.Use(p)
		switch {
		case p.Local() && !old.Local():
			a.logMode(p, log)
		case !p.Local() && old.Local():
			log.Info("admin API leaves local mode: every request needs a login, basic auth or a token",
				append(slices.Clone(a.where), "users", strings.Join(p.Users(), ","), "tokens", strings.Join(p.Tokens(), ","))...)
		}
	}, nil
}

// adminTokenCommand is `propolis admin token NAME`.
func adminTokenCommand() *command {
	return &command{
		name: "admin token", arg: "NAME", argWhat: "token name",
		summary: "make an API token for the admin API and print it with the admin.tokens entry to paste",
		about: `Prints a new random API token for scripts (Authorization: Bearer TOKEN on
/api/v1), and the admin.tokens entry to add to the configuration file: the
token's SHA-256, never the token itself. Give it the roles it needs, then
reload the broker (SIGHUP). The token is shown once; keep it secret.`,
		flags: func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
			role := fs.String("role", "viewer", "give the token the role `ROLE` in the printed entry")
			return func(name string, stdout, _ io.Writer) error {
				if name == "" || strings.ContainsAny(name, "\n\r\"") {
					return usagef("admin token", "token name %q: want a non-empty name on one line without quotes", name)
				}
				b := make([]byte, 32)
				if _, err := rand.Read(b); err != nil {
					return fmt.Errorf("admin token: %w", err)
				}
				tok := "ppt_" + base64.RawURLEncoding.EncodeToString(b)
				fmt.Fprintf(stdout, "token: %s\n\nadd to the configuration file (admin section), then reload:\n\nadmin:\n  tokens:\n    - name: %q\n      sha256: %s\n      roles: [%s]\n",
					tok, name, access.TokenDigest(tok), *role)
				return nil
			}
		},
	}
}
