package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/host/conformance"
)

// statusFile is where a running broker keeps its extensions' status.
func statusFile(cfg *config.Config) string {
	return filepath.Join(cfg.DataDir, "extensions-status.json")
}

// hostOptions is the extension host's options that come from the
// configuration.
func hostOptions(cfg *config.Config) host.Options {
	// The data folder is one broker's (its store's lock): the broker
	// prunes its cache.
	return host.Options{Dir: cfg.ExtensionsDir, CacheDir: filepath.Join(cfg.DataDir, "wasm-cache"), PruneCache: true,
		ServiceRate: float64(cfg.ExtensionServices.Rate), ServiceBurst: cfg.ExtensionServices.Burst}
}

// listExtensions prints every extension folder: from the running broker's
// status file when a broker is running, else from an offline check.
func listExtensions(cfg *config.Config, w io.Writer) error {
	r, err := host.StatusReport(context.Background(), cfg.ExtensionsDir, statusFile(cfg), hostOptions(cfg))
	if err != nil {
		return err
	}
	if r.Live {
		fmt.Fprintf(w, "broker running (pid %d), extensions in %s\n", r.PID, cfg.ExtensionsDir)
	} else {
		fmt.Fprintf(w, "no broker running (no live status in %s); each extension in %s loaded once in a throwaway host\n", cfg.DataDir, cfg.ExtensionsDir)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVERSION\tSTATE\tPRIORITY\tCALLBACKS\tINSTANCES\tSERVICES\tSERVICE LIMIT\tREASON")
	for _, s := range r.Extensions {
		cbs := strings.Join(s.Callbacks, ",")
		if cbs == "" {
			cbs = "-"
		}
		for _, f := range []struct {
			which   string
			filters []string
		}{{"inbound", s.InterceptInboundFilters}, {"outbound", s.InterceptOutboundFilters}} {
			if len(f.filters) > 0 {
				cbs += fmt.Sprintf(" (intercept %s only %s)", f.which, strings.Join(f.filters, ","))
			}
		}
		if len(s.InterceptOutboundClients) > 0 {
			cbs += fmt.Sprintf(" (intercept outbound only to clients %s)", strings.Join(s.InterceptOutboundClients, ","))
		}
		if s.Tick > 0 {
			cbs += fmt.Sprintf(" (tick every %v, %d skipped)", s.Tick, s.TicksSkipped)
		}
		instances := "-" // known while a broker runs it
		if s.Instances > 0 {
			instances = strconv.Itoa(s.Instances)
			if s.AuthCacheEntries > 0 || s.AuthCacheHits > 0 {
				instances += fmt.Sprintf(" (auth cache: %d answers, %d hits)", s.AuthCacheEntries, s.AuthCacheHits)
			}
			if s.AuthorizeCacheHits > 0 {
				instances += fmt.Sprintf(" (authorize cache: %d hits)", s.AuthorizeCacheHits)
			}
		}
		version := s.Version
		if version == "" {
			version = "-"
		}
		// A reason listing several problems (a manifest's) spans lines: one
		// row each extension.
		reason := strings.ReplaceAll(s.Reason, "\n", "; ")
		services, limit := "-", "-"
		if len(s.Services) > 0 {
			services = strings.Join(s.Services, ",")
		}
		if len(s.HTTPHosts) > 0 {
			services += " (http to " + strings.Join(s.HTTPHosts, ",") + ")"
		}
		if s.ServiceBurst > 0 { // a failed folder has none
			limit = fmt.Sprintf("%s/s burst %d", strconv.FormatFloat(s.ServiceRate, 'g', -1, 64), s.ServiceBurst)
			if rl, np := s.Refused("RATE_LIMITED"), s.Refused("NOT_PERMITTED"); rl > 0 || np > 0 {
				limit += fmt.Sprintf(" (refused: %d rate-limited, %d not permitted)", rl, np)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, version, s.State, strconv.Itoa(s.Priority), cbs, instances, services, limit, reason)
	}
	if len(r.Extensions) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	return tw.Flush()
}

// setDisabled disables or enables an extension (extensionAction) and
// prints what it did.
func setDisabled(dir, id string, disable bool, w io.Writer) error {
	msg, err := extensionAction(dir, id, disable)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, msg)
	return nil
}

// extensionAction disables or enables extension id in the extensions
// folder dir (host.Disable, host.Enable) and says what it did: the one
// function of `propolis extensions enable|disable`, and what a cluster
// node runs on its own folder when any node asks (cluster.Options.Extension).
func extensionAction(dir, id string, disable bool) (string, error) {
	if disable {
		marker, err := host.Disable(dir, id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s disabled (%s created); a running broker stops it within 2 seconds", id, marker), nil
	}
	marker, err := host.Enable(dir, id)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s enabled (%s removed); a running broker starts it within 2 seconds", id, marker), nil
}

// nodeExtensionAction is extensionAction as a cluster node runs it when
// any node asks (cluster.Options.Extension): its answer goes to the admin
// API of the asking node, so it names the extension and never a path on
// this machine (the admin API's rule, as its local enable and disable).
func nodeExtensionAction(dir, id string, disable bool) (string, error) {
	verb, does := "enabled", "starts"
	if disable {
		verb, does = "disabled", "stops"
	}
	_, err := extensionAction(dir, id, disable)
	var pe *fs.PathError
	switch {
	case errors.Is(err, host.ErrNoExtension):
		return "", fmt.Errorf("no extension %q in the node's extensions folder", id)
	case errors.As(err, &pe):
		return "", fmt.Errorf("extension %q not %s: the node's extensions folder: %s %s: %v", id, verb, pe.Op, host.DisabledFile, pe.Err)
	case err != nil:
		return "", err // an invalid id, named
	}
	return fmt.Sprintf("%s %s; the node %s it within 2 seconds", id, verb, does), nil
}

// setClusterDisabled disables or enables extension id on every node of
// the cluster the broker behind c is a node of (POST
// /api/v1/cluster/extensions/{id}/disable or enable) and prints each
// node's result, then the nodes not asked because they are not alive
// (cluster.ControlResult.NotAsked); it fails naming the nodes asked
// where it was not carried out. Nodes not asked do not make it fail:
// the exit status is 0 when every node asked carried it out.
func setClusterDisabled(c *adminClient, id string, disable bool, w io.Writer) error {
	verb := "enable"
	if disable {
		verb = "disable"
	}
	var res cluster.ControlResult
	if err := c.postFor("/cluster/extensions/"+url.PathEscape(id)+"/"+verb, nil, &res); err != nil {
		return err
	}
	summary := fmt.Sprintf("%s %sd on %d of %d nodes asked", id, verb, len(res.Nodes)-len(res.Failed()), len(res.Nodes))
	if k := len(res.NotAsked); k > 0 {
		summary += fmt.Sprintf("; %d not asked (not alive), not changed there", k)
	}
	fmt.Fprintf(w, "%s:\n", summary)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range res.Nodes {
		what, result := "ok", n.Message
		if !n.OK {
			what, result = "FAILED", n.Error
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", printable(n.Node), what, printableText(result))
	}
	for _, n := range res.NotAsked {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", printable(n.Node), "not asked", printableText(n.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed := res.Failed(); len(failed) > 0 {
		return fmt.Errorf("extensions %s %s --cluster: not carried out on %s", verb, id, nodeList(failed))
	}
	return nil
}

// nodeList names nodes for a message: "node a" or "nodes a, b".
func nodeList(names []string) string {
	if len(names) == 1 {
		return "node " + names[0]
	}
	return "nodes " + strings.Join(names, ", ")
}

// compileExtensions fills the extensions folder's shipped compilation cache
// (host.ShippedCache), so that a broker started on a fresh data folder does
// not wait for the compiler; `make build` runs it for the bundled
// extensions.
func compileExtensions(dir string, w io.Writer) error {
	cache := filepath.Join(dir, host.ShippedCache)
	ids, err := host.Precompile(context.Background(), dir, cache)
	for _, id := range ids {
		fmt.Fprintf(w, "compiled %s into %s\n", id, cache)
	}
	if err != nil {
		return fmt.Errorf("extensions compile: %w", err)
	}
	return nil
}

// checkFlags declares the flags of "extensions check" (the conformance
// kit, host/conformance) and returns the function running it.
func checkFlags(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
	format := fs.String("format", "text", "write the report as `FORMAT`: text, junit (JUnit XML) or json")
	seed := optionalFlag(fs, "seed", "a random seed, printed in the report", "generate the inputs from seed `N`, to replay a run")
	calls := fs.Int("calls", conformance.DefaultCalls, "drive each callback with `N` generated inputs")
	mqtt := fs.Bool("mqtt", false, "also run the extension in an embedded broker on a loopback port with real MQTT 3.1.1 and 5 clients")
	user := optionalFlag(fs, "username", "kit", "with --mqtt, connect as `USER`, so that an authenticating extension lets the clients in")
	pass := optionalFlag(fs, "password", "kit-password", "with --mqtt, the clients' `PASSWORD`")
	cache := optionalFlag(fs, "cache", "none: each module is compiled anew", "keep the compiled code in `DIR` between runs")
	network := fs.Bool("network", false, "let the extension's http_request reach the hosts its manifest allows (without it, every request fails at once, as with no network)")
	verbose := fs.Bool("verbose", false, "print the extension's and the host's logs on stderr")
	return func(path string, stdout, stderr io.Writer) error {
		if !slices.Contains(conformance.Formats, *format) {
			return usagef("extensions check", "--format %q: want %s", *format, strings.Join(conformance.Formats, ", "))
		}
		if *calls < 1 {
			return usagef("extensions check", "--calls %d: want at least 1", *calls)
		}
		opts := conformance.Options{Seed: rand.Uint64() >> 1, Calls: *calls, MQTT: *mqtt, CacheDir: cache.value,
			Username: user.value, Password: pass.value, Network: *network}
		if seed.value != "" {
			n, err := strconv.ParseUint(seed.value, 10, 64)
			if err != nil {
				return usagef("extensions check", "--seed %q: want a non-negative integer", seed.value)
			}
			opts.Seed = n
		}
		if *verbose {
			opts.Logger = slog.New(slog.NewTextHandler(stderr, nil))
		}
		r, err := conformance.Check(context.Background(), path, opts)
		if err != nil {
			return fmt.Errorf("extensions check: %w", err)
		}
		if err := r.Write(stdout, *format); err != nil {
			return err
		}
		if !r.Passed() {
			return fmt.Errorf("extensions check: %s failed %d of %d checks (replay: %s)", path, r.Failed(), len(r.Results), r.Replay())
		}
		return nil
	}
}
