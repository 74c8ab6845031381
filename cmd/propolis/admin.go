package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/admin/ui"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/cluster"
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
// non-loopback address in local mode (no users, no tokens). It returns nil
// when the admin API is off (admin.enabled: false, or http.address "").
func adminPolicy(cfg *config.Config) (*access.Policy, error) {
	if !cfg.Admin.Enabled || cfg.HTTP.Address == "" {
		return nil, nil
	}
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
		"anyone reaching it could use the admin API; add admin.users (propolis passwd makes the hashes) or admin.tokens "+
		"(propolis admin token NAME), or set admin.enabled: false to serve only /metrics, /healthz and /readyz there, "+
		"or bind http.address to 127.0.0.1", cfg.Source, cfg.HTTP.Address)
}

// openURL returns a URL of the endpoint ops that one can open: for a
// wildcard bind (0.0.0.0:9090, [::]:9090) 127.0.0.1 with its port, and whether it is such a bind (the endpoint then listens on every
// interface).
func openURL(ops *opshttp.Server) (url string, everyInterface bool) {
	h, port, err := net.SplitHostPort(ops.Addr())
	ip := net.ParseIP(h)
	if err != nil || ip == nil || !ip.IsUnspecified() {
		return ops.URL(), false
	}
	// Go listens on both IPv4 and IPv6 for either wildcard, so the IPv4
	// loopback address reaches it.
	scheme, _, _ := strings.Cut(ops.URL(), "://")
	return scheme + "://127.0.0.1:" + port, true
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
	// mu makes a SIGHUP's reload and the users file watcher take turns;
	// it guards cfg, the configuration whose admin section is in effect.
	mu  sync.Mutex
	cfg *config.Config
	// stop ends the users file watcher, done says it has ended.
	stop, done chan struct{}
	// where are the log attributes naming the control center, the API
	// and the audit log.
	where []any
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
	node *cluster.Node, log *slog.Logger) (*adminState, error) {
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
	o := admin.Options{Broker: adminBroker(srv, node), Queries: srv, Host: h, Access: acc, Recorder: rec, ExtensionsDir: cfg.ExtensionsDir,
		Version: version, Logger: log}
	if node != nil { // without a cluster section the cluster routes answer 404
		o.ClusterStatus = func() any { return node.Status() }
		o.ClusterMismatch = node.Mismatch
		o.ClusterNode = node.Name()
		o.ClusterSession = func(ctx context.Context, id string) (*admin.ReplicatedSession, error) {
			v, err := node.ReplicatedSession(ctx, id)
			if v == nil || err != nil {
				return nil, err
			}
			return &admin.ReplicatedSession{Node: v.Node, Online: v.Online, DisconnectedAt: v.DisconnectedAt, ExpiresAt: v.ExpiresAt,
				Expiry: v.Expiry, State: v.State}, nil
		}
		o.ClusterExtension = func(ctx context.Context, id string, disable bool, by string) (any, []string, error) {
			res, err := node.SetExtension(ctx, id, disable, by)
			return res, res.Failed(), err
		}
	}
	admin.New(o).Mount(mux)
	ui.Mount(mux) // the web control center at /ui/; / redirects there
	url, every := openURL(ops)
	where := []any{"control_center", url + ui.Prefix, "api", url + admin.Prefix}
	if every {
		where = append(where, "listening_on", "every interface ("+ops.Addr()+")")
	}
	where = append(where, "audit_log", path)
	a := &adminState{acc: acc, audit: audit, rec: rec, cfg: cfg, stop: make(chan struct{}), done: make(chan struct{}), where: where}
	a.logMode(p, log)
	if !p.Local() && cfg.HTTP.TLS == nil && !loopback(cfg.HTTP.Address) {
		log.Warn("admin API on a non-loopback http.address without http.tls: passwords, API tokens and session cookies travel in clear text; set http.tls (cert_file, key_file) or put a TLS proxy in front",
			"address", ops.Addr())
	}
	go a.watchUsersFile(log)
	return a, nil
}

// usersFileInterval is how often watchUsersFile looks at admin.users_file:
// a change applies once the file has read the same twice in a row, so
// within two intervals (a file being written is not taken half-way).
const usersFileInterval = time.Second

// watchUsersFile applies changes of admin.users_file until close, as
// `propolis passwd` makes them: every usersFileInterval it reads the file
// of the configuration in effect (cfg) and, when its bytes changed and
// have settled, rebuilds the policy as a SIGHUP does (applyLocked). A file
// that does not build (a bad line, a user without roles) keeps the users
// in effect and logs the error with FILE:LINE, once per version of the
// file.
func (a *adminState) watchUsersFile(log *slog.Logger) {
	defer close(a.done)
	t := time.NewTicker(usersFileInterval)
	defer t.Stop()
	var seen, pending [sha256.Size]byte // the version in effect (or refused), the one waiting to settle
	cfg := func() *config.Config {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.cfg
	}
	read := func() ([sha256.Size]byte, bool) {
		c := cfg()
		file := access.UsersFile(c.Admin, c.Source)
		if file == "" {
			return [sha256.Size]byte{}, false
		}
		data, err := os.ReadFile(file)
		if err != nil {
			data = []byte("unreadable: " + err.Error()) // a version of its own: Build reports it
		}
		return sha256.Sum256(data), true
	}
	seen, _ = read()
	pending = seen
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		sum, ok := read()
		if !ok || sum == seen {
			pending = sum
			continue
		}
		if sum != pending { // changed since the last look: wait for it to settle
			pending = sum
			continue
		}
		seen = sum
		// Built and applied in one turn, so that a SIGHUP's policy
		// applied meanwhile is never replaced by one of the older
		// configuration.
		a.mu.Lock()
		c := a.cfg
		file := access.UsersFile(c.Admin, c.Source)
		p, err := adminPolicy(c)
		if err != nil {
			a.mu.Unlock()
			log.Error("admin users file changed but not applied: the users in effect stay", "file", file, "error", err)
			continue
		}
		n := a.applyLocked(p, log)
		a.mu.Unlock()
		log.Info("admin users file applied", "file", file, "changes", n)
	}
}

// applyLocked puts p in effect, logging each user and token added or
// removed, each user whose password changed and each user or token whose
// roles changed, and returns how many such changes there were. a.mu is
// held.
func (a *adminState) applyLocked(p *access.Policy, log *slog.Logger) int {
	old := a.acc.Policy()
	n := 0
	for _, d := range []struct {
		what     string
		old, new []string
	}{{"user", old.Users(), p.Users()}, {"token", old.Tokens(), p.Tokens()}} {
		for _, name := range d.new {
			if !slices.Contains(d.old, name) {
				log.Info("admin "+d.what+" added", d.what, name)
				n++
			}
		}
		for _, name := range d.old {
			if !slices.Contains(d.new, name) {
				log.Info("admin "+d.what+" removed", d.what, name)
				n++
			}
		}
	}
	for _, name := range p.PasswordsChanged(old) {
		log.Info("admin user password changed: the user's sessions end", "user", name)
		n++
	}
	for _, name := range p.RolesChanged(old) {
		log.Info("admin user or token roles changed", "name", name, "roles", strings.Join(p.RolesOf(name), ","))
		n++
	}
	a.acc.Use(p)
	switch {
	case p.Local() && !old.Local():
		a.logMode(p, log)
	case !p.Local() && old.Local():
		log.Info("admin API leaves local mode: every request needs a login, basic auth or a token",
			append(slices.Clone(a.where), "users", strings.Join(p.Users(), ","), "tokens", strings.Join(p.Tokens(), ","))...)
	}
	return n
}

// close stops the trace recordings ("broker stopped") and closes the
// audit log (nil: the endpoint was off).
func (a *adminState) close(log *slog.Logger) {
	if a == nil {
		return
	}
	close(a.stop)
	<-a.done
	if err := a.rec.Close(); err != nil {
		log.Error("trace recordings", "error", err)
	}
	if err := a.audit.Close(); err != nil {
		log.Error("audit log", "error", err)
	}
}

// reloadAdmin builds the policy of a reloaded configuration: an error
// refuses the whole reload. The returned function puts it in effect
// (applyLocked: entering local mode warns as the start-up does) and
// returns the number of admin changes it logged.
func (a *adminState) reloadAdmin(cfg *config.Config, log *slog.Logger) (func() int, error) {
	if a == nil {
		return func() int { return 0 }, nil
	}
	p, err := adminPolicy(cfg)
	if err != nil {
		return nil, err
	}
	return func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.cfg = cfg
		return a.applyLocked(p, log)
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

// adminBroker is the broker the admin API acts on: srv, except that on a
// cluster node (node not nil) the operator's invalidate acts on every
// node (cluster.Node.InvalidateSession). The CLI's `clients invalidate`
// and the control center go through the API, so this is the one place.
func adminBroker(srv *broker.Server, node *cluster.Node) admin.Broker {
	if node == nil {
		return srv
	}
	return clusterBroker{Server: srv, node: node}
}

// clusterBroker is *broker.Server with InvalidateSession cluster-wide.
type clusterBroker struct {
	*broker.Server
	node *cluster.Node
}

// InvalidateSession ends the session of clientID on every node.
func (b clusterBroker) InvalidateSession(clientID string) error {
	return b.node.InvalidateSession(clientID)
}
