package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
)

// command is one propolis command. Its flags are declared once, by flags,
// and both the command line parser and the help text read them from the
// flag set, so the help cannot drift from what is parsed.
type command struct {
	// name is the words after "propolis", such as "extensions list".
	name string
	// arg names the one positional argument the command takes ("ID"), or
	// is "" for none; argWhat says what it is, for "missing extension id".
	// Several words ("FILE USER [PASSWORD]") take that many arguments,
	// the bracketed ones optional, passed to the command joined by NUL
	// (which no argument can hold).
	arg, argWhat string
	// summary is the one-line description in the command list.
	summary string
	// about is the help text of the command, after its synopsis.
	about string
	// flags declares the command's flags on fs and returns the function
	// running the command with them, given the positional argument.
	flags func(fs *flag.FlagSet) func(arg string, stdout, stderr io.Writer) error
}

// commands are the commands, in the order help lists them; set by init,
// as "help" reads the table.
var commands []*command

func init() {
	commands = []*command{
		{
			name:    "serve",
			summary: "run the broker until SIGINT or SIGTERM; SIGHUP reloads the configuration file",
			about: `Runs the broker until SIGINT or SIGTERM, then disconnects every client,
flushes the store and exits 0. SIGHUP reloads the --config file: settings
that can change at runtime are applied and logged, key by key; a file
changing anything else, or with an error, is refused and the broker keeps
its configuration. Flags override the configuration file, at start and on
every reload.`,
			flags: serveFlags,
		},
		{
			name:    "extensions list",
			summary: "list the extensions with version, state, priority and callbacks",
			about: `Prints each extension folder's id, version, state, priority, callbacks and,
for a failed one, the reason: the running broker's view when a broker runs
on the data folder, else each extension loaded once in a throwaway host.`,
			flags: withConfig(func(_ string, cfg *config.Config, stdout io.Writer) error { return listExtensions(cfg, stdout) }),
		},
		enableCommand("enable", "remove an extension's DISABLED file; a running broker starts it (--cluster: on every node)",
			`Removes the DISABLED file of the extension ID; a running broker starts the
extension within two seconds.`, false),
		enableCommand("disable", "create an extension's DISABLED file; a running broker stops it (--cluster: on every node)",
			`Creates the DISABLED file of the extension ID; a running broker stops the
extension within two seconds, and starts skip it until it is enabled.`, true),
		{
			name:    "extensions compile",
			summary: "compile every extension into the shipped cache (extensions/.compiled)",
			about: `Compiles every extension folder's module into DIR/.compiled, the cache a
broker copies into a fresh data folder so that it does not wait for the Wasm
compiler at start (make build runs it for the bundled extensions). An entry
made by another wazero version or for another CPU is never used.`,
			flags: withConfig(func(_ string, cfg *config.Config, stdout io.Writer) error {
				return compileExtensions(cfg.ExtensionsDir, stdout)
			}),
		},
		passwdCommand(),
		adminTokenCommand(),
	}
	commands = append(commands, clientsCommands()...)
	commands = append(commands, clusterStatusCommand())
	commands = append(commands, []*command{
		{
			name: "extensions check", arg: "PATH", argWhat: "module (.wasm) or extension folder",
			summary: "check a module or extension folder against the ABI (the conformance kit, for CI)",
			about: `Checks the module PATH (a .wasm file) or the extension folder PATH (its
propolis-extension.yaml and module) the way a broker would load it, then
runs it: the ABI marker and version, the imports against what the host
provides, the export signatures, the manifest (FILE:LINE:COLUMN errors) and
its services against the imports; start and stop with the manifest's config;
every exported callback driven with a seeded corpus of valid inputs and edge
cases (empty and maximum-length client ids, topics and passwords, non-UTF-8
passwords, many user properties, MQTT 3.1.1 and 5 shapes, wills, shared
subscriptions, records of a later ABI minor version with extra trailing
bytes). It fails on an invalid answer, a trap, a deadline overrun, memory
that keeps growing, a host service the manifest does not grant, and an
answer that depends on what the instance saw before (state kept in
globals). --mqtt also runs the extension in an embedded broker on a
loopback port with real MQTT 3.1.1 and 5 clients.

Exits 0 only when every check passed (1 otherwise). The seed is printed;
--seed with it replays a run.`,
			flags: checkFlags,
		},
		{
			name:    "version",
			summary: "print the broker, extension ABI and data format versions",
			about:   `Prints the broker version, the extension ABI versions it loads and the data folder format it writes.`,
			flags: func(*flag.FlagSet) func(string, io.Writer, io.Writer) error {
				return func(_ string, stdout, _ io.Writer) error {
					fmt.Fprintf(stdout, "propolis %s\nabi %s (modules built for %d.0 to %s load)\ndata format %d\n",
						version, abi.Version, abi.Major, abi.Version, store.FormatVersion)
					return nil
				}
			},
		},
		{
			name:    "help",
			arg:     "[COMMAND]",
			summary: "print this help, or a command's with its flags",
			about:   `Prints the list of commands, or the help of COMMAND with every flag and its default.`,
			flags: func(*flag.FlagSet) func(string, io.Writer, io.Writer) error {
				return func(arg string, stdout, _ io.Writer) error { return help(strings.Fields(arg), stdout) }
			},
		},
	}...)
}

// withConfig returns the flags of a command that takes --config, --data
// and --extensions and runs on the configuration they give (arg is the
// command's argument, if it takes one).
func withConfig(run func(arg string, cfg *config.Config, stdout io.Writer) error) func(*flag.FlagSet) func(string, io.Writer, io.Writer) error {
	return func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
		o := folderFlags(fs)
		return func(arg string, stdout, _ io.Writer) error {
			cfg, err := o.config()
			if err != nil {
				return err
			}
			return run(arg, cfg, stdout)
		}
	}
}

// enableCommand is "extensions enable" or "extensions disable": on the
// folder of --config (or --extensions), or with --cluster on every node
// of the cluster, through the running broker's admin API.
func enableCommand(verb, summary, about string, disable bool) *command {
	name := "extensions " + verb
	about += `

With --cluster, every alive node of the cluster the running broker is a
node of does the same in its own extensions folder: the command asks the
broker's admin API (POST /api/v1/cluster/extensions/ID/` + verb + `), which
asks each node and waits at most 5 seconds for their answers. It prints
each node's result and exits 1 naming the nodes where it was not carried
out (the node's error, or no answer). --data and --extensions do not
apply then; --config gives the broker's http.address.` + fmt.Sprintf(clientsAbout, "extensions.manage")
	return &command{
		name: name, arg: "ID", argWhat: "extension id", summary: summary, about: about,
		flags: func(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
			o := folderFlags(fs)
			onCluster := fs.Bool("cluster", false, "act on every node of the cluster, through the running broker's admin API")
			af := declareAdminFlagsWith(fs, o.file)
			return func(id string, stdout, _ io.Writer) error {
				if !*onCluster {
					if af.url.value != "" || af.tokenFile.value != "" {
						return usagef(name, "--url and --token-file go with --cluster only")
					}
					cfg, err := o.config()
					if err != nil {
						return err
					}
					return setDisabled(cfg.ExtensionsDir, id, disable, stdout)
				}
				if o.data.value != "" || o.exts.value != "" {
					return usagef(name, "--data and --extensions do not apply with --cluster: each node acts on its own extensions folder")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				return setClusterDisabled(c, id, disable, stdout)
			}
		},
	}
}

// optional is a string flag that, when given, overrides a setting; unset
// is what applies without it, which the help prints as its default. An
// empty value is refused unless empty is set: then it stands for empty.
type optional struct{ value, unset, empty string }

// String returns the value given, or the default's description.
func (o *optional) String() string {
	if o.value == "" {
		return o.unset
	}
	return o.value
}

// Set takes the flag's value, which must not be empty unless o.empty
// says what an empty one stands for.
func (o *optional) Set(s string) error {
	if s == "" {
		if o.empty == "" {
			return errors.New("empty value")
		}
		s = o.empty
	}
	o.value = s
	return nil
}

// optionalFlag declares an optional string flag on fs.
func optionalFlag(fs *flag.FlagSet, name, unset, usage string) *optional {
	o := &optional{unset: unset}
	fs.Var(o, name, usage)
	return o
}

// folders is the --config, --data and --extensions flags the commands
// share.
type folders struct{ file, data, exts *optional }

// folderFlags declares --config, --data and --extensions. enable and
// disable use no data folder but accept --data, as they always have, so one
// set of folder flags works for every command.
func folderFlags(fs *flag.FlagSet) *folders {
	def := config.Default()
	o := &folders{file: optionalFlag(fs, "config", "the embedded configuration",
		"read the configuration from `FILE` (YAML)")}
	o.data = optionalFlag(fs, "data", "the configuration's data_dir; "+def.DataDir+" in the embedded one",
		"keep the data in `DIR`, overriding data_dir")
	o.exts = optionalFlag(fs, "extensions", "the configuration's extensions_dir; "+def.ExtensionsDir+" in the embedded one",
		"read extensions from `DIR`, overriding extensions_dir")
	return o
}

// config loads the configuration the flags name (the embedded default
// without --config) with the folder flags applied.
func (o *folders) config() (*config.Config, error) {
	return loadConfig(o.file.value, "", o.data.value, o.exts.value, "")
}

// loadConfig loads file (the embedded default when "") and applies the
// command-line overrides (applyFlags); serve calls it at start and on
// every reload.
func loadConfig(file, listen, data, exts, httpAddr string) (*config.Config, error) {
	cfg := config.Default()
	if file != "" {
		var err error
		if cfg, err = config.Load(file); err != nil {
			return nil, err
		}
	}
	if err := applyFlags(cfg, listen, data, exts, httpAddr); err != nil {
		return nil, err
	}
	return cfg, nil
}

// usageError is a command line that cannot be run: an unknown command or
// flag, a missing or extra argument. main exits with status 2 for it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError pointing to the help of cmd ("" for the
// command list).
func usagef(cmd, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cmd == "" {
		return &usageError{msg + "; 'propolis help' lists the commands"}
	}
	return &usageError{cmd + ": " + msg + "; see 'propolis help " + cmd + "'"}
}

// run runs the command line args (without the program name).
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("", "missing command")
	}
	switch args[0] {
	case "-h", "-help", "--help":
		args = append([]string{"help"}, args[1:]...)
	case "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		if isHelp(rest) {
			return help(args[:len(args)-len(rest)], stdout) // "propolis extensions --help"
		}
		return err
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runCmd := cmd.flags(fs)
	arg, err := parse(cmd, fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		return help(strings.Fields(cmd.name), stdout)
	}
	if err != nil {
		return err
	}
	return runCmd(arg, stdout, stderr)
}

// isHelp reports whether args asks for help.
func isHelp(args []string) bool {
	return len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help")
}

// findCommand returns the command args start with and the arguments after
// its name. With an error, rest is what follows the words that matched a
// command group ("extensions"), or nil.
func findCommand(args []string) (cmd *command, rest []string, err error) {
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], nil
		}
	}
	if group := groupOf(args[0]); group != nil {
		if len(args) == 1 || isHelp(args[1:]) {
			return nil, args[1:], usagef(args[0], "missing command (%s)", strings.Join(group, ", "))
		}
		return nil, nil, usagef(args[0], "unknown command %q (%s)", args[1], strings.Join(group, ", "))
	}
	return nil, nil, usagef("", "unknown command %q", args[0])
}

// groupOf returns the second words of the commands whose name starts with
// word, such as list, enable, disable for "extensions"; nil if none.
func groupOf(word string) []string {
	var subs []string
	for _, c := range commands {
		if first, sub, ok := strings.Cut(c.name, " "); ok && first == word {
			subs = append(subs, sub)
		}
	}
	return subs
}

// parse parses flags and the positional argument of cmd from args; flags
// may come before or after the argument.
func parse(cmd *command, fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", err
			}
			return "", usagef(cmd.name, "%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if words := strings.Fields(cmd.arg); len(words) > 1 && !strings.HasPrefix(cmd.arg, "[") {
		need := 0
		for _, w := range words {
			if !strings.HasPrefix(w, "[") {
				need++
			}
		}
		switch {
		case len(pos) < need:
			return "", usagef(cmd.name, "missing %s", strings.ToLower(words[len(pos)]))
		case len(pos) > len(words):
			return "", usagef(cmd.name, "unexpected argument %q", pos[len(words)])
		}
		return strings.Join(pos, "\x00"), nil
	}
	switch {
	case cmd.arg == "" && len(pos) > 0:
		return "", usagef(cmd.name, "unexpected argument %q", pos[0])
	case strings.HasPrefix(cmd.arg, "["): // optional, any number
		return strings.Join(pos, " "), nil
	case cmd.arg != "" && len(pos) == 0:
		return "", usagef(cmd.name, "missing %s", cmd.argWhat)
	case len(pos) > 1:
		return "", usagef(cmd.name, "unexpected argument %q", pos[1])
	}
	return strings.Join(pos, ""), nil
}

// help prints the command list (no words), a group's commands
// ("extensions") or one command's help with its flags.
func help(words []string, w io.Writer) error {
	if len(words) == 0 {
		fmt.Fprint(w, "Propolis is an MQTT broker whose extensions are WebAssembly modules.\n\nusage:\n")
		fmt.Fprint(w, synopses(commands))
		fmt.Fprint(w, "\ncommands:\n")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, c := range commands {
			name := c.name
			if c.arg != "" {
				name += " " + c.arg
			}
			fmt.Fprintf(tw, "  %s\t%s\n", name, c.summary)
		}
		tw.Flush()
		fmt.Fprint(w, "\n'propolis help COMMAND' or 'propolis COMMAND --help' shows a command's flags and their defaults.\n")
		return nil
	}
	name := strings.Join(words, " ")
	for _, c := range commands {
		if c.name == name {
			commandHelp(c, w)
			return nil
		}
	}
	if group := groupOf(name); group != nil && len(words) == 1 {
		var cs []*command
		for _, c := range commands {
			if strings.HasPrefix(c.name, name+" ") {
				cs = append(cs, c)
			}
		}
		fmt.Fprint(w, "usage:\n"+synopses(cs)+"\ncommands:\n")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, c := range cs {
			fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+c.arg), c.summary)
		}
		tw.Flush()
		fmt.Fprintf(w, "\n'propolis help %s COMMAND' shows a command's flags and their defaults.\n", name)
		return nil
	}
	return usagef("", "unknown command %q", name)
}

// commandHelp prints c's synopsis, description and flags, each with its
// default.
func commandHelp(c *command, w io.Writer) {
	fmt.Fprint(w, "usage: "+strings.TrimPrefix(synopses([]*command{c}), "  "))
	fmt.Fprint(w, "\n"+c.about+"\n")
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprint(w, "\nflags:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		placeholder, usage := flag.UnquoteUsage(f)
		name := dashed(f)
		if placeholder != "" {
			name += " " + placeholder
		}
		fmt.Fprintf(tw, "  %s\t%s (default: %s)\n", name, usage, f.DefValue)
	})
	tw.Flush()
}

// dashed is a flag's name as the help spells it: -D for a one-letter flag,
// as mosquitto_passwd spells it, --iterations for the others (the flag
// package takes either spelling).
func dashed(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// synopses returns one "  propolis NAME [ARG] [--flag VALUE]..." line per
// command, from its flag set.
func synopses(cs []*command) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString("  propolis " + c.name)
		if c.arg != "" {
			b.WriteString(" " + c.arg)
		}
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		fs.VisitAll(func(f *flag.Flag) {
			placeholder, _ := flag.UnquoteUsage(f)
			if placeholder == "" {
				fmt.Fprintf(&b, " [%s]", dashed(f))
			} else {
				fmt.Fprintf(&b, " [%s %s]", dashed(f), placeholder)
			}
		})
		b.WriteString("\n")
	}
	return b.String()
}
