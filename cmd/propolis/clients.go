package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/propolis-mqtt/propolis/admin"
)

// The `propolis clients` commands: list, show, disconnect and invalidate
// a running broker's clients through its admin API (adminclient.go), as
// the control center does.

// clientsListPage is the page size of clients list; it follows the API's
// pages (next) until the last.
const clientsListPage = 1000

// clientsAbout is what every clients command's help says about reaching
// the broker.
const clientsAbout = `

It calls the admin API of the running broker (--url, else the
http.address of --config) with the API token in --token-file or in
$` + tokenEnv + ` (from 'propolis admin token'), or with none when
the broker runs in local mode (no admin users or tokens). The token's
role needs the permission %s.`

// clientsCommands are the commands of the clients group.
func clientsCommands() []*command {
	return []*command{
		{
			name:    "clients list",
			summary: "list a running broker's clients and sessions (admin API)",
			about: `Prints each session of the running broker: client id, state (connected or
offline), user name, listener, remote address, MQTT version, and since
when it is connected or offline, sorted by client id. --prefix and --state
narrow the list; --json prints the API's JSON instead.` + fmt.Sprintf(clientsAbout, "clients.view"),
			flags: func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
				af := declareAdminFlags(fs)
				prefix := optionalFlag(fs, "prefix", "every client id", "list only client ids starting with `P`")
				state := optionalFlag(fs, "state", "connected and offline", "list only the clients in `STATE`: connected or offline")
				asJSON := fs.Bool("json", false, "print the API's JSON")
				return func(_ string, stdout, _ io.Writer) error {
					if st := state.value; st != "" && st != "connected" && st != "offline" {
						return usagef("clients list", "--state %q: want connected or offline", st)
					}
					c, err := af.client()
					if err != nil {
						return err
					}
					return listClients(c, prefix.value, state.value, *asJSON, stdout)
				}
			},
		},
		{
			name: "clients show", arg: "ID", argWhat: "client id",
			summary: "print a running broker's session of a client (admin API)",
			about: `Prints the session of the client ID: state, user name, protocol, remote
address, listener, keepalive, session expiry, in-flight window, queued
messages and their limit, drop strategy, the extension that authenticated
it, its subscriptions and session attributes. --json prints the API's
JSON instead.` + fmt.Sprintf(clientsAbout, "clients.view"),
			flags: func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
				af := declareAdminFlags(fs)
				asJSON := fs.Bool("json", false, "print the API's JSON")
				return func(id string, stdout, _ io.Writer) error {
					c, err := af.client()
					if err != nil {
						return err
					}
					return showClient(c, id, *asJSON, stdout)
				}
			},
		},
		{
			name: "clients disconnect", arg: "ID", argWhat: "client id",
			summary: "disconnect a client of a running broker, optionally without its will (admin API)",
			about: `Disconnects the client ID (MQTT 5: DISCONNECT with reason code 0x98,
administrative action, and --reason as its reason string). Its will is
published as for any lost connection, unless --prevent-will. The session
stays, as the client's session expiry says; 'clients invalidate' removes
it. The action is written to the broker's audit log.` + fmt.Sprintf(clientsAbout, "clients.disconnect"),
			flags: func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
				af := declareAdminFlags(fs)
				preventWill := fs.Bool("prevent-will", false, "do not publish the client's will")
				reason := optionalFlag(fs, "reason", "none", "send `TEXT` as the reason string to an MQTT 5 client (and to the audit log)")
				return func(id string, stdout, _ io.Writer) error {
					c, err := af.client()
					if err != nil {
						return err
					}
					body := map[string]any{"prevent_will": *preventWill}
					if reason.value != "" {
						body["reason"] = reason.value
					}
					if err := c.post("/clients/"+url.PathEscape(id)+"/disconnect", body); err != nil {
						return err
					}
					will := "its will, if any, is published"
					if *preventWill {
						will = "its will is not published"
					}
					fmt.Fprintf(stdout, "client %q disconnected; %s\n", id, will)
					return nil
				}
			},
		},
		{
			name: "clients invalidate", arg: "ID", argWhat: "client id",
			summary: "remove a client's session from a running broker, disconnecting it (admin API)",
			about: `Removes the session of the client ID: its subscriptions and queued messages
are deleted and a connected client is disconnected; it starts afresh at
its next connection. The action is written to the broker's audit log.` + fmt.Sprintf(clientsAbout, "sessions.invalidate"),
			flags: func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
				af := declareAdminFlags(fs)
				return func(id string, stdout, _ io.Writer) error {
					c, err := af.client()
					if err != nil {
						return err
					}
					if err := c.post("/clients/"+url.PathEscape(id)+"/invalidate", nil); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "session of client %q invalidated\n", id)
					return nil
				}
			},
		},
	}
}

// listClients prints the clients matching prefix and state ("" for
// both), every page of the API's answer; asJSON prints them as one
// answer of the API ({"clients", "next": "", "total"}).
func listClients(c *adminClient, prefix, state string, asJSON bool, w io.Writer) error {
	var all []admin.ClientSummary
	total, after := 0, ""
	for {
		q := url.Values{"limit": {fmt.Sprint(clientsListPage)}}
		if prefix != "" {
			q.Set("prefix", prefix)
		}
		if state != "" {
			q.Set("state", state)
		}
		if after != "" {
			q.Set("after", after)
		}
		var page admin.ClientList
		if err := c.get("/clients?"+q.Encode(), &page, nil); err != nil {
			return err
		}
		all, total = append(all, page.Clients...), page.Total
		if page.Next == "" || len(page.Clients) == 0 {
			break
		}
		after = page.Next
	}
	if all == nil {
		all = []admin.ClientSummary{}
	}
	if asJSON {
		return printJSON(w, admin.ClientList{Clients: all, Total: total})
	}
	if len(all) == 0 {
		fmt.Fprintln(w, "no client matches")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tSTATE\tUSER\tLISTENER\tREMOTE\tMQTT\tSINCE")
	for _, r := range all {
		state, since := "offline", r.OfflineSince
		if r.Connected {
			state, since = "connected", r.ConnectedSince
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(r.ClientID), state, orDash(printable(r.Username)), orDash(r.Listener),
			orDash(r.RemoteAddress), protocolName(r.ProtocolVersion), timeText(since))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d of %d sessions\n", len(all), total)
	return nil
}

// showClient prints the session of id.
func showClient(c *adminClient, id string, asJSON bool, w io.Writer) error {
	var d admin.ClientDetail
	var raw []byte
	if err := c.get("/clients/"+url.PathEscape(id), &d, &raw); err != nil {
		return err
	}
	if asJSON {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		return printJSON(w, v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("client", printable(d.ClientID))
	switch {
	case d.ClusterState == admin.HeldByCluster:
		line("state", d.ClusterState+", disconnected at "+timeText(d.OfflineSince))
		line("last node", printable(d.LastNode))
	case d.ClusterState != "":
		line("state", printableText(d.ClusterState)+" (this node has no session of the id)")
	case d.Connected:
		line("state", "connected since "+timeText(d.ConnectedSince))
	default:
		line("state", "offline since "+timeText(d.OfflineSince))
	}
	line("user", orDash(printable(d.Username)))
	line("protocol", "MQTT "+protocolName(d.ProtocolVersion))
	line("remote address", orDash(d.RemoteAddress))
	line("listener", orDash(d.Listener))
	expiry := fmt.Sprintf("%d s", d.SessionExpiry)
	if d.ExpiresAt != nil {
		expiry += ", expires at " + timeText(d.ExpiresAt)
	}
	line("session expiry", expiry)
	if d.ClusterState == "" { // a replicated record does not hold what follows
		if d.KeepAlive == nil {
			line("keepalive", "unknown until the client reconnects (session restored at start-up)")
		} else {
			line("keepalive", fmt.Sprintf("%d s", *d.KeepAlive))
		}
		line("receive maximum", fmt.Sprint(d.ReceiveMaximum))
		window := fmt.Sprint(d.InflightWindow)
		if d.InflightWindow == 0 {
			window = "no limit"
		}
		line("in-flight window", window)
		line("queued", fmt.Sprintf("%d of at most %d", d.Queued, d.MaxQueued))
		line("when the queue is full", orDash(d.QueueFullPolicy))
		line("authenticated by", orDash(d.AuthenticatedBy))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nsubscriptions (%d):\n", len(d.Subscriptions))
	if len(d.Subscriptions) > 0 {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FILTER\tQOS\tNO LOCAL\tRETAIN AS PUBLISHED\tRETAIN HANDLING\tIDENTIFIER")
		for _, s := range d.Subscriptions {
			fmt.Fprintf(tw, "  %s\t%d\t%t\t%t\t%d\t%d\n", printable(s.Filter), s.QoS, s.NoLocal, s.RetainAsPublished, s.RetainHandling, s.Identifier)
		}
		tw.Flush()
	}
	if d.ClusterState != "" {
		fmt.Fprintln(w, "\nsession attributes: in the cluster's PROPOLIS_ATTRIBUTES bucket (the extensions' SessionAttributes service reads them)")
		return nil
	}
	fmt.Fprintf(w, "\nsession attributes (%d):\n", len(d.SessionAttributes))
	for _, a := range d.SessionAttributes {
		v := printable(a.Value)
		if a.ValueBase64 != nil {
			v = fmt.Sprintf("(%d bytes, not UTF-8) %x", len(a.ValueBase64), a.ValueBase64)
		}
		fmt.Fprintf(w, "  %s = %s\n", printable(a.Key), v)
	}
	return nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// protocolName is the MQTT version of a CONNECT's protocol level.
func protocolName(v byte) string {
	switch v {
	case 3:
		return "3.1"
	case 4:
		return "3.1.1"
	case 5:
		return "5"
	}
	return fmt.Sprint(v)
}

// timeText is t in UTC to the second, or "-".
func timeText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// orDash is s, or "-" when empty, so that a table column never collapses.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printableText is printable for a line of text, which may hold spaces
// (an error, a message, the last column of a table): quoted only when it
// holds a control character, so that it cannot forge lines or terminal
// sequences.
func printableText(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) }) >= 0 {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// printable quotes s when it holds a space, a control character or
// nothing printable, so that a client id cannot forge table cells or
// terminal sequences.
func printable(s string) string {
	if s == "" {
		return s
	}
	if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '"' || (r >= 0x80 && r < 0xa0) }) >= 0 {
		return fmt.Sprintf("%q", s)
	}
	return s
}
