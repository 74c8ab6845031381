package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

// TestHelp: every way of asking for help prints usage on stdout and exits 0.
func TestHelp(t *testing.T) {
	list := "\ncommands:\n  serve "
	tests := []struct {
		name string
		args []string
		want []string // substrings of stdout
	}{
		{"help", []string{"help"}, []string{list, "  propolis extensions enable ID [--cluster] [--config FILE] [--data DIR] [--extensions DIR] [--token-file FILE] [--url URL]\n"}},
		{"--help", []string{"--help"}, []string{list}},
		{"-h", []string{"-h"}, []string{list}},
		{"help serve", []string{"help", "serve"}, []string{"usage: propolis serve [--config FILE]", "SIGHUP", "\n  --repair ", "(default: false)"}},
		{"serve --help", []string{"serve", "--help"}, []string{"usage: propolis serve [--config FILE]", "--listen ADDR"}},
		{"serve -h", []string{"serve", "-h"}, []string{"usage: propolis serve [--config FILE]"}},
		{"serve flags then -h", []string{"serve", "--data", "x", "-h"}, []string{"usage: propolis serve "}},
		{"help extensions", []string{"help", "extensions"}, []string{"propolis extensions list ", "propolis extensions disable ID "}},
		{"extensions --help", []string{"extensions", "--help"}, []string{"propolis extensions list "}},
		{"help extensions list", []string{"help", "extensions", "list"}, []string{"usage: propolis extensions list [--config FILE] [--data DIR] [--extensions DIR]\n"}},
		{"extensions enable -h", []string{"extensions", "enable", "-h"}, []string{"usage: propolis extensions enable ID "}},
		{"extensions disable ID --help", []string{"extensions", "disable", "acl", "--help"}, []string{"usage: propolis extensions disable ID "}},
		{"version --help", []string{"version", "--help"}, []string{"usage: propolis version\n"}},
		{"help help", []string{"help", "help"}, []string{"usage: propolis help [COMMAND]\n"}},
		{"help lists cluster status", []string{"help"}, []string{"  propolis cluster status [--config FILE] [--json] [--token-file FILE] [--url URL]\n"}},
		{"help extensions disable", []string{"help", "extensions", "disable"}, []string{"\n  --cluster ", "/api/v1/cluster/extensions/ID/disable", "exits 1 naming the nodes", "extensions.manage"}},
		{"help cluster status", []string{"help", "cluster", "status"}, []string{"usage: propolis cluster status ", "replication factor in force", "broker.view"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

// TestUsageErrors: an unknown command or flag, or a missing or extra
// argument, is one line on stderr naming it, and exit status 2.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "propolis: missing command; 'propolis help' lists the commands"},
		{[]string{"bogus"}, `propolis: unknown command "bogus"; 'propolis help' lists the commands`},
		{[]string{"--bogus"}, `propolis: unknown command "--bogus"; 'propolis help' lists the commands`},
		{[]string{"serve", "--bogus"}, "propolis: serve: flag provided but not defined: -bogus; see 'propolis help serve'"},
		{[]string{"serve", "--listen"}, "propolis: serve: flag needs an argument: -listen; see 'propolis help serve'"},
		{[]string{"serve", "extra"}, `propolis: serve: unexpected argument "extra"; see 'propolis help serve'`},
		{[]string{"serve", "--data", ""}, `propolis: serve: invalid value "" for flag -data: empty value; see 'propolis help serve'`},
		{[]string{"extensions"}, "propolis: extensions: missing command (list, enable, disable, compile, check); see 'propolis help extensions'"},
		{[]string{"extensions", "nope"}, `propolis: extensions: unknown command "nope" (list, enable, disable, compile, check); see 'propolis help extensions'`},
		{[]string{"extensions", "enable"}, "propolis: extensions enable: missing extension id; see 'propolis help extensions enable'"},
		{[]string{"extensions", "enable", "a", "b"}, `propolis: extensions enable: unexpected argument "b"; see 'propolis help extensions enable'`},
		{[]string{"extensions", "enable", "a", "--bogus"}, "propolis: extensions enable: flag provided but not defined: -bogus; see 'propolis help extensions enable'"},
		{[]string{"extensions", "disable", "a", "--url", "http://127.0.0.1:1"}, "propolis: extensions disable: --url and --token-file go with --cluster only; see 'propolis help extensions disable'"},
		{[]string{"extensions", "enable", "a", "--cluster", "--extensions", "x"}, "propolis: extensions enable: --data and --extensions do not apply with --cluster: each node acts on its own extensions folder; see 'propolis help extensions enable'"},
		{[]string{"help", "nope"}, `propolis: unknown command "nope"; 'propolis help' lists the commands`},
		{[]string{"version", "now"}, `propolis: version: unexpected argument "now"; see 'propolis help version'`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != 2 || stdout != "" || stderr != tt.want+"\n" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and stderr %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

// TestHelpShowsEveryFlag: each command's help lists every flag its flag
// set declares, with its usage and default, and the command list every
// command with its summary.
func TestHelpShowsEveryFlag(t *testing.T) {
	var top strings.Builder
	if err := run([]string{"help"}, &top, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(top.String(), c.summary+"\n") {
			t.Errorf("help lacks the summary of %s", c.name)
		}
		var out strings.Builder
		if err := run(append([]string{"help"}, strings.Fields(c.name)...), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		fs.VisitAll(func(f *flag.Flag) {
			_, usage := flag.UnquoteUsage(f)
			if want := usage + " (default: " + f.DefValue + ")\n"; !strings.Contains(out.String(), "  "+dashed(f)+" ") || !strings.Contains(out.String(), want) {
				t.Errorf("help %s lacks %s with %q:\n%s", c.name, dashed(f), want, out.String())
			}
		})
	}
}

// TestReadmeCommandLine: the command synopsis in the top-level README is
// the one help prints.
func TestReadmeCommandLine(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Command line\n\n```\n")
	block, _, ok := strings.Cut(section, "```\n")
	if !ok {
		t.Fatal("README.md has no ``` block after ## Command line")
	}
	want := strings.ReplaceAll(synopses(commands), "  propolis ", "propolis ")
	if block != want {
		t.Errorf("README.md's command line:\n%s\nwant (from the flag sets):\n%s", block, want)
	}
}

// TestHTTPFlagOff: `serve --http ""` and `--http off` turn the operator's
// HTTP endpoint off, as an empty http.address does; other flags still
// refuse an empty value.
func TestHTTPFlagOff(t *testing.T) {
	for _, v := range []string{"", "off"} {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		serveFlags(fs)
		if err := fs.Parse([]string{"--http", v}); err != nil {
			t.Fatalf("--http %q: %v", v, err)
		}
		got := fs.Lookup("http").Value.String()
		cfg, err := loadConfig("", "", "", "", got)
		if err != nil {
			t.Fatalf("--http %q: %v", v, err)
		}
		if cfg.HTTP.Address != "" {
			t.Errorf("--http %q: http.address %q, want empty (off)", v, cfg.HTTP.Address)
		}
	}
	cfg, err := loadConfig("", "", "", "", "127.0.0.1:9999")
	if err != nil || cfg.HTTP.Address != "127.0.0.1:9999" {
		t.Errorf("--http 127.0.0.1:9999: %v, http.address %q", err, cfg.HTTP.Address)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	serveFlags(fs)
	if err := fs.Parse([]string{"--data", ""}); err == nil || !strings.Contains(err.Error(), "empty value") {
		t.Errorf("--data \"\": %v, want an empty value refused", err)
	}
}
