package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/passwd"
)

// These tests drive the web control center (package admin/ui) in headless
// Chromium (Debian's chromium at /usr/bin/chromium, through chromedp)
// against a real `propolis serve` with admin users, real MQTT 5 clients
// and the allow-all extension. Without Chromium they are skipped, saying
// so (.ci/run installs it).
//
// go test ./cmd/propolis -run TestControlCenter -screenshots also rewrites
// the screenshots of docs/control-center/ (make screenshots).

// screenshots asks TestControlCenter to save the main pages to
// docs/control-center/*.png.
var screenshots = flag.Bool("screenshots", false, "save the control center's main pages to docs/control-center/*.png")

// chromiumPath is the browser the tests drive.
const chromiumPath = "/usr/bin/chromium"

// Users of the control center's broker: alice has every permission; sam's
// role "support" may read clients and retained payloads but not user
// properties, and may change nothing.
const (
	ccAdminUser    = "alice"
	ccAdminPass    = "alice-secret-pw"
	ccSupportUser  = "sam"
	ccSupportPass  = "sam-secret-pw"
	ccRetainTopic  = "ui/retained/temperature"
	ccRetained     = `{"celsius": 21.5, "sensor": "ui-7"}`
	ccPropKey      = "ui-secret-key"
	ccPropValue    = "ui-secret-value"
	ccSubClient    = "ui-sub-1"
	ccOfflineID    = "ui-offline-1"
	ccPublisherID  = "ui-pub-1"
	ccInvalidID    = "ui-inv-1"
	ccWillTopic    = "ui/will/ui-sub-1"
	ccMarkerTopic  = "ui/will/marker"
	ccBinaryTopic  = "ui/retained/binary"
	ccTraceTopic   = "ui/trace/t"
	ccScreenshotsD = "../../docs/control-center"
)

// ccBroker is a running broker for the control center tests.
type ccBroker struct {
	addr, base string
	log        *syncLog
	// cmd is the process, for kill (serveForClients only).
	cmd    *exec.Cmd
	killed atomic.Bool
}

// kill stops the broker with SIGKILL and waits for the process to end;
// the test's cleanup then leaves it alone.
func (b *ccBroker) kill(t *testing.T) {
	t.Helper()
	b.killed.Store(true)
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = waitExit(t, b.cmd) // "signal: killed"
}

// startControlCenterBroker runs `propolis serve` with allow-all, the
// endpoint on a free loopback port, and the users alice (admin) and sam
// (role support, without userproperties.view).
func startControlCenterBroker(t *testing.T) *ccBroker {
	t.Helper()
	tmp := t.TempDir()
	hash := func(pw string) string {
		h, err := passwd.New([]byte(pw), passwd.MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	file := allowAllConfig(t, tmp, fmt.Sprintf(`admin:
  users:
    - name: %s
      roles: [admin]
      password_hash: %q
    - name: %s
      roles: [support]
      password_hash: %q
  roles:
    support: [broker.view, clients.view, retained.view, retained.payload, extensions.view]
`, ccAdminUser, hash(ccAdminPass), ccSupportUser, hash(ccSupportPass)))
	cmd := exec.Command(bin, "serve", "--config", file)
	addr, base, log := runServeOps(t, cmd)
	return &ccBroker{addr: addr, base: base, log: log}
}

// api sends method path to the admin API as alice (HTTP basic auth, as a
// script would) and returns the status and body.
func (b *ccBroker) api(t *testing.T, method, path string) (int, string) {
	t.Helper()
	return request(t, method, b.base+"/api/v1"+path, func(r *http.Request) { r.SetBasicAuth(ccAdminUser, ccAdminPass) })
}

// sessionGone checks that invalidating id's session in the page took:
// the detail says it is gone, the API answers 404, and the client coming
// back with clean start false finds no session.
func (b *ccBroker) sessionGone(t *testing.T, p *page, id string) {
	t.Helper()
	p.do("the detail to say the session is gone", chromedp.WaitVisible(css("#client-gone")))
	if code, body := b.api(t, "GET", "/clients/"+id); code != 404 {
		t.Fatalf("GET /api/v1/clients/%s after invalidate = %d %s, want 404", id, code, body)
	}
	if again, present := b.connect5(t, id, "meter", false, 3600); present {
		t.Errorf("%s reconnected with clean start false and found its session after it was invalidated", id)
	} else {
		_ = again.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}
}

// ccClient is a real MQTT 5 client of the test.
type ccClient struct {
	*paho.Client
	gone chan error // receives once when the broker ends the connection
}

// connect5 connects an MQTT 5 client id with user name username (""
// for none) to the broker with clean start and session expiry as given,
// and returns whether the broker had a session for it.
func (b *ccBroker) connect5(t *testing.T, id, username string, clean bool, expiry uint32) (*ccClient, bool) {
	t.Helper()
	return b.connect5With(t, id, username, clean, expiry, nil, nil)
}

// connect5With is connect5 with a will (nil: none) and a channel that
// receives every message delivered to the client (nil: none).
func (b *ccBroker) connect5With(t *testing.T, id, username string, clean bool, expiry uint32, will *paho.WillMessage,
	received chan<- *paho.Publish) (*ccClient, bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", b.addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &ccClient{gone: make(chan error, 2)}
	var once sync.Once
	end := func(err error) { once.Do(func() { c.gone <- err }) }
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID:           id,
		Conn:               conn,
		OnServerDisconnect: func(d *paho.Disconnect) { end(fmt.Errorf("DISCONNECT reason %#x", d.ReasonCode)) },
		OnClientError:      func(err error) { end(err) },
	})
	if received != nil {
		c.AddOnPublishReceived(func(r paho.PublishReceived) (bool, error) {
			received <- r.Packet
			return true, nil
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	// Without Request Problem Information mochi drops user properties.
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Username: username, UsernameFlag: username != "", WillMessage: will,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, RequestProblemInfo: true}})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c, ack.SessionPresent
}

// browser starts headless Chromium for the test, or skips the test when
// it is not installed. The returned context has a tab open; the browser
// stops when the test ends. What the page must never cause fails the test
// at its end: an uncaught exception, an error written to the console, a
// Content-Security-Policy violation (the browser's "security" log), and a
// failed load of anything but an admin API call (an API refusal is an
// answer the page shows; a missing script or style is a broken page).
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipped the control center's browser test: headless Chromium not found (%v); install Debian's chromium (.ci/run does)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath), chromedp.WindowSize(1280, 900))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first run starts the browser; it has no timeout of its own
	// (a timeout there would stop the browser), so the test's deadline
	// bounds it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	var mu sync.Mutex
	var bad []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if pageFault(m) {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s (source %q, %s:%d)", m, m.Source, m.URL, m.Line+1))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range bad {
			t.Errorf("the page logged a fault: %s", e)
		}
	})
	return ctx
}

// pageFault says whether a console message of the page is a fault that
// fails the test: an exception, a CSP violation (source "security", any
// level), or an error, except a failed load of an admin API call (the
// network log of a 4xx answer the page shows, such as the 401 of
// /api/v1/me before the login).
func pageFault(m chromedp.ConsoleMessage) bool {
	switch {
	case m.Type == chromedp.ConsoleException || m.Source == "security":
		return true
	case m.Type != chromedp.ConsoleError:
		return false
	case m.Source == "network" && strings.Contains(m.URL, "/api/v1/"):
		return false
	}
	return true
}

// page is the browser tab of a test, with steps that fail the test
// saying what they waited for and what the page showed.
type page struct {
	t   *testing.T
	ctx context.Context
}

// css selects by CSS selector.
func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// do runs actions (each bounded by poll.Timeout); on failure it fails the
// test with what, the error, and the page's message bar and main text.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	for _, a := range actions {
		ctx, cancel := context.WithTimeout(p.ctx, poll.Timeout)
		_, err := chromedp.Run(ctx, a)
		// A node the page replaced between chromedp's query and its
		// action (a re-render after a poll or a fetch): the action did
		// not happen, and runs again on the node now in its place.
		for err != nil && strings.Contains(err.Error(), "Could not find node with given id") && ctx.Err() == nil {
			_, err = chromedp.Run(ctx, a)
		}
		cancel()
		if err != nil {
			p.t.Fatalf("%s: %v\n%s", what, err, p.dump())
		}
	}
}

// until waits until the JavaScript expression is true.
func (p *page) until(what, expr string) {
	p.t.Helper()
	p.do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(poll.Timeout), chromedp.WithPollingInterval(poll.Interval*5)))
}

// eval returns the value of a JavaScript expression (awaited when it is
// a promise).
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, poll.Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v\n%s", expr, err, p.dump())
	}
	return v
}

// dump returns the page's address, message bar and main text, for a
// failure.
func (p *page) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`location.href + "\nstatus: " + document.getElementById("status").innerText + "\nmain:\n" + document.getElementById("main").innerText`))
	if err != nil {
		return "(page unreadable: " + err.Error() + ")"
	}
	return s
}

// open navigates to the control center's hash route and waits until the
// app has shown it (not the page before) and sel is visible.
func (p *page) open(base, hash, sel string) {
	p.t.Helper()
	p.do("open "+hash, chromedp.Navigate(base+"/ui/"+hash))
	p.until("the app to show "+hash, fmt.Sprintf(`document.body.dataset.route === %q`, hash))
	p.do("open "+hash+": wait for "+sel, chromedp.WaitVisible(css(sel)))
}

// login opens the control center at "/", fills the login form and waits
// for the first page. shot names the screenshot of the login page ("":
// none).
func (p *page) login(base, user, password, shot string) {
	p.t.Helper()
	p.do("open the control center", chromedp.Navigate(base+"/"))
	p.do("the login form", chromedp.WaitVisible(css("#login-user")))
	p.until("the redirect from / to /ui/", `location.pathname === "/ui/"`)
	if shot != "" {
		p.shot(shot)
	}
	p.do("log in as "+user,
		chromedp.SendKeys(css("#login-user"), user),
		chromedp.SendKeys(css("#login-password"), password),
		chromedp.Click(css("#login-submit")))
	p.until("logged in as "+user, fmt.Sprintf(`document.getElementById("who-user") && document.getElementById("who-user").innerText === %q`, user))
}

// logout clicks Log out and waits for the login form.
func (p *page) logout() {
	p.t.Helper()
	p.do("log out", chromedp.Click(css("#logout")), chromedp.WaitVisible(css("#login-user")))
}

// confirm clicks the confirmation dialog's OK button.
func (p *page) confirm(what string) {
	p.t.Helper()
	p.do(what+": the confirmation", chromedp.WaitVisible(css("#confirm-ok")), chromedp.Click(css("#confirm-ok")),
		chromedp.WaitNotVisible(css("#confirm")))
}

// text returns the visible text of the first element matching sel ("" when none).
func (p *page) text(sel string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel))
}

// present says whether an element matches sel.
func (p *page) present(sel string) bool {
	p.t.Helper()
	return eval[bool](p, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
}

// shot saves the page as docs/control-center/name.png when -screenshots
// is set.
func (p *page) shot(name string) {
	p.t.Helper()
	if !*screenshots {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, poll.Timeout)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(ccScreenshotsD, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ccScreenshotsD, name+".png"), b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("saved %s/%s.png", ccScreenshotsD, name)
}

// TestControlCenter clicks through the control center as an operator
// would, against a real broker and real MQTT clients:
//
//   - log in (through the redirect of "/");
//   - the overview's live charts fill and the red banner says allow-all
//     is loaded;
//   - find a connected client by prefix, open its detail (subscriptions
//     included), disconnect it with "prevent the will", and see the real
//     client disconnected and the page saying offline; its filter's
//     subscribers list it;
//   - invalidate an offline session, and see the real client find no
//     session when it reconnects;
//   - view a retained message as text and hex, with its user properties;
//   - disable and enable allow-all, the banner following;
//   - start and stop a trace recording, fetch its zip and the zip of
//     all through the page's download links, delete it;
//   - log in as sam, whose role lacks userproperties.view and every
//     state-changing permission: the retained message shows its payload
//     but no user property on any page, and no button sam may not use.
func TestControlCenter(t *testing.T) {
	ctx := browser(t)
	b := startControlCenterBroker(t)
	p := &page{t: t, ctx: ctx}

	// The clients the pages show: a connected subscriber, an offline
	// session, and a retained message with a user property.
	// Each MQTT operation gets poll.Timeout of its own: one context for
	// the whole test ran out before its later publishes on a slow machine
	// (or with -screenshots).
	opCtx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), poll.Timeout)
		t.Cleanup(cancel)
		return c
	}
	// watched receives what a watcher of ui/will/# gets: the will of
	// ccSubClient, if the broker publishes it, and the marker after it.
	watched := make(chan *paho.Publish, 16)
	watcher, _ := b.connect5With(t, "will-watcher", "", true, 3600, nil, watched)
	if _, err := watcher.Subscribe(opCtx(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ui/will/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	sub, _ := b.connect5With(t, ccSubClient, "dashboard", true, 3600,
		&paho.WillMessage{Topic: ccWillTopic, QoS: 1, Payload: []byte(ccSubClient + " lost")}, nil)
	if _, err := sub.Subscribe(opCtx(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ui/commands/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	off, _ := b.connect5(t, ccOfflineID, "meter", true, 3600)
	if _, err := off.Subscribe(opCtx(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ui/offline/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := off.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	pub, _ := b.connect5(t, ccPublisherID, "gateway", true, 0)
	if _, err := pub.Publish(opCtx(), &paho.Publish{Topic: ccRetainTopic, QoS: 1, Retain: true, Payload: []byte(ccRetained),
		Properties: &paho.PublishProperties{ContentType: "application/json",
			User: paho.UserProperties{{Key: ccPropKey, Value: ccPropValue}}}}); err != nil {
		t.Fatalf("publish the retained message: %v", err)
	}
	if _, err := pub.Publish(opCtx(), &paho.Publish{Topic: ccBinaryTopic, QoS: 1, Retain: true, Payload: []byte{0xff, 0x00, 0x80, 0x41}}); err != nil {
		t.Fatalf("publish the binary retained message: %v", err)
	}
	inv, _ := b.connect5(t, ccInvalidID, "meter", true, 3600)
	poll.Until(t, "the offline session listed as offline by the API", func() bool {
		code, body := b.api(t, "GET", "/clients/"+ccOfflineID)
		return code == 200 && strings.Contains(body, `"connected":false`)
	})

	// Log in.
	p.login(b.base, ccAdminUser, ccAdminPass, "login")

	// Overview: the charts fill from /api/v1/broker, the banner warns.
	p.open(b.base, "#/overview", "#chart-connections")
	samples := 2
	if *screenshots {
		samples = 20 // a chart worth showing
		stop := publishLoad(t, pub)
		defer stop()
	}
	for n := 2; n <= samples; n += 2 { // a poll every two seconds: each wait well within poll.Timeout
		p.until("the overview's charts to have samples", fmt.Sprintf(
			`["chart-connections", "chart-rates", "chart-stress"].every((id) => Number(document.getElementById(id).dataset.samples || 0) >= %d)`, n))
	}
	p.until("the warnings banner to say allow-all is loaded",
		`!document.getElementById("warnings").hidden && document.getElementById("warnings").innerText.includes("allow-all is loaded")`)
	if got := p.text("#stress-level"); !strings.Contains(got, "/ 10") {
		t.Errorf("stress level shows %q", got)
	}
	// A failed poll shows its error until a poll succeeds; hiding and
	// showing the tab polls at once. The network fails /api/v1/broker
	// while window.brokerDown is set.
	eval[bool](p, `(() => { const f = window.fetch; window.fetch = (u, i) => window.brokerDown && String(u).endsWith("/api/v1/broker") ? `+
		`Promise.reject(new TypeError("network down")) : f(u, i); window.brokerDown = true; return true; })()`)
	setHidden(p, true)
	setHidden(p, false)
	p.until("the failed poll's error", `document.getElementById("status").className.includes("error") && !document.getElementById("status").hidden && document.getElementById("status").innerText.includes("network down")`)
	// meanwhile another page cannot read the warnings either, and says so
	eval[bool](p, `(location.hash = "#/clients", true)`)
	p.until("the warnings' error on the clients page", `document.body.dataset.route === "#/clients" && !document.getElementById("status").hidden && `+
		`document.getElementById("status").innerText.startsWith("The broker's warnings could not be read")`)
	eval[bool](p, `(location.hash = "#/overview", true)`)
	p.until("the overview again, its poll failing", `document.body.dataset.route === "#/overview" && !document.getElementById("status").hidden && document.getElementById("status").innerText.includes("network down")`)
	eval[bool](p, `(window.brokerDown = false, true)`)
	setHidden(p, true)
	setHidden(p, false)
	p.until("the error gone once a poll succeeds", `document.getElementById("status").hidden`)
	p.shot("overview")

	// Clients: search by prefix, open the connected one.
	p.open(b.base, "#/clients", "#search-prefix")
	p.until("every session listed", fmt.Sprintf(`["%s", "%s", "%s"].every((id) => document.querySelector('tr[data-client="' + id + '"]'))`,
		ccSubClient, ccOfflineID, ccPublisherID))
	p.shot("clients")
	p.do("search for ui-sub", chromedp.SendKeys(css("#search-prefix"), "ui-sub"), chromedp.Click(css("#search-submit")))
	p.until("the search's own page", `document.body.dataset.route === "#/clients?prefix=ui-sub"`)
	p.do("the search's result", chromedp.WaitVisible(css(`tr[data-client="`+ccSubClient+`"] a.client-link`)))
	if p.present(`tr[data-client="` + ccOfflineID + `"]`) {
		t.Errorf("the search for prefix ui-sub lists %s\n%s", ccOfflineID, p.dump())
	}
	p.do("open "+ccSubClient, chromedp.Click(css(`tr[data-client="`+ccSubClient+`"] a.client-link`)),
		chromedp.WaitVisible(css("#client-state")))
	if got := p.text("#client-state"); got != "connected" {
		t.Fatalf("%s shows state %q, want connected\n%s", ccSubClient, got, p.dump())
	}
	if got := p.text("#client-subscriptions"); !strings.Contains(got, "ui/commands/#") {
		t.Errorf("the subscriptions of %s show %q, want ui/commands/#", ccSubClient, got)
	}
	for sel, want := range map[string]string{
		"#client-username":          "dashboard",
		"#client-keepalive":         "30 s",
		"#client-authenticated-by":  "allow-all",
		"#client-queued":            "0 of at most ",
		"#client-queue-full-policy": "drop-new", // the default mqtt.queue_full_policy
	} {
		if got := p.text(sel); !strings.HasPrefix(got, want) {
			t.Errorf("%s of %s shows %q, want it to start with %q", sel, ccSubClient, got, want)
		}
	}
	p.shot("client")

	// Disconnect it, preventing the will: the real client is disconnected.
	p.do("disconnect "+ccSubClient, chromedp.Click(css("#disconnect")), chromedp.WaitVisible(css("#prevent-will")),
		chromedp.Click(css("#prevent-will")))
	p.confirm("disconnect " + ccSubClient)
	select {
	case err := <-sub.gone:
		if err == nil || err.Error() != "DISCONNECT reason 0x98" {
			t.Errorf("%s: the broker ended the connection with %v, want DISCONNECT reason 0x98 (administrative action)", ccSubClient, err)
		}
	case <-time.After(poll.Timeout):
		t.Fatalf("%s still connected %v after Disconnect in the control center\n%s", ccSubClient, poll.Timeout, p.dump())
	}
	p.until("the detail to show "+ccSubClient+" offline", `document.getElementById("client-state") && document.getElementById("client-state").innerText === "offline"`)
	// Its will is not published: a marker published now reaches the
	// watcher after any will the broker published at the disconnect
	// (the session is offline, its will gone), so the marker arriving
	// first proves there was none.
	if _, err := pub.Publish(opCtx(), &paho.Publish{Topic: ccMarkerTopic, QoS: 1, Payload: []byte("marker")}); err != nil {
		t.Fatalf("publish the marker: %v", err)
	}
	for marker := false; !marker; {
		select {
		case m := <-watched:
			if m.Topic == ccWillTopic {
				t.Errorf("the will of %s was published (%q) although the control center's \"prevent the will\" box was ticked", ccSubClient, m.Payload)
			}
			marker = m.Topic == ccMarkerTopic
		case <-time.After(poll.Timeout):
			t.Fatalf("the marker on %s did not reach the watcher within %v", ccMarkerTopic, poll.Timeout)
		}
	}
	if p.present("#disconnect") {
		t.Errorf("the Disconnect button is still shown for an offline client")
	}
	// Its subscription's filter leads to the filter's subscribers: the
	// offline session is still one.
	p.do("open the subscribers of ui/commands/#", chromedp.Click(css("#client-subscriptions a")),
		chromedp.WaitVisible(css(`#subscriptions-result tr[data-client="`+ccSubClient+`"]`)))
	// A client that left while its page was open: Disconnect answers 409,
	// and the page says so and shows the client offline.
	p.open(b.base, "#/clients/will-watcher", "#disconnect")
	if err := watcher.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "will-watcher offline for the API", func() bool {
		code, body := b.api(t, "GET", "/clients/will-watcher")
		return code == 200 && strings.Contains(body, `"connected":false`)
	})
	p.do("disconnect will-watcher, gone already", chromedp.Click(css("#disconnect")), chromedp.WaitVisible(css("#prevent-will")))
	p.confirm("disconnect will-watcher")
	p.until("the 409 said and the client shown offline", `document.getElementById("status").className.includes("error") && `+
		`document.getElementById("client-state") && document.getElementById("client-state").innerText === "offline"`)

	// Invalidate the offline session: the real client finds none.
	p.open(b.base, "#/clients/"+ccOfflineID, "#invalidate")
	p.do("invalidate "+ccOfflineID, chromedp.Click(css("#invalidate")))
	p.confirm("invalidate " + ccOfflineID)
	b.sessionGone(t, p, ccOfflineID)
	// Invalidate a connected client's session: the real client is
	// disconnected and finds no session when it comes back.
	p.open(b.base, "#/clients/"+ccInvalidID, "#invalidate")
	if got := p.text("#client-state"); got != "connected" {
		t.Fatalf("%s shows state %q, want connected\n%s", ccInvalidID, got, p.dump())
	}
	p.do("invalidate "+ccInvalidID, chromedp.Click(css("#invalidate")))
	p.confirm("invalidate " + ccInvalidID)
	select {
	case err := <-inv.gone:
		t.Logf("%s: the broker ended the connection: %v", ccInvalidID, err)
	case <-time.After(poll.Timeout):
		t.Fatalf("%s still connected %v after its session was invalidated in the control center\n%s", ccInvalidID, poll.Timeout, p.dump())
	}
	b.sessionGone(t, p, ccInvalidID)

	// A retained message: its payload as text and hex, its user property.
	p.open(b.base, "#/retained?filter=ui%2F%23", `tr[data-topic="`+ccRetainTopic+`"] a`)
	p.do("open the retained message", chromedp.Click(css(`tr[data-topic="`+ccRetainTopic+`"] a`)),
		chromedp.WaitVisible(css("#payload")))
	if got := p.text("#payload"); got != ccRetained {
		t.Errorf("payload as text %q, want %q", got, ccRetained)
	}
	if got := p.text("#user-properties"); !strings.Contains(got, ccPropKey) || !strings.Contains(got, ccPropValue) {
		t.Errorf("alice (userproperties.view) sees user properties %q, want %s=%s\n%s", got, ccPropKey, ccPropValue, p.dump())
	}
	p.shot("retained")
	p.do("show the payload in hex", chromedp.Click(css("#encoding-hex")))
	wantHex := hex.EncodeToString([]byte(ccRetained))
	p.until("the payload in hex", fmt.Sprintf(
		`document.getElementById("payload") && document.getElementById("payload").innerText.replace(/[^0-9a-fA-F]/g, "").toLowerCase() === %q`, wantHex))
	p.do("show the payload as JSON", chromedp.Click(css("#encoding-json")))
	wantJSON := "{\n  \"celsius\": 21.5,\n  \"sensor\": \"ui-7\"\n}" // the broker indents it
	p.until("the payload as indented JSON", fmt.Sprintf(
		`document.querySelector("#encoding-json.on") !== null && document.getElementById("payload") && document.getElementById("payload").textContent === %q`, wantJSON))

	// A binary retained message: the broker picks hex, the page shows it
	// with its properties and Delete; asked for text, the page says why
	// not beside the payload and keeps both. Delete removes it.
	p.open(b.base, "#/retained?filter=ui%2F%23", `tr[data-topic="`+ccBinaryTopic+`"] a`)
	p.do("open the binary retained message", chromedp.Click(css(`tr[data-topic="`+ccBinaryTopic+`"] a`)),
		chromedp.WaitVisible(css("#retained-properties")))
	if got := p.text("#payload"); strings.ReplaceAll(got, " ", "") != "ff008041" || !p.present("#encoding-hex.on") {
		t.Errorf("the binary payload shows %q (hex selected: %v), want ff008041 in hex\n%s", got, p.present("#encoding-hex.on"), p.dump())
	}
	p.do("the binary payload as text", chromedp.Click(css("#encoding-text")), chromedp.WaitVisible(css("#payload-error")))
	if got := p.text("#payload-error"); !strings.Contains(got, "not UTF-8") {
		t.Errorf("the payload error says %q, want the broker's reason (not UTF-8)", got)
	}
	if !p.present("#retained-properties") || !p.present("#retained-delete") {
		t.Fatalf("after the text view failed the properties or the Delete button are gone\n%s", p.dump())
	}
	p.do("delete the binary retained message", chromedp.Click(css("#retained-delete")))
	p.confirm("delete " + ccBinaryTopic)
	p.until("the retained list after the delete", `document.body.dataset.route === "#/retained"`)
	if code, body := b.api(t, "GET", "/retained/message?topic="+strings.ReplaceAll(ccBinaryTopic, "/", "%2F")); code != 404 {
		t.Errorf("the broker still has the retained message on %s after Delete: %d %s", ccBinaryTopic, code, body)
	}

	// Extensions: disable allow-all, the banner follows; enable it again.
	p.open(b.base, "#/extensions", `tr[data-extension="allow-all"] button[data-action="disable"]`)
	p.do("disable allow-all", chromedp.Click(css(`tr[data-extension="allow-all"] button[data-action="disable"]`)))
	p.confirm("disable allow-all")
	p.do("allow-all disabled", chromedp.WaitVisible(css(`tr[data-extension="allow-all"] button[data-action="enable"]`)))
	p.open(b.base, "#/overview", "#chart-connections")
	p.until("the banner to say no security extension is loaded", `document.getElementById("warnings").innerText.includes("no security extension loaded")`)
	p.open(b.base, "#/extensions", `tr[data-extension="allow-all"] button[data-action="enable"]`)
	p.do("enable allow-all", chromedp.Click(css(`tr[data-extension="allow-all"] button[data-action="enable"]`)),
		chromedp.WaitVisible(css(`tr[data-extension="allow-all"] button[data-action="disable"]`)))
	p.until("allow-all running", `document.querySelector('tr[data-extension="allow-all"] .state').innerText === "running"`)
	// Its activity: the page polls; a client authenticated by the new
	// version shows as a call, and none failed.
	counted, _ := b.connect5(t, "ui-counted", "meter", true, 0)
	_ = counted.Disconnect(&paho.Disconnect{ReasonCode: 0})
	p.until("allow-all's activity to count the CONNECT", `/^[1-9][0-9,]* calls?, 0 failed/.test(document.querySelector('tr[data-extension="allow-all"] .activity').innerText)`)
	p.shot("extensions")
	p.until("the banner, on the extensions page, to say allow-all is loaded again",
		`document.getElementById("warnings").innerText.includes("allow-all is loaded") && !document.getElementById("warnings").innerText.includes("no security extension")`)

	// Trace recordings: start one selecting PUBLISH packets of ui-*
	// clients, record a QoS 1 publish (its PUBACK is not selected), stop
	// it, download its zip and the zip of all (saved by the browser), and
	// check what they hold; then the page's polling while hidden, a
	// download the API refuses, and delete.
	p.open(b.base, "#/traces", "#trace-start")
	eval[bool](p, `performance.setResourceTimingBufferSize(100000), true`) // every /api/v1/traces call stays listed
	p.do("start a recording",
		chromedp.SendKeys(css("#trace-client"), "ui-*"),
		chromedp.Click(css(`input[data-packet="PUBLISH"]`)),
		chromedp.Click(css("#trace-submit")),
		chromedp.WaitVisible(css(`tr[data-recording] button[data-action="stop"]`)))
	if got := p.text("tr[data-recording] td:nth-child(3)"); !strings.Contains(got, "PUBLISH") || strings.Contains(got, "every packet type") {
		t.Errorf("the recording selects %q, want PUBLISH only", got)
	}
	id := eval[string](p, `document.querySelector("tr[data-recording]").dataset.recording`)
	if _, err := pub.Publish(opCtx(), &paho.Publish{Topic: ccTraceTopic, QoS: 1, Payload: []byte("traced")}); err != nil {
		t.Fatalf("publish %s: %v", ccTraceTopic, err)
	}
	p.until("the recording to count the PUBLISH", `Number(document.querySelector("tr[data-recording] td:nth-child(5)").innerText.replace(/,/g, "")) >= 1`)
	if *screenshots { // the load of publishLoad, recorded
		p.until("the recording to have packets", `Number(document.querySelector("tr[data-recording] td:nth-child(5)").innerText.replace(/,/g, "")) >= 100`)
	}
	p.shot("traces")
	p.do("stop the recording", chromedp.Click(css(`tr[data-recording] button[data-action="stop"]`)),
		chromedp.WaitVisible(css(`tr[data-recording] button[data-action="delete"]`)))
	downloads := t.TempDir()
	p.do("let the browser save downloads", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}))
	for _, d := range []struct{ button, file string }{
		{`tr[data-recording] button[data-action="download"]`, "propolis-trace-" + id + ".zip"},
		{`#trace-download-all`, "propolis-traces.zip"},
	} {
		p.do("download "+d.file, chromedp.Click(css(d.button)))
		checkTraceZip(t, filepath.Join(downloads, d.file))
	}
	// Each /api/v1/traces call of the page ends before the next starts:
	// one polling loop, whatever the actions asked for meanwhile.
	if n := eval[int](p, `(() => { const l = performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/api/v1/traces")); `+
		`let n = 0; for (let i = 1; i < l.length; i++) if (l[i].startTime < l[i-1].responseEnd) n++; return n; })()`); n != 0 {
		t.Errorf("the traces page had %d overlapping list calls: more than one polling loop", n)
	}

	// Hidden, the page stops polling: the recording deleted behind its
	// back stays listed, and no list call is made. Its download, refused
	// by the API, says why in the message bar. Shown again, the page
	// polls at once and the recording goes.
	setHidden(p, true)
	p.until("the polling paused", `document.body.dataset.poll === "paused"`)
	calls := eval[int](p, `performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/api/v1/traces")).length`)
	if code, body := b.api(t, "DELETE", "/traces/"+id); code != 204 {
		t.Fatalf("DELETE /api/v1/traces/%s: %d %s", id, code, body)
	}
	eval[bool](p, `document.querySelector('tr[data-recording] button[data-action="download"]').click(), true`)
	p.until("the refused download's error in the message bar", fmt.Sprintf(
		`document.getElementById("status").className.includes("error") && document.getElementById("status").innerText.includes(%q)`,
		"download /api/v1/traces/"+id+"/download: "))
	if got := p.text("#status"); !strings.Contains(got, "no such trace recording") {
		t.Errorf("the message bar says %q, want the API's error (no such trace recording)", got)
	}
	if now := eval[int](p, `performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/api/v1/traces")).length`); now != calls ||
		!p.present(`tr[data-recording="`+id+`"]`) {
		t.Errorf("the hidden page polled: %d list calls after %d, recording listed: %v", now, calls, p.present(`tr[data-recording="`+id+`"]`))
	}
	setHidden(p, false)
	p.do("the deleted recording gone once the page shows", chromedp.WaitNotPresent(css(`tr[data-recording]`)))

	// A logout the broker does not confirm (here the network fails it)
	// says so, and alice stays logged in, visibly and for the API.
	eval[bool](p, `(() => { const f = window.fetch; window.fetch = (u, i) => String(u).endsWith("/api/v1/logout") ? `+
		`Promise.reject(new TypeError("network down")) : f(u, i); return true; })()`)
	p.do("log out, failing", chromedp.Click(css("#logout")))
	p.until("the failed logout said", `document.getElementById("status").className.includes("error") && document.getElementById("status").innerText.startsWith("Log out failed")`)
	if got := p.text("#who-user"); got != ccAdminUser || !p.present("#logout:not([hidden])") || p.present("#login-user") {
		t.Errorf("after a failed logout the page shows user %q, the login form: %v\n%s", got, p.present("#login-user"), p.dump())
	}
	if me := eval[string](p, `fetch("/api/v1/me", {credentials: "same-origin"}).then((r) => String(r.status))`); me != "200" {
		t.Errorf("GET /api/v1/me after the failed logout: %s, want 200", me)
	}
	p.do("reload the page", chromedp.Reload())
	p.until("the page reloaded, alice still logged in", `document.getElementById("who-user") && document.getElementById("who-user").innerText === "alice"`)

	// alice's session ends (logged out elsewhere) while she is on the
	// extensions page: its next call shows the login. sam logs in there
	// and lands on his first page, not on alice's.
	p.open(b.base, "#/extensions", `tr[data-extension="allow-all"]`)
	if code := eval[int](p, `fetch("/api/v1/me").then((r) => r.json()).then((me) => fetch("/api/v1/logout", `+
		`{method: "POST", headers: {"X-CSRF-Token": me.csrf_token}})).then((r) => r.status)`); code != 204 {
		t.Fatalf("POST /api/v1/logout from the page: %d, want 204", code)
	}
	p.do("the session's end noticed", chromedp.WaitVisible(css("#login-user")))
	p.do("log in as "+ccSupportUser,
		chromedp.SendKeys(css("#login-user"), ccSupportUser),
		chromedp.SendKeys(css("#login-password"), ccSupportPass),
		chromedp.Click(css("#login-submit")))
	p.until("sam on his first page, the overview", `document.getElementById("who-user") && document.getElementById("who-user").innerText === "sam" && document.body.dataset.route === "#/overview"`)

	// sam: no user properties anywhere, no button sam may not use.
	noSecret := func(where string) {
		t.Helper()
		body := eval[string](p, `document.body.innerText`)
		if strings.Contains(body, ccPropKey) || strings.Contains(body, ccPropValue) || p.present("#user-properties") {
			t.Errorf("sam (no userproperties.view) sees a user property on %s:\n%s", where, body)
		}
	}
	if p.present(`#nav a[data-page="traces"]:not([hidden])`) {
		t.Errorf("sam (no trace.manage) is shown the Trace recordings link")
	}
	p.open(b.base, "#/retained/message?topic="+strings.ReplaceAll(ccRetainTopic, "/", "%2F"), "#payload")
	for _, enc := range []string{"text", "hex", "json"} {
		p.do("sam: the payload as "+enc, chromedp.Click(css("#encoding-"+enc)))
		p.until("sam: the payload shown as "+enc, fmt.Sprintf(`document.querySelector("#encoding-%s.on") !== null && document.getElementById("payload") !== null`, enc))
		noSecret("the retained message as " + enc)
	}
	if p.present("#retained-delete") {
		t.Errorf("sam (no retained.delete) is shown the Delete button")
	}
	// Whatever the page shows, the API answers sam's session with no
	// user property either.
	raw := eval[string](p, fmt.Sprintf(`fetch("/api/v1/retained/message?topic=%s", {credentials: "same-origin"}).then((r) => r.text())`,
		strings.ReplaceAll(ccRetainTopic, "/", "%2F")))
	if strings.Contains(raw, ccPropKey) || strings.Contains(raw, ccPropValue) || strings.Contains(raw, "user_properties") {
		t.Errorf("the API answers sam's session with user properties: %s", raw)
	}
	p.open(b.base, "#/clients/"+ccSubClient, "#client-state")
	noSecret("the client detail")
	if p.present("#disconnect") || p.present("#invalidate") {
		t.Errorf("sam (no clients.disconnect, sessions.invalidate) is shown Disconnect or Invalidate\n%s", p.dump())
	}
	p.open(b.base, "#/extensions", `tr[data-extension="allow-all"]`)
	if p.present(`button[data-action]`) {
		t.Errorf("sam (no extensions.manage) is shown Enable or Disable")
	}
	p.open(b.base, "#/overview", "#stress-level")
	noSecret("the overview")
	if p.present("details.config") {
		t.Errorf("sam (no config.view) is shown the configuration")
	}
	p.open(b.base, "#/traces", "main h1")
	if got := p.text("main h1"); got != "Not permitted" {
		t.Errorf("sam opening #/traces sees %q, want Not permitted", got)
	}
}

// setHidden tells the page its tab is hidden (or visible again), as the
// browser does when the user switches tabs: document.hidden,
// visibilityState and the visibilitychange event. (Headless Chromium
// keeps every tab visible.)
func setHidden(p *page, hidden bool) {
	p.t.Helper()
	eval[bool](p, fmt.Sprintf(`(() => { const h = %t; `+
		`Object.defineProperty(document, "hidden", {configurable: true, get: () => h}); `+
		`Object.defineProperty(document, "visibilityState", {configurable: true, get: () => h ? "hidden" : "visible"}); `+
		`document.dispatchEvent(new Event("visibilitychange")); return true; })()`, hidden))
}

// checkTraceZip waits until the browser has saved the zip at path, and
// checks that it holds the recorded PUBLISH of ccTraceTopic and no other
// packet type (the recording selected PUBLISH only).
func checkTraceZip(t *testing.T, path string) {
	t.Helper()
	// The file may show before the browser has written all of it: wait
	// until it reads as a whole zip.
	var z *zip.Reader
	poll.Settle(t, "the browser to save "+filepath.Base(path), func() string {
		data, err := os.ReadFile(path)
		if err == nil {
			z, err = zip.NewReader(bytes.NewReader(data), int64(len(data)))
		}
		if err != nil {
			return fmt.Sprintf("%s: %v", path, err)
		}
		return ""
	})
	types := map[string]int{}
	traced := false
	for _, f := range z.File {
		if !strings.HasSuffix(f.Name, ".jsonl") {
			continue
		}
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l struct{ Type, Topic string }
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %s: %v", path, f.Name, err)
			}
			types[l.Type]++
			traced = traced || l.Type == "PUBLISH" && l.Topic == ccTraceTopic
		}
		r.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if !traced || len(types) != 1 {
		t.Errorf("%s holds packets %v (the PUBLISH on %s: %v), want PUBLISH only, that one among them", filepath.Base(path), types, ccTraceTopic, traced)
	}
}

// publishLoad publishes QoS 0 messages from c, paced, until stop is
// called, so that the overview's message rate chart has something to
// show in the screenshots.
func publishLoad(t *testing.T, c *ccClient) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond) // paces the load
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
			payload, _ := json.Marshal(map[string]int{"n": i})
			_, _ = c.Publish(ctx, &paho.Publish{Topic: "ui/commands/load", QoS: 0, Payload: payload})
			cancel()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// TestControlCenterLocal: with no admin user configured, the endpoint
// serves loopback only and the control center opens without a login, as
// the local user with every permission, and says so beside the user name.
func TestControlCenterLocal(t *testing.T) {
	ctx := browser(t)
	_, base, _, _ := startAllowAll(t)
	p := &page{t: t, ctx: ctx}
	p.do("open the control center", chromedp.Navigate(base+"/"))
	p.do("the overview, with no login", chromedp.WaitVisible(css("#chart-connections")))
	if got := p.text("#who"); !strings.Contains(got, "local") || !strings.Contains(got, "no login") {
		t.Errorf("the header says %q, want the local user and no login", got)
	}
	if p.present("#logout:not([hidden])") {
		t.Errorf("a Log out button is shown to the local user")
	}
	if p.present("#cluster-mismatch:not([hidden])") {
		t.Errorf("a broker without a cluster section shows the cluster banner")
	}
	for _, link := range []string{"overview", "clients", "retained", "extensions", "traces"} {
		if !p.present(`#nav a[data-page="` + link + `"]:not([hidden])`) {
			t.Errorf("the local user (every permission) is not shown the %s link", link)
		}
	}
}
