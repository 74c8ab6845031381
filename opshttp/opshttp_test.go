package opshttp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/scrape"
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
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "opshttp test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(serial),
			Subject: pkix.Name{CommonName: "localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage}}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	sc, sk := issue(2, x509.ExtKeyUsageServerAuth)
	cc, ck := issue(3, x509.ExtKeyUsageClientAuth)
	files := map[string][]byte{"server.pem": sc, "server-key.pem": sk, "ca.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.HTTP{Address: "127.0.0.1:0", TLS: &config.TLS{CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem"),
		ClientCAFile: filepath.Join(dir, "ca.pem"), RequireClientCert: true}}
	s := start(t, cfg, opshttp.Routes{Gatherer: testRegistry(t), Ready: func() error { return nil }})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL())
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: poll.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	if resp, err := client().Get(s.URL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate was answered")
	}
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := get(t, client(pair), "GET", s.URL()+"/healthz"); code != 200 || body != "ok\n" {
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
