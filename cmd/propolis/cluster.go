package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/host"
)

// The `propolis cluster status` command: the cluster as the running
// broker's node sees it, through its admin API (GET /api/v1/cluster), as
// the control center shows it.

// clusterStatusCommand is `propolis cluster status`.
func clusterStatusCommand() *command {
	return &command{
		name:    "cluster status",
		summary: "print the cluster a running broker is a node of: nodes, versions, stress, streams (admin API)",
		about: `Prints the cluster as the running broker's node sees it: whether it is
healthy and why not, the replication factor in force (cluster.replicas
capped by the number of nodes), each node with its Propolis and cluster
protocol versions, stress level, clients, extensions and whether it is
alive, each JetStream stream and key-value bucket with its replicas,
leader and health, each cluster feature gated on the protocol version
(on, or off and which alive nodes hold it back), and how the alive nodes
differ (a rolling upgrade in progress shows there). --json prints the API's JSON instead. A broker
without a cluster section answers that it runs without one.` + fmt.Sprintf(clientsAbout, "broker.view"),
		flags: func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
			af := declareAdminFlags(fs)
			asJSON := fs.Bool("json", false, "print the API's JSON")
			return func(_ string, stdout, _ io.Writer) error {
				c, err := af.client()
				if err != nil {
					return err
				}
				return showCluster(c, *asJSON, stdout)
			}
		},
	}
}

// showCluster prints GET /api/v1/cluster.
func showCluster(c *adminClient, asJSON bool, w io.Writer) error {
	var st cluster.Status
	var raw []byte
	if err := c.get("/cluster", &st, &raw); err != nil {
		return err
	}
	if asJSON {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		return printJSON(w, v)
	}
	health := "healthy"
	if !st.Healthy {
		health = "UNHEALTHY"
	}
	fmt.Fprintf(w, "cluster %s, seen from node %s: %s\n", printable(st.Cluster), printable(st.Node), health)
	for _, p := range st.Problems {
		fmt.Fprintf(w, "  problem: %s\n", printableText(p))
	}
	fmt.Fprintf(w, "replication factor in force: %d (configured %d)\n", st.Replicas, st.ConfiguredReplicas)
	if st.Dropped > 0 {
		fmt.Fprintf(w, "messages of other nodes dropped here (too slow): %d\n", st.Dropped)
	}
	fmt.Fprintf(w, "cluster protocol of this node: %d\n", st.Protocol)

	fmt.Fprintf(w, "\nnodes (%d):\n", len(st.Nodes))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tSTATE\tVERSION\tPROTOCOL\tSTRESS\tCLIENTS\tLAST SEEN\tEXTENSIONS")
	for _, n := range st.Nodes {
		state := n.State
		exts := make([]string, len(n.Extensions))
		for i, x := range n.Extensions {
			exts[i] = fmt.Sprintf("%s@%s (%s)", printable(x.ID), printable(x.Version), x.State)
		}
		protocol, stress, clients, seen := "-", "-", "-", "-"
		if n.Registered {
			protocol, stress, clients = fmt.Sprint(n.Protocol), fmt.Sprintf("%.1f", n.Stress), fmt.Sprint(n.Clients)
			seen = timeText(&n.LastSeen)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(n.Name), state, orDash(printable(n.Version)), protocol, stress,
			clients, seen, orDash(strings.Join(exts, ", ")))
	}
	tw.Flush()

	fmt.Fprintf(w, "\nstreams and buckets (%d):\n", len(st.Streams))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tKIND\tREPLICAS\tLEADER\tMESSAGES\tBYTES\tHEALTH")
	for _, s := range st.Streams {
		health := s.Problem
		if health == "" {
			health = "ok"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d\t%d\t%s\n", s.Name, s.Kind, s.Replicas, orDash(s.Leader), s.Messages, s.Bytes, health)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nfeatures (%d, on once every alive node speaks their protocol):\n", len(st.Features))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  FEATURE\tPROTOCOL\tSTATE\tHELD BACK BY")
	for _, f := range st.Features {
		state, by := "on", "-"
		if !f.On {
			names := make([]string, len(f.HeldBackBy))
			for i, n := range f.HeldBackBy {
				names[i] = printable(n)
			}
			state, by = "off", strings.Join(names, ", ")
			if by == "" {
				by = "(this node has not read the node registry yet)"
			}
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\n", printable(f.Name), f.Since, state, by)
	}
	tw.Flush()

	if len(st.Mismatch) > 0 {
		fmt.Fprintf(w, "\nnodes differ (%d):\n", len(st.Mismatch))
		for _, m := range st.Mismatch {
			fmt.Fprintf(w, "  %s\n", printableText(m))
		}
	}
	return nil
}

// startCluster starts the cluster node of cfg's cluster section, or
// returns nil without one. The registry reads the host's extensions and,
// once broker.New has stored it in srv, the broker's stress level and
// client count; before that it reports 0 for both.
func startCluster(ctx context.Context, cfg *config.Config, h *host.Host, srv *atomic.Pointer[broker.Server], log *slog.Logger) (*cluster.Node, error) {
	if cfg.Cluster == nil {
		return nil, nil
	}
	return cluster.Start(ctx, cluster.Options{
		DataDir: cfg.DataDir,
		Config:  cfg.Cluster,
		Version: version,
		Logger:  log,
		Stress: func() float64 {
			if s := srv.Load(); s != nil {
				return s.Overload().Level
			}
			return 0
		},
		Clients: func() int {
			if s := srv.Load(); s != nil {
				return int(s.Levels().ClientsConnected)
			}
			return 0
		},
		Extensions: func() []cluster.ExtensionInfo { return clusterExtensions(h.Status()) },
		// What `propolis extensions enable|disable` does, on this node's
		// folder, when any node asks (--cluster, the admin API).
		Extension: func(id string, disable bool) (string, error) {
			return nodeExtensionAction(cfg.ExtensionsDir, id, disable)
		},
		MaxPacketSize: int64(cfg.MQTT.MaxPacketSize),
	})
}

// clusterExtensions is what the registry reports of the host's extensions.
func clusterExtensions(sts []host.Status) []cluster.ExtensionInfo {
	out := make([]cluster.ExtensionInfo, len(sts))
	for i, st := range sts {
		out[i] = cluster.ExtensionInfo{ID: st.ID, Version: st.Version, State: string(st.State)}
	}
	return out
}

// routingWaitLog is how often startRouting logs that it still waits.
const routingWaitLog = 30 * time.Second

// startRouting calls node.StartRouting (each call bounded by the router's
// own setup timeout) until it succeeds, so that a node started before its
// peers waits for them instead of exiting. While JetStream is not current
// or an attempt failed, it logs what it waits for at once and then every
// routingWaitLog. It returns false, at once, when ctx ends first (SIGINT
// or SIGTERM); the attempt in flight then ends when the node closes.
func startRouting(ctx context.Context, node *cluster.Node, seeds []string, log *slog.Logger) bool {
	var logged time.Time
	var last error
	for {
		if time.Since(logged) >= routingWaitLog && (last != nil || !node.JetStreamCurrent()) {
			logged = time.Now()
			why := "no jetstream quorum yet"
			if last != nil {
				why = last.Error()
			}
			log.Warn("cluster routing waits for the other nodes; clients are not accepted until it starts",
				"node", node.Name(), "seeds", seeds, "error", why)
		}
		done := make(chan error, 1)
		go func() { done <- node.StartRouting() }()
		select {
		case last = <-done:
		case <-ctx.Done():
			return false
		}
		if last == nil {
			if !logged.IsZero() {
				log.Info("cluster routing started", "node", node.Name())
			}
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// joinTimeout bounds the retained replay of Join.
const joinTimeout = 60 * time.Second

// joinCluster runs node.Join within joinTimeout (or until ctx ends).
func joinCluster(ctx context.Context, node *cluster.Node) error {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	if err := node.Join(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: the replay of the cluster's retained messages (stream %s) did not end within %s", err,
				cluster.RetainedStream, joinTimeout)
		}
		return err
	}
	return nil
}
