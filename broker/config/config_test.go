package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestDefaultYAMLMatchesDefault(t *testing.T) {
	got, err := Parse("default.yaml", DefaultYAML)
	if err != nil {
		t.Fatalf("Parse(default.yaml): %v", err)
	}
	if got.Source != "default.yaml" {
		t.Errorf("Source = %q, want %q", got.Source, "default.yaml")
	}
	want := Default()
	if want.Source != "<embedded default>" {
		t.Errorf("Default().Source = %q, want %q", want.Source, "<embedded default>")
	}
	got.Source = want.Source
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(DefaultYAML) = %+v\nwant Default() = %+v", got, want)
	}
}

func TestDefaultIsValidAndFresh(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	c.Listeners[0].Name = "changed"
	if got := Default().Listeners[0].Name; got != "tcp" {
		t.Errorf("after changing one Default, another has listener %q, want %q", got, "tcp")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "propolis.yaml")
	if err := os.WriteFile(path, []byte("log:\n  level: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Source != path || c.Log.Level != "warn" || c.Log.Format != "text" {
		t.Errorf("Load = Source %q, Log %+v; want Source %q, Log {warn text}", c.Source, c.Log, path)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("log:\n  level: 3\n  lvl: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	want := bad + `:2:10: log.level: unknown value "3" (allowed: debug, info, warn, error)` + "\n" +
		bad + ":3:3: log.lvl: unknown key (allowed: level, format)"
	if err == nil || err.Error() != want {
		t.Errorf("Load(bad) error = %v, want %s", err, want)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want fs.ErrNotExist", err)
	}
}

func TestParseErrorsAreReachable(t *testing.T) {
	_, err := Parse("p.yaml", []byte("mqtt:\n  max_clients: x\n  receive_maximum: 0\n"))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse error %T is not Errors", err)
	}
	want := Errors{
		{File: "p.yaml", Line: 2, Column: 16, Key: "mqtt.max_clients", Msg: `want an integer, got "x"`},
		{File: "p.yaml", Line: 3, Column: 20, Key: "mqtt.receive_maximum", Msg: "0 out of range 1-65535"},
	}
	if !reflect.DeepEqual(es, want) {
		t.Errorf("Errors = %v, want %v", es, want)
	}
	var e *Error
	if !errors.As(err, &e) || e != es[0] {
		t.Errorf("errors.As(*Error) = %v, want the first error", e)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"full", &Error{File: "p.yaml", Line: 14, Column: 3, Key: "listeners[1].address", Msg: "port 70000 out of range 0-65535"},
			"p.yaml:14:3: listeners[1].address: port 70000 out of range 0-65535"},
		{"no column", &Error{File: "p.yaml", Line: 2, Msg: "yaml: did not find expected key"},
			"p.yaml:2: yaml: did not find expected key"},
		{"no line", &Error{File: "p.yaml", Key: "mqtt.max_clients", Msg: "-1 is negative (0 means unlimited)"},
			"p.yaml: mqtt.max_clients: -1 is negative (0 means unlimited)"},
		{"no file", &Error{Key: "data_dir", Msg: "required"},
			"data_dir: required"},
		{"no key", &Error{File: "p.yaml", Line: 1, Column: 1, Msg: "want a mapping, got a sequence"},
			"p.yaml:1:1: want a mapping, got a sequence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // "" for valid
	}{
		{"default", func(c *Config) {}, ""},
		{"no listeners", func(c *Config) { c.Listeners = nil },
			"<embedded default>: listeners: at least one listener is required"},
		{"websocket with empty path", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "ws", Type: "websocket", Address: ":8080"})
		}, `<embedded default>: listeners[1].path: must start with "/", got ""`},
		{"duplicate address", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "ws", Type: "websocket", Address: "127.0.0.1:1883", Path: "/"})
		}, `<embedded default>: listeners[1].address: "127.0.0.1:1883" is also used by listeners[0]`},
		{"same port, wildcard and loopback", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "ws", Type: "websocket", Address: ":1883", Path: "/"})
		}, `<embedded default>: listeners[1].address: ":1883" overlaps "127.0.0.1:1883" of listeners[0]`},
		{"same port, two hosts", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "ws", Type: "websocket", Address: "127.0.0.2:1883", Path: "/"})
		}, ""},
		{"http on a listener's port, wildcard", func(c *Config) { c.HTTP.Address = ":1883" },
			`<embedded default>: http.address: ":1883" overlaps "127.0.0.1:1883" of listeners[0]`},
		{"http on a listener's port, ipv6 wildcard", func(c *Config) { c.HTTP.Address = "[::]:1883" },
			`<embedded default>: http.address: "[::]:1883" overlaps "127.0.0.1:1883" of listeners[0]`},
		{"http on a listener's port, localhost", func(c *Config) { c.HTTP.Address = "localhost:1883" },
			`<embedded default>: http.address: "localhost:1883" overlaps "127.0.0.1:1883" of listeners[0]`},
		{"http on a listener's address", func(c *Config) { c.HTTP.Address = "127.0.0.1:1883" },
			`<embedded default>: http.address: "127.0.0.1:1883" is also used by listeners[0]`},
		{"http on another host, same port", func(c *Config) { c.HTTP.Address = "127.0.0.2:1883" }, ""},
		{"port not a number", func(c *Config) { c.Listeners[0].Address = "127.0.0.1:-1" },
			`<embedded default>: listeners[0].address: port "-1" is not a number`},
		{"port too long", func(c *Config) { c.Listeners[0].Address = "127.0.0.1:99999999999999999999" },
			`<embedded default>: listeners[0].address: port 99999999999999999999 out of range 0-65535`},
		{"empty port", func(c *Config) { c.Listeners[0].Address = "127.0.0.1:" },
			`<embedded default>: listeners[0].address: want host:port, got "127.0.0.1:"`},
		{"ipv6 address", func(c *Config) { c.Listeners[0].Address = "[::1]:1883" }, ""},
		{"name and type missing", func(c *Config) { c.Listeners[0].Name, c.Listeners[0].Type = "", "" },
			"<embedded default>: listeners[0].name: required\n" +
				"<embedded default>: listeners[0].type: required (allowed: tcp, tls, websocket)"},
		{"flush interval ignored unless periodic", func(c *Config) { c.Durability.FlushInterval = 0 }, ""},
		{"flush interval too short", func(c *Config) {
			c.Durability.Mode = "periodic"
			c.Durability.FlushInterval = Duration(time.Microsecond)
		}, "<embedded default>: durability.flush_interval: 1µs out of range 1ms-1m"},
		{"negative session expiry", func(c *Config) { c.MQTT.MaxSessionExpiry = Duration(-time.Second) },
			"<embedded default>: mqtt.max_session_expiry: -1s out of range 0s-4294967295s"},
		{"largest session expiry", func(c *Config) { c.MQTT.MaxSessionExpiry = Duration(4294967295 * time.Second) }, ""},
		{"zero session expiry", func(c *Config) { c.MQTT.MaxSessionExpiry = 0 }, ""},
		{"negative message expiry", func(c *Config) { c.MQTT.MaxMessageExpiry = Duration(-time.Second) },
			"<embedded default>: mqtt.max_message_expiry: -1s is neither 0 (no limit) nor at least 1s"},
		{"largest packet", func(c *Config) { c.MQTT.MaxPacketSize = 268435455 }, ""},
		{"smallest packet", func(c *Config) { c.MQTT.MaxPacketSize = 64 }, ""},
		{"queue policy", func(c *Config) { c.MQTT.QueueFullPolicy = "drop-old" },
			`<embedded default>: mqtt.queue_full_policy: unknown value "drop-old" (allowed: drop-new)`},
		{"queue too long", func(c *Config) { c.MQTT.MaxQueuedMessages = 65536 },
			"<embedded default>: mqtt.max_queued_messages: 65536 out of range 1-65535"},
		{"source empty", func(c *Config) { c.Source = ""; c.ExtensionsDir = "" },
			"extensions_dir: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate() = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	_, notExist := os.Open(missing)
	_, isDir := os.ReadFile(dir)
	tests := []struct {
		name string
		tls  TLS
		want string
	}{
		{"readable", TLS{CertFile: "testdata/tls/cert.pem", KeyFile: "testdata/tls/key.pem"}, ""},
		{"missing cert", TLS{CertFile: missing, KeyFile: "testdata/tls/key.pem"},
			`t.yaml:6:18: listeners[0].tls.cert_file: cannot read "` + missing + `": ` + errors.Unwrap(notExist).Error()},
		{"key is a directory", TLS{CertFile: "testdata/tls/cert.pem", KeyFile: dir},
			`t.yaml:7:17: listeners[0].tls.key_file: cannot read "` + dir + `": ` + errors.Unwrap(isDir).Error()},
		{"client ca not checked", TLS{CertFile: "testdata/tls/cert.pem", KeyFile: "testdata/tls/key.pem",
			ClientCAFile: missing, RequireClientCert: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "listeners:\n  - name: secure\n    type: tls\n    address: :8883\n    tls:\n" +
				"      cert_file: " + tt.tls.CertFile + "\n" +
				"      key_file: " + tt.tls.KeyFile + "\n"
			if tt.tls.ClientCAFile != "" {
				yaml += "      client_ca_file: " + tt.tls.ClientCAFile + "\n      require_client_cert: true\n"
			}
			c, err := Parse("t.yaml", []byte(yaml))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tt.want == "":
				if got := *c.Listeners[0].TLS; got != tt.tls {
					t.Errorf("TLS = %+v, want %+v", got, tt.tls)
				}
			case err == nil || err.Error() != tt.want:
				t.Errorf("Parse error = %v, want %s", err, tt.want)
			}
		})
	}
}
