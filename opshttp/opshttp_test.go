package opshttp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/scrape"
	"github.com/propolis-mqtt/propolis/internal/testpki"
	"github.com/propolis-mqtt/propolis/opshttp"
)

// start serves routes on a free loopback port until the test ends.
func start(t *testing.T, cfg config.HTTP, r opshttp.Routes) *opshttp.Server {
	t.Helper()
	s, err := opshttp.Listen(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(r.Mux())
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

// get returns the status, Content-Type and body of a request.
func get(t *testing.T, c *http.Client, method, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// testRegistry has one counter of known value.
func testRegistry(t *testing.T) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_things_total", Help: "Things counted by the test."}, []string{"kind"})
	c.WithLabelValues("a").Add(3)
	reg.MustRegister(c)
	return reg
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady atomic.Pointer[error]
	ready := func() error {
		if e := notReady.Load(); e != nil {
			return *e
		}
		return nil
	}
	s := start(t, config.HTTP{Address: "127.0.0.1:0"}, opshttp.Routes{Gatherer: testRegistry(t), Ready: ready})
	c := &http.Client{Timeout: poll.Timeout}

	for _, tt := range []struct {
		name, method, path string
		setReady           error
		code               int
		body               string
	}{
		{"healthz", "GET", "/healthz", nil, 200, "ok\n"},
		{"healthz HEAD", "HEAD", "/healthz", nil, 200, ""},
		{"readyz ready", "GET", "/readyz", nil, 200, "ready\n"},
		{"readyz not ready", "GET", "/readyz", errors.Join(errors.New("store closed"), errors.New("no security extension loaded")), 503,
			"not ready:\nstore closed\nno security extension loaded\n"},
		{"healthz while not ready", "GET", "/healthz", errors.New("store closed"), 200, "ok\n"},
		{"readyz POST", "POST", "/readyz", nil, 405, "Method Not Allowed\n"},
		{"unknown path", "GET", "/admin", nil, 404, "404 page not found\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setReady != nil {
				notReady.Store(&tt.setReady)
			} else {
				notReady.Store(nil)
			}
			code, ctype, body := get(t, c, tt.method, s.URL()+tt.path)
			if code != tt.code || body != tt.body {
				t.Errorf("%s %s = %d %q, want %d %q", tt.method, tt.path, code, body, tt.code, tt.body)
			}
			if code != 404 && code != 405 && ctype != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ctype)
			}
		})
	}
}

// TestMetricsFormats: /metrics answers in the text format by default and
// as the Accept header asks, and both parse to the same value.
func TestMetricsFormats(t *testing.T) {
	s := start(t, config.HTTP{Address: "127.0.0.1:0"}, opshttp.Routes{Gatherer: testRegistry(t), Ready: func() error { return nil }})
	for _, tt := range []struct{ name, accept, ctype string }{
		{"no accept", "", "text/plain; version=0.0.4; charset=utf-8"},
		{"text", scrape.AcceptText, "text/plain; version=0.0.4; charset=utf-8"},
		{"openmetrics", scrape.AcceptOpenMetrics, "application/openmetrics-text; version=0.0.1; charset=utf-8"},
		{"prometheus", scrape.AcceptPrometheus, "application/openmetrics-text; version=0.0.1; charset=utf-8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body, ctype, err := scrape.Get(s.URL()+"/metrics", tt.accept, poll.Timeout)
			if err != nil {
				t.Fatal(err)
			}
			if ctype != tt.ctype {
				t.Fatalf("Content-Type %q, want %q", ctype, tt.ctype)
			}
			var v float64
			if strings.HasPrefix(ctype, "application/openmetrics-text") {
				fams, err := scrape.OpenMetrics(body)
				if err != nil {
					t.Fatalf("%v\n%s", err, body)
				}
				f := fams["test_things"]
				if f == nil || f.Type != "counter" || len(f.Samples) != 1 || f.Samples[0].Name != "test_things_total" || f.Samples[0].Labels["kind"] != "a" {
					t.Fatalf("family test_things = %+v\n%s", f, body)
				}
				v = f.Samples[0].Value
			} else {
				fams, err := scrape.Text(body)
				if err != nil {
					t.Fatalf("%v\n%s", err, body)
				}
				v, _ = scrape.Value(fams, "test_things_total", "kind", "a")
			}
			if v != 3 {
				t.Errorf("test_things_total{kind=a} = %v, want 3\n%s", v, body)
			}
		})
	}
}

// TestListenErrors: an address in use names http.address; a bad key pair
// names http.tls.
func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = opshttp.Listen(config.HTTP{Address: busy.Addr().String()}, nil)
	want := "bind http.address " + busy.Addr().String() + ": listen tcp " + busy.Addr().String() + ": bind: address already in use"
	if err == nil || err.Error() != want || !errors.Is(err, opshttp.ErrListen) {
		t.Errorf("Listen on a busy port: %v, want %q wrapping ErrListen", err, want)
	}

	junk := t.TempDir() + "/junk.pem"
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = opshttp.Listen(config.HTTP{Address: "127.0.0.1:0", TLS: &config.TLS{CertFile: junk, KeyFile: junk}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "http.tls: load tls key pair "+junk+", "+junk+": ") {
		t.Errorf("Listen with a junk key pair: %v", err)
	}
}

// TestTLS serves over TLS with a CA of the test's own, requiring a client
// certificate: a client without one is refused, one with it is answered.
func TestTLS(t *testing.T) {
	pki := testpki.New(t)
	cfg := config.HTTP{Address: "127.0.0.1:0", TLS: &config.TLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey,
		ClientCAFile: pki.CAFile, RequireClientCert: true}}
	s := start(t, cfg, opshttp.Routes{Gatherer: testRegistry(t), Ready: func() error { return nil }})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL())
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: poll.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.CAPool, Certificates: certs}}}
	}
	if resp, err := client().Get(s.URL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate was answered")
	}
	if code, _, body := get(t, client(pki.ClientCert), "GET", s.URL()+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz over TLS = %d %q", code, body)
	}
}

// TestClose: Close returns with a kept-alive connection open, and the
// port is free afterwards; Close on a Server never served releases its
// socket.
func TestClose(t *testing.T) {
	s, err := opshttp.Listen(config.HTTP{Address: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(opshttp.Routes{Gatherer: testRegistry(t), Ready: func() error { return nil }}.Mux())
	c := &http.Client{Timeout: poll.Timeout}
	if code, _, _ := get(t, c, "GET", s.URL()+"/healthz"); code != 200 {
		t.Fatal(code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(s.URL() + "/healthz"); err == nil {
		t.Fatal("answered after Close")
	}
	again, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatalf("port not released by Close: %v", err)
	}
	again.Close()

	unserved, err := opshttp.Listen(config.HTTP{Address: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := unserved.Addr()
	if err := unserved.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port of an unserved Server not released: %v", err)
	}
	ln.Close()
}
