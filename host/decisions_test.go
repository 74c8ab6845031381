package host

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// authzCacheHost loads the authzcache guest (one instance, so that its
// call count is the extension's) with extra manifest lines.
func authzCacheHost(t *testing.T, extra string) (*Host, string) {
	t.Helper()
	ext := t.TempDir()
	installExtension(t, ext, "authzcache", buildGuest(t, "testdata/guests", "authzcache"), 0,
		"services: [auth_cache, storage]\nlimits:\n  pool_size: 1\n  max_pool_size: 1\n  call_deadline: 1m\n"+extra)
	h, _ := newTestHost(t, ext)
	return h, ext
}

// clientOf authenticates client id cid and returns its authorizer.
func clientOf(t *testing.T, h *Host, cid string) broker.ClientAuthorizer {
	t.Helper()
	c := connect("u", "p")
	c.ClientID = cid
	res := h.Authenticate(context.Background(), c)
	if res.Decision != broker.Allow {
		t.Fatalf("authenticate %s: %+v", cid, res)
	}
	return res.Client
}

// TestAuthorizeCacheKeepsMarkedAnswers: an answer marked with cache_result
// in authorize_publish or authorize_subscribe is given again without a
// call for the same question on the same connection, and only then.
func TestAuthorizeCacheKeepsMarkedAnswers(t *testing.T) {
	h, _ := authzCacheHost(t, "")
	a := clientOf(t, h, "a")
	pub := func(c broker.ClientAuthorizer, topic string, qos byte, retain bool) string {
		t.Helper()
		v := c.AuthorizePublish(&broker.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte("x")})
		if v.Decision == broker.Allow {
			return "allow"
		}
		return v.ReasonString
	}
	expect := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: %q, want %q", what, got, want)
		}
	}
	expect("first keep/x", pub(a, "keep/x", 1, false), "call 1")
	expect("keep/x again: the kept answer", pub(a, "keep/x", 1, false), "call 1")
	expect("another QoS is another question", pub(a, "keep/x", 0, false), "call 2")
	expect("retained is another question", pub(a, "keep/x", 1, true), "call 3")
	expect("another topic", pub(a, "keep/y", 1, false), "call 4")
	will := a.AuthorizePublish(&broker.Publish{Topic: "keep/x", QoS: 1, Will: true}).ReasonString
	expect("a will is another question", will, "call 5")
	expect("keep/x still kept after the will", pub(a, "keep/x", 1, false), "call 1")
	expect("pass/x is not kept", pub(a, "pass/x", 1, false), "call 6")
	expect("pass/x again calls", pub(a, "pass/x", 1, false), "call 7")
	expect("keep/x still kept", pub(a, "keep/x", 1, false), "call 1")

	// A kept NEXT passes on to the permissions (unrestricted: allow)
	// without a call: the next call's number shows none was made.
	expect("next/x", pub(a, "next/x", 1, false), "allow")
	expect("next/x again", pub(a, "next/x", 1, false), "allow")
	expect("count after next/x twice", pub(a, "pass/x", 1, false), "call 9")

	// Another connection has answers of its own.
	b := clientOf(t, h, "b")
	expect("keep/x for b", pub(b, "keep/x", 1, false), "call 10")
	expect("keep/x for a", pub(a, "keep/x", 1, false), "call 1")

	// Subscribe answers too, by filter, QoS and shared flag.
	sub := func(filter string, qos byte, shared bool) string {
		t.Helper()
		return a.AuthorizeSubscribe(&broker.Subscribe{Filter: filter, QoS: qos, Shared: shared}).ReasonString
	}
	expect("subscribe keep/#", sub("keep/#", 1, false), "call 11")
	expect("subscribe keep/# again", sub("keep/#", 1, false), "call 11")
	expect("subscribe keep/# shared", sub("keep/#", 1, true), "call 12")
	expect("publish keep/# is not the filter's answer", pub(a, "keep/#", 1, false), "call 13")

	if st := statusOf(t, h, "authzcache"); st.AuthorizeCacheHits != 6 {
		t.Fatalf("AuthorizeCacheHits = %d, want 6", st.AuthorizeCacheHits)
	}

	// auth_cache_flush ends every connection's kept answers.
	expect("flush", pub(b, "flush", 1, false), "flushed")
	expect("keep/x for a after the flush", pub(a, "keep/x", 1, false), "call 15")
	expect("keep/x for b after the flush", pub(b, "keep/x", 1, false), "call 16")
	expect("kept again after the flush", pub(a, "keep/x", 1, false), "call 15")

	// Marked, but not kept: a flush came while the call ran; the topic is
	// too long to keep.
	expect("flushkeep/x", pub(a, "flushkeep/x", 1, false), "call 17")
	expect("flushkeep/x again", pub(a, "flushkeep/x", 1, false), "call 18")
	long := "keep/" + strings.Repeat("l", abi.MaxKeptName)
	expect("a long topic", pub(a, long, 1, false), "call 19")
	expect("a long topic again", pub(a, long, 1, false), "call 20")
	edge := "keep/" + strings.Repeat("l", abi.MaxKeptName-len("keep/"))
	expect("a topic of the longest kept length", pub(a, edge, 1, false), "call 21")
	expect("kept", pub(a, edge, 1, false), "call 21")
}

// TestAuthorizeCacheNotRateLimited: an answer made while a host service
// was refused RATE_LIMITED is not kept (it was made without what the
// service would have given).
func TestAuthorizeCacheNotRateLimited(t *testing.T) {
	h, _ := authzCacheHost(t, "  service_rate: 1\n  service_burst: 1\n")
	a := clientOf(t, h, "a")
	pub := func(topic string) string {
		return a.AuthorizePublish(&broker.Publish{Topic: topic, QoS: 1}).ReasonString
	}
	if got, again := pub("ratekeep/x"), pub("ratekeep/x"); got != "call 1" || again != "call 2" {
		t.Fatalf("ratekeep/x twice: %q, %q; want call 1, call 2 (not kept)", got, again)
	}
	if got := pub("keep/x"); got != "call 3" { // the rate does not matter to a call without services
		t.Fatalf("keep/x: %q", got)
	}
	if got := pub("keep/x"); got != "call 3" {
		t.Fatalf("keep/x again: %q, want it kept", got)
	}
}

// TestAuthorizeCacheCrashLoop: once the extension is stopped as a crash
// loop, its kept answers are no longer given (the client falls back to
// its permissions), even though nothing else about the connection changed.
func TestAuthorizeCacheCrashLoop(t *testing.T) {
	h, _ := authzCacheHost(t, "")
	a := clientOf(t, h, "a")
	pub := func(topic string) broker.Verdict {
		return a.AuthorizePublish(&broker.Publish{Topic: topic, QoS: 1})
	}
	if v, again := pub("keep/x"), pub("keep/x"); v.ReasonString != "call 1" || again.ReasonString != "call 1" {
		t.Fatalf("before: %+v, %+v", v, again)
	}
	poll.Until(t, "the extension is stopped as a crash loop", func() bool {
		pub("trap/x")
		return statusOf(t, h, "authzcache").State == StateFailed
	})
	// The status says failed before the stop has run: wait for the stop.
	poll.Until(t, "the kept answer is no longer given", func() bool { return pub("keep/x").ReasonString != "call 1" })
	if c := a.(*client); func() int { c.kept.mu.Lock(); defer c.kept.mu.Unlock(); return len(c.kept.byExt) }() != 0 {
		t.Fatal("the stopped extension's table is still held")
	}
}

// TestAuthorizeCacheExpires: a kept answer is used for the seconds the
// extension gave, then the extension is called again.
func TestAuthorizeCacheExpires(t *testing.T) {
	h, _ := authzCacheHost(t, "config:\n  cache_seconds: 1\n")
	a := clientOf(t, h, "a")
	pub := func() string {
		return a.AuthorizePublish(&broker.Publish{Topic: "keep/x", QoS: 1}).ReasonString
	}
	before := monotonic()
	if got := pub(); got != "call 1" {
		t.Fatalf("first: %q", got)
	}
	// Kept for the second given from the call, within a watchdog tick
	// (the coarse clock may be up to one tick behind).
	r := a.(*client).kept.recent.Load()
	if kept := time.Duration(r.d.expires - before); kept > time.Second || kept < time.Second-4*watchdogTick {
		t.Fatalf("kept for %v from before the call, want 1s less at most a few watchdog ticks", kept)
	}
	poll.Until(t, "the kept answer expires", func() bool { return pub() != "call 1" })
	if got := pub(); got != "call 2" {
		t.Fatalf("after expiry, kept again: %q, want call 2", got)
	}
}

// TestAuthorizeCacheEndsWithTheVersion: a reload of the extension ends
// what the old version kept; the new version is called.
func TestAuthorizeCacheEndsWithTheVersion(t *testing.T) {
	h, ext := authzCacheHost(t, "")
	a := clientOf(t, h, "a")
	pub := func() string {
		return a.AuthorizePublish(&broker.Publish{Topic: "keep/x", QoS: 1}).ReasonString
	}
	if got, again := pub(), pub(); got != "call 1" || again != "call 1" {
		t.Fatalf("before the reload: %q, %q", got, again)
	}
	manifest := filepath.Join(ext, "authzcache", ManifestFile)
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte(strings.Replace(string(b), "version: 1.0.0", "version: 1.0.1", 1)+"config:\n  tag: \" v2\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := statusOf(t, h, "authzcache").Version; v != "1.0.1" {
		t.Fatalf("version after the reload: %s", v)
	}
	if got := pub(); got != "call 1 v2" { // the new version's first call
		t.Fatalf("after the reload: %q, want the new version's call 1", got)
	}
	if got := pub(); got != "call 1 v2" {
		t.Fatalf("after the reload, kept: %q", got)
	}
	if hits := statusOf(t, h, "authzcache").AuthorizeCacheHits; hits != 1 {
		t.Fatalf("the new version's hits: %d, want 1", hits)
	}
}

// TestAuthorizeCacheBounded: a connection keeps at most
// limits.authorize_cache_entries answers of an extension.
func TestAuthorizeCacheBounded(t *testing.T) {
	h, _ := authzCacheHost(t, "  authorize_cache_entries: 3\n")
	a := clientOf(t, h, "a")
	for _, topic := range []string{"keep/1", "keep/2", "keep/3", "keep/4", "keep/5", "keep/1", "keep/6"} {
		a.AuthorizePublish(&broker.Publish{Topic: topic, QoS: 1})
		c := a.(*client)
		c.kept.mu.Lock()
		n := len(c.kept.byExt[0].m)
		c.kept.mu.Unlock()
		if n > 3 {
			t.Fatalf("after %s: %d answers kept, limit 3", topic, n)
		}
	}
}

// TestAuthorizeCacheNotForOlderModules: a module built for ABI 1.3 or
// earlier gets NOT_AVAILABLE from cache_result in authorize_publish, as
// under the hosts it was built for, and its answers are not kept.
func TestAuthorizeCacheNotForOlderModules(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "old", wasmFixture("ok/authorize_cache_13"), 0, "")
	h, _ := newTestHost(t, ext)
	a := clientOf(t, h, "a")
	for i := 0; i < 2; i++ {
		v := a.AuthorizePublish(&broker.Publish{Topic: "t", QoS: 1})
		if want := byte(0x80 - abi.StatusNotAvailable); v.Decision != broker.Deny || v.ReasonCode != want {
			t.Fatalf("call %d: %+v, want a deny with code %#x (0x80 minus cache_result's status)", i, v, want)
		}
	}
	if hits := statusOf(t, h, "old").AuthorizeCacheHits; hits != 0 {
		t.Fatalf("hits %d, want 0", hits)
	}
}

// TestStatusFileFollowsCounters: a watching host rewrites the status file
// when only its counters moved, so that `propolis extensions list` against
// a running broker shows calls and kept-verdict hits as they grow, not as
// they were at the last load.
func TestStatusFileFollowsCounters(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "authzcache", buildGuest(t, "testdata/guests", "authzcache"), 0, "")
	file := filepath.Join(t.TempDir(), "extensions-status.json")
	h, err := New(Options{Dir: ext, StatusFile: file, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.statusEvery = 50 * time.Millisecond
	h.Watch()
	a := clientOf(t, h, "a")
	for i := 0; i < 5; i++ {
		a.AuthorizePublish(&broker.Publish{Topic: "next/x", QoS: 1})
	}
	poll.Until(t, "the status file shows the calls and hits", func() bool {
		sts, _, live, err := readStatusFile(file)
		if err != nil || !live || len(sts) != 1 {
			return false
		}
		return sts[0].AuthorizeCacheHits == 4 && sts[0].Calls >= 2 // authenticate and the first publish
	})
}
