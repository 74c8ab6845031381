package config

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReloadRulesCoverEveryKey: every key of the configuration, a listener
// with TLS included, has exactly one reload rule, and every rule names a
// key that exists.
func TestReloadRulesCoverEveryKey(t *testing.T) {
	c := Default()
	c.Listeners = append(c.Listeners, Listener{Name: "tls", Type: "tls", Address: ":8883",
		TLS: &TLS{CertFile: "c", KeyFile: "k", ClientCAFile: "ca", RequireClientCert: true}})
	c.Admin.Users = []AdminUser{{Name: "u", Roles: []string{"admin"}, PasswordHash: "h"}}
	c.Admin.Tokens = []AdminToken{{Name: "t", SHA256: "s", Roles: []string{"viewer"}}}
	c.Admin.Hosts = []string{"h"}
	c.Cluster = &Cluster{Name: "n1", Listen: ":6222", Seeds: []string{"n2:6222"}}
	f := c.values()
	used := map[string]bool{}
	for _, key := range f.keys {
		var rules []string
		for _, r := range reloadRules {
			if covers(r.key, key) {
				rules = append(rules, r.key)
				used[r.key] = true
			}
		}
		if len(rules) != 1 {
			t.Errorf("key %s has reload rules %v, want exactly one (add its line to reloadRules)", key, rules)
		}
	}
	for _, r := range reloadRules {
		if !used[r.key] {
			t.Errorf("reload rule %q names no key of Config", r.key)
		}
		if r.live == (r.why != "") && !r.logger || r.live != (r.to != "") || r.logger && (!r.live || r.why == "") {
			t.Errorf("reload rule %q: a live key says from when (to), a fixed one why, a logger's key both", r.key)
		}
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // "key: old -> new (live|fixed)"
	}{
		{"nothing", func(*Config) {}, nil},
		{"live keys", func(c *Config) {
			c.Log.Level = "debug"
			c.MQTT.WriteTimeout = Duration(5 * time.Second)
			c.MQTT.MaxOutboundBuffer = 1 << 20
		}, []string{
			"mqtt.write_timeout: 30s -> 5s (live)",
			"mqtt.max_outbound_buffer: 4MiB -> 1MiB (live)",
			"log.level: info -> debug (live)",
		}},
		{"fixed keys", func(c *Config) {
			c.DataDir = "./data2"
			c.Listeners[0].Address = "127.0.0.1:1884"
			c.MQTT.MaxClients = 10
		}, []string{
			"listeners[0].address: 127.0.0.1:1883 -> 127.0.0.1:1884 (fixed)",
			"data_dir: ./data -> ./data2 (fixed)",
			"mqtt.max_clients: 0 -> 10 (fixed)",
		}},
		{"listener added with tls", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "tls", Type: "tls", Address: ":8883", TLS: &TLS{CertFile: "c", KeyFile: "k"}})
		}, []string{
			"listeners[1].name: (none) -> tls (fixed)",
			"listeners[1].type: (none) -> tls (fixed)",
			"listeners[1].address: (none) -> :8883 (fixed)",
			"listeners[1].path: (none) ->  (fixed)",
			"listeners[1].tls.cert_file: (none) -> c (fixed)",
			"listeners[1].tls.key_file: (none) -> k (fixed)",
			"listeners[1].tls.client_ca_file: (none) ->  (fixed)",
			`listeners[1].tls.require_client_cert: (none) -> false (fixed)`,
		}},
		{"source is no change", func(c *Config) { c.Source = "other.yaml" }, nil},
		// admin.users and admin.tokens by name: erin inserted before dave
		// is erin added, not every later position changed; secrets show
		// as fingerprints.
		{"admin user inserted", func(c *Config) {
			c.Admin.Users = []AdminUser{c.Admin.Users[0], {Name: "erin", Roles: []string{"admin"}, PasswordHash: "h-erin"}, c.Admin.Users[1]}
		}, []string{
			"admin.users[erin].name: (none) -> erin (live)",
			"admin.users[erin].roles[0]: (none) -> admin (live)",
			"admin.users[erin].password_hash: (none) -> " + Redact("h-erin") + " (live)",
		}},
		{"admin user removed, roles and hash changed", func(c *Config) {
			c.Admin.Users = []AdminUser{{Name: "dave", Roles: []string{"admin"}, PasswordHash: "h-dave2"}}
			c.Admin.Tokens[0].Roles = []string{"operator"}
		}, []string{
			"admin.users[carol].name: carol -> (none) (live)",
			"admin.users[carol].roles[0]: viewer -> (none) (live)",
			"admin.users[carol].password_hash: " + Redact("h-carol") + " -> (none) (live)",
			"admin.users[dave].roles[0]: viewer -> admin (live)",
			"admin.users[dave].password_hash: " + Redact("h-dave") + " -> " + Redact("h-dave2") + " (live)",
			"admin.tokens[ci].roles[0]: viewer -> operator (live)",
		}},
	}
	// The admin cases start from two users and a token.
	withAdmins := func(c *Config) *Config {
		c.Admin.Users = []AdminUser{{Name: "carol", Roles: []string{"viewer"}, PasswordHash: "h-carol"},
			{Name: "dave", Roles: []string{"viewer"}, PasswordHash: "h-dave"}}
		c.Admin.Tokens = []AdminToken{{Name: "ci", SHA256: "s", Roles: []string{"viewer"}}}
		return c
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, cur := Default(), Default()
			if strings.HasPrefix(tt.name, "admin") {
				old, cur = withAdmins(old), withAdmins(cur)
			}
			tt.change(cur)
			var got []string
			for _, c := range Diff(old, cur) {
				kind := "fixed"
				if c.Live {
					kind = "live"
				}
				got = append(got, c.Key+": "+c.Old+" -> "+c.New+" ("+kind+")")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCheckReload(t *testing.T) {
	cur := Default()
	cur.Source = "propolis.yaml"
	cur.Log.Level = "debug"
	changes, err := CheckReload(Default(), cur, true)
	if err != nil || len(changes) != 1 || changes[0].AppliesTo != "now" || !changes[0].Live || !changes[0].Logger {
		t.Fatalf("CheckReload(live change) = %+v, %v", changes, err)
	}

	// A broker that cannot change its logger cannot change log.*.
	changes, err = CheckReload(Default(), cur, false)
	want := `reload propolis.yaml: log.level cannot change while running (old "info", new "debug"): the broker was given no way to change its logger (broker.Options.ApplyLog)`
	if changes != nil || err == nil || err.Error() != want {
		t.Fatalf("CheckReload(log change, no logger applier) = %+v, %v\nwant error:\n%s", changes, err, want)
	}

	cur.DataDir = "./data2"
	cur.Durability.Mode = "none"
	cur.Listeners = append(cur.Listeners, Listener{Name: "ws", Type: "websocket", Address: ":8080", Path: "/mqtt"})
	changes, err = CheckReload(Default(), cur, true)
	want = `reload propolis.yaml: listeners[1].name cannot change while running (old (none), new "ws"): its sockets are bound at start` + "\n" +
		`reload propolis.yaml: listeners[1].type cannot change while running (old (none), new "websocket"): its sockets are bound at start` + "\n" +
		`reload propolis.yaml: listeners[1].address cannot change while running (old (none), new ":8080"): its sockets are bound at start` + "\n" +
		`reload propolis.yaml: listeners[1].path cannot change while running (old (none), new "/mqtt"): its sockets are bound at start` + "\n" +
		`reload propolis.yaml: data_dir cannot change while running (old "./data", new "./data2"): the store is open` + "\n" +
		`reload propolis.yaml: durability.mode cannot change while running (old "sync", new "none"): the store is opened with it`
	if changes != nil || err == nil || err.Error() != want {
		t.Fatalf("CheckReload(fixed change) = %+v, %v\nwant error:\n%s", changes, err, want)
	}
	var re *ReloadError
	if !errors.Is(err, ErrReloadRefused) || !errors.As(err, &re) || len(re.Fixed) != 6 || re.File != "propolis.yaml" {
		t.Errorf("error %T does not wrap ErrReloadRefused with the file and all six keys", err)
	}
}

// TestCheckReloadHTTP: the HTTP endpoint's keys are read at start; a
// reload changing its address or adding TLS is refused naming each key.
func TestCheckReloadHTTP(t *testing.T) {
	cur := Default()
	cur.Source = "propolis.yaml"
	cur.HTTP.Address = "127.0.0.1:9091"
	cur.HTTP.TLS = &TLS{CertFile: "c", KeyFile: "k"}
	changes, err := CheckReload(Default(), cur, true)
	want := `reload propolis.yaml: http.address cannot change while running (old "127.0.0.1:9090", new "127.0.0.1:9091"): its socket is bound at start (package opshttp)` + "\n" +
		`reload propolis.yaml: http.tls.cert_file cannot change while running (old (none), new "c"): its socket is bound at start (package opshttp)` + "\n" +
		`reload propolis.yaml: http.tls.key_file cannot change while running (old (none), new "k"): its socket is bound at start (package opshttp)` + "\n" +
		`reload propolis.yaml: http.tls.client_ca_file cannot change while running (old (none), new ""): its socket is bound at start (package opshttp)` + "\n" +
		`reload propolis.yaml: http.tls.require_client_cert cannot change while running (old (none), new false): its socket is bound at start (package opshttp)`
	if changes != nil || err == nil || err.Error() != want {
		t.Fatalf("CheckReload(http change) = %+v, %v\nwant error:\n%s", changes, err, want)
	}
}

// TestReadmeListsLiveKeys: the top-level README's table of keys a reload
// applies names exactly the live keys of reloadRules.
func TestReadmeListsLiveKeys(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "## Reloading the configuration\n")
	section, _, _ = strings.Cut(section, "\n## ")
	var table []string
	for _, line := range strings.Split(section, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		for _, k := range strings.Split(first, ", ") {
			table = append(table, strings.Trim(k, "`"))
		}
	}
	var live []string
	for _, r := range reloadRules {
		if r.live {
			live = append(live, r.key)
		}
	}
	slices.Sort(table)
	slices.Sort(live)
	if !slices.Equal(table, live) {
		t.Errorf("README.md's reload table lists %v; the live keys are %v", table, live)
	}
}

// TestCheckReloadCluster: no cluster key changes at runtime; adding,
// removing or changing the section is refused naming each key and both
// values.
func TestCheckReloadCluster(t *testing.T) {
	const why = ": the cluster node is started with it (package cluster)"
	node := func() *Config {
		c := Default()
		c.Source = "propolis.yaml"
		c.Cluster = &Cluster{Name: "n1", Listen: "127.0.0.1:6222", Seeds: []string{"10.0.0.2:6222"}, Replicas: 3,
			TopicLevelDistribution: 1, ClusterName: "propolis", StreamMaxAge: Duration(time.Hour), StreamMaxBytes: 1 << 30}
		return c
	}
	tests := []struct {
		name   string
		old    *Config
		change func(c *Config)
		want   []string
	}{
		{"unchanged", node(), func(*Config) {}, nil},
		{"replicas and a seed", node(), func(c *Config) {
			c.Cluster.Replicas = 1
			c.Cluster.Seeds = append(c.Cluster.Seeds, "10.0.0.3:6222")
		}, []string{
			`reload propolis.yaml: cluster.replicas cannot change while running (old 3, new 1)` + why,
			`reload propolis.yaml: cluster.seeds[1] cannot change while running (old (none), new "10.0.0.3:6222")` + why,
		}},
		{"name and age", node(), func(c *Config) {
			c.Cluster.Name = "n9"
			c.Cluster.StreamMaxAge = Duration(time.Minute)
		}, []string{
			`reload propolis.yaml: cluster.name cannot change while running (old "n1", new "n9")` + why,
			`reload propolis.yaml: cluster.stream_max_age cannot change while running (old 1h, new 1m)` + why,
		}},
		{"section removed", node(), func(c *Config) { c.Cluster.Seeds = nil; c.Cluster = nil }, []string{
			`reload propolis.yaml: cluster.name cannot change while running (old "n1", new (none))` + why,
			`reload propolis.yaml: cluster.listen cannot change while running (old "127.0.0.1:6222", new (none))` + why,
			`reload propolis.yaml: cluster.seeds[0] cannot change while running (old "10.0.0.2:6222", new (none))` + why,
			`reload propolis.yaml: cluster.replicas cannot change while running (old 3, new (none))` + why,
			`reload propolis.yaml: cluster.topic_level_distribution cannot change while running (old 1, new (none))` + why,
			`reload propolis.yaml: cluster.cluster_name cannot change while running (old "propolis", new (none))` + why,
			`reload propolis.yaml: cluster.stream_max_age cannot change while running (old 1h, new (none))` + why,
			`reload propolis.yaml: cluster.stream_max_bytes cannot change while running (old 1GiB, new (none))` + why,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := node()
			tt.change(cur)
			changes, err := CheckReload(tt.old, cur, true)
			if tt.want == nil {
				if err != nil || len(changes) != 0 {
					t.Fatalf("CheckReload = %+v, %v; want no change", changes, err)
				}
				return
			}
			if want := strings.Join(tt.want, "\n"); err == nil || err.Error() != want {
				t.Fatalf("CheckReload = %+v, %v\nwant error:\n%s", changes, err, want)
			}
		})
	}
}
