package broker_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/broker/topic"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/testpki"
)

// The admin queries (admin.go) on a real broker with real MQTT clients.

// startAdmin runs a broker with a second tcp listener, "tcp2", and a
// websocket listener, "ws".
func startAdmin(t *testing.T) *svcBroker {
	t.Helper()
	b := &svcBroker{t: t, cfg: testConfig(t.TempDir()), rules: &brokertest.Rules{}}
	b.cfg.Listeners = append(b.cfg.Listeners,
		config.Listener{Name: "tcp2", Type: "tcp", Address: "127.0.0.1:0"},
		config.Listener{Name: "ws", Type: "websocket", Address: "127.0.0.1:0", Path: "/mqtt"})
	b.Server, b.addr = startServer(t, b.cfg, broker.Extensions{Authenticator: b.rules, Events: b.rules})
	return b
}

// connectAs connects an MQTT 5 client with a persistent session (600 s)
// through listener, with user name user ("" for none).
func (b *svcBroker) connectAs(id, listener, user string) *client5 {
	b.t.Helper()
	addr := b.addr
	b.addr = b.Addr(listener)
	defer func() { b.addr = addr }()
	c, _ := b.connect5(id, true, 600, func(cp *paho.Connect) {
		if user != "" {
			cp.Username, cp.UsernameFlag = user, true
		}
	})
	return c
}

// ids lists the client ids of a page.
func ids(p broker.ClientPage) []string {
	var out []string
	for _, c := range p.Clients {
		out = append(out, c.ClientID)
	}
	return out
}

func TestListClientsFilters(t *testing.T) {
	b := startAdmin(t)
	before := time.Now().Add(-time.Second)
	b.connectAs("a-1", "tcp", "alice")
	b.connectAs("a-2", "tcp2", "bob")
	b.connectAs("b-1", "tcp", "alice").leave()
	b.connectAs("b-2", "tcp2", "").leave()
	b.awaitOffline("b-1")
	b.awaitOffline("b-2")

	for _, tc := range []struct {
		name string
		q    broker.ClientQuery
		want []string
	}{
		{"all", broker.ClientQuery{}, []string{"a-1", "a-2", "b-1", "b-2"}},
		{"prefix", broker.ClientQuery{Prefix: "a-"}, []string{"a-1", "a-2"}},
		{"prefix none", broker.ClientQuery{Prefix: "c"}, nil},
		{"user name", broker.ClientQuery{Username: "alice"}, []string{"a-1", "b-1"}},
		{"listener", broker.ClientQuery{Listener: "tcp2"}, []string{"a-2", "b-2"}},
		{"connected", broker.ClientQuery{State: broker.ClientsConnected}, []string{"a-1", "a-2"}},
		{"offline", broker.ClientQuery{State: broker.ClientsOffline}, []string{"b-1", "b-2"}},
		{"all filters", broker.ClientQuery{Prefix: "b", Username: "alice", Listener: "tcp", State: broker.ClientsOffline}, []string{"b-1"}},
		{"after", broker.ClientQuery{After: "a-2"}, []string{"b-1", "b-2"}},
	} {
		page, err := b.ListClients(tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := len(tc.want)
		if tc.q.After != "" {
			want = 4 // Total ignores the cursor
		}
		if got := ids(page); !slices.Equal(got, tc.want) || page.Total != want || page.Next != "" {
			t.Errorf("%s: %v total %d next %q; want %v total %d, no next", tc.name, got, page.Total, page.Next, tc.want, want)
		}
	}

	page, _ := b.ListClients(broker.ClientQuery{})
	for _, c := range page.Clients {
		if c.KeepAlive != 30 || c.Restored || c.QueueFullPolicy != "drop-new" || c.AuthenticatedBy != "brokertest-rules" {
			t.Errorf("%s: keepalive %d, policy %q, authenticated by %q; want 30, drop-new, brokertest-rules",
				c.ClientID, c.KeepAlive, c.QueueFullPolicy, c.AuthenticatedBy)
		}
		if c.Connected != c.OfflineSince.IsZero() {
			t.Errorf("%s: connected %v, offline since %v", c.ClientID, c.Connected, c.OfflineSince)
		}
		if !c.Connected && (c.OfflineSince.Before(before.Truncate(time.Second)) || c.OfflineSince.After(time.Now())) {
			t.Errorf("%s: offline since %v, want since the test began", c.ClientID, c.OfflineSince)
		}
		if one, ok := b.Client(c.ClientID); !ok || one.ClientID != c.ClientID || one.Connected != c.Connected || one.Listener != c.Listener {
			t.Errorf("Client(%s) = %+v, listed as %+v", c.ClientID, one, c)
		}
	}
}

// TestListClientsRestored: a session restored at start-up is listed
// offline, since when it went offline, with no deciding extension until
// its client reconnects.
func TestListClientsRestored(t *testing.T) {
	b := startAdmin(t)
	b.connectAs("r", "tcp", "").leave()
	b.awaitOffline("r")
	was, _ := b.Client("r")
	b.restart()
	page, err := b.ListClients(broker.ClientQuery{State: broker.ClientsOffline})
	if err != nil || len(page.Clients) != 1 {
		t.Fatalf("offline after restart: %+v, %v", page, err)
	}
	c := page.Clients[0]
	if c.ClientID != "r" || c.AuthenticatedBy != "" || c.KeepAlive != 0 || !c.Restored || !c.OfflineSince.Equal(was.OfflineSince) {
		t.Errorf("restored: %+v; want r, restored, no deciding extension, keepalive 0, offline since %v", c, was.OfflineSince)
	}
	b.connect5("r", false, 600, nil)
	if c, _ := b.Client("r"); !c.Connected || c.AuthenticatedBy != "brokertest-rules" || !c.OfflineSince.IsZero() {
		t.Errorf("reconnected: %+v", c)
	}
}

func TestListClientsBadArguments(t *testing.T) {
	b := startAdmin(t)
	for _, tc := range []struct {
		q   broker.ClientQuery
		msg string
	}{
		{broker.ClientQuery{Limit: -1}, "list clients: invalid argument: limit -1, want 1 to 1000 (0: 100)"},
		{broker.ClientQuery{Limit: 1001}, "list clients: invalid argument: limit 1001, want 1 to 1000 (0: 100)"},
		{broker.ClientQuery{State: 3}, "list clients: invalid argument: state 3, want 0 (all), 1 (connected) or 2 (offline)"},
		{broker.ClientQuery{State: -1}, "list clients: invalid argument: state -1, want 0 (all), 1 (connected) or 2 (offline)"},
		{broker.ClientQuery{Listener: "tcp3"}, `list clients: invalid argument: no listener "tcp3" (listeners: "tcp", "tcp2", "ws")`},
	} {
		_, err := b.ListClients(tc.q)
		errorIs(t, err, broker.ErrInvalidArgument, tc.msg)
	}
	if page, err := b.ListClients(broker.ClientQuery{Limit: 1000}); err != nil || page.Total != 0 || len(page.Clients) != 0 {
		t.Errorf("limit 1000 on no session: %+v, %v", page, err)
	}
}

// TestListClientsPages pages through sessions while some appear and
// others end between pages: none is listed twice, the list is sorted,
// and every session that existed throughout is listed.
func TestListClientsPages(t *testing.T) {
	b := startAdmin(t)
	var steady []string
	for i := range 23 {
		id := fmt.Sprintf("c%02d", i)
		c := b.connectAs(id, "tcp", "")
		if i%3 == 0 {
			c.leave()
			b.awaitOffline(id)
		}
		steady = append(steady, id)
	}
	// Sessions that end between pages: one already listed, one not yet.
	b.connectAs("c01x", "tcp", "")
	b.connectAs("c15x", "tcp", "")
	var listed []string
	q := broker.ClientQuery{Limit: 5}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("more than 10 pages: %v", listed)
		}
		page, err := b.ListClients(q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Clients) > 5 {
			t.Fatalf("page of %d", len(page.Clients))
		}
		listed = append(listed, ids(page)...)
		switch pages {
		case 0:
			if page.Total != 25 || page.Next != "c03" {
				t.Errorf("first page: total %d, next %q; want 25, c03", page.Total, page.Next)
			}
			for _, id := range []string{"c01x", "c15x"} {
				if err := b.InvalidateSession(id); err != nil {
					t.Fatal(err)
				}
			}
			b.connectAs("c10x", "tcp", "") // appears after the cursor
			b.connectAs("c00x", "tcp", "") // appears before it
		case 1:
			if page.Total != 25 {
				t.Errorf("second page: total %d, want 25", page.Total)
			}
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if !slices.IsSorted(listed) || len(slices.Compact(slices.Clone(listed))) != len(listed) {
		t.Errorf("listed %v: not sorted or twice", listed)
	}
	for _, id := range steady {
		if !slices.Contains(listed, id) {
			t.Errorf("%s not listed: %v", id, listed)
		}
	}
	for _, id := range []string{"c15x", "c00x"} {
		if slices.Contains(listed, id) {
			t.Errorf("%s listed: %v", id, listed)
		}
	}
	if !slices.Contains(listed, "c10x") || !slices.Contains(listed, "c01x") {
		t.Errorf("c10x (new after the cursor) or c01x (listed before it ended) missing: %v", listed)
	}
}

// TestListClientsChurn lists clients while others connect, leave and are
// invalidated (run it with -race): every page is sorted, every session
// that exists throughout is listed once per pass.
func TestListClientsChurn(t *testing.T) {
	b := startAdmin(t)
	for i := range 12 {
		b.connectAs(fmt.Sprintf("s%02d", i), "tcp", "")
	}
	stop := make(chan struct{})
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var listed []string
			q := broker.ClientQuery{Limit: 4, State: broker.ClientsAll}
			for {
				page, err := b.ListClients(q)
				if err != nil {
					errs <- err
					return
				}
				listed = append(listed, ids(page)...)
				if page.Next == "" {
					break
				}
				q.After = page.Next
			}
			steady := 0
			for _, id := range listed {
				if id[0] == 's' {
					steady++
				}
			}
			if !slices.IsSorted(listed) || steady != 12 {
				errs <- fmt.Errorf("one pass listed %v", listed)
				return
			}
		}
	}()
	for i := range 20 {
		id := fmt.Sprintf("churn%02d", i)
		c := b.connectAs(id, "tcp2", "")
		if i%2 == 0 {
			c.leave()
			b.awaitOffline(id)
		}
		if i%4 == 0 {
			if err := b.InvalidateSession(id); err != nil {
				t.Error(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// A session taken over or removed between ListClients' scan and its
// descriptions is listed as it is then: the new connection, or not at all.
func TestListClientsLooksAgain(t *testing.T) {
	b := startAdmin(t)
	b.connectAs("moved", "tcp", "")
	b.connectAs("gone", "tcp", "")
	var moved *client5
	b.SetListScanned(func() {
		b.SetListScanned(nil)
		moved = b.connectAs("moved", "tcp2", "") // takes the session over
		if err := b.InvalidateSession("gone"); err != nil {
			t.Error(err)
		}
	})
	page, err := b.ListClients(broker.ClientQuery{State: broker.ClientsConnected})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page); !slices.Equal(got, []string{"moved"}) {
		t.Fatalf("listed %v, want [moved]", got)
	}
	if c := page.Clients[0]; !c.Connected || c.Listener != "tcp2" || c.RemoteAddr != moved.conn.LocalAddr().String() {
		t.Errorf("moved listed as %+v, want connected through tcp2 from %s", c, moved.conn.LocalAddr())
	}
	// A replacement the query no longer selects is left out.
	b.connectAs("moved2", "tcp", "")
	b.SetListScanned(func() {
		b.SetListScanned(nil)
		b.connectAs("moved2", "tcp2", "")
	})
	page, err = b.ListClients(broker.ClientQuery{Prefix: "moved2", Listener: "tcp"})
	if err != nil || len(page.Clients) != 0 {
		t.Errorf("listener tcp after moving to tcp2: %v %v, want none", ids(page), err)
	}
}

func TestSubscribers(t *testing.T) {
	b := startAdmin(t)
	sub := func(id, filter string, qos byte, leave bool) {
		c := b.connectAs(id, "tcp", "")
		c.subscribe(t, filter, qos)
		if leave {
			c.leave()
			b.awaitOffline(id)
		}
	}
	sub("s2", "x/+", 2, true)
	sub("s1", "x/+", 1, false)
	sub("s3", "$share/g/x/+", 1, false)
	sub("s4", "$share/g/x/+", 0, true)
	sub("s5", "$share/h/x/+", 0, false)
	sub("s6", "x/#", 1, false)
	if err := b.Subscribe("s6", broker.SubscriptionInfo{Filter: "x/+", QoS: 1, NoLocal: true, Identifier: 7}); err != nil {
		t.Fatal(err)
	}
	show := func(subs []broker.Subscriber) string {
		var s string
		for _, x := range subs {
			s += fmt.Sprintf("%s:%s:%d:%v:%d ", x.ClientID, x.Subscription.Filter, x.Subscription.QoS, x.Subscription.NoLocal, x.Subscription.Identifier)
		}
		return s
	}
	for filter, want := range map[string]string{
		"x/+":          "s1:x/+:1:false:0 s2:x/+:2:false:0 s6:x/+:1:true:7 ",
		"$share/g/x/+": "s3:$share/g/x/+:1:false:0 s4:$share/g/x/+:0:false:0 ",
		"$share/h/x/+": "s5:$share/h/x/+:0:false:0 ",
		"x/#":          "s6:x/#:1:false:0 ",
		"x/y":          "",
		"#":            "",
	} {
		got, err := b.Subscribers(filter)
		if err != nil || show(got) != want {
			t.Errorf("Subscribers(%q) = %q, %v; want %q", filter, show(got), err, want)
		}
	}
	for filter, msg := range map[string]string{
		"x/#/y":    `subscribers of "x/#/y": invalid argument: "x/#/y" is not a topic filter`,
		"":         `subscribers of "": invalid argument: "" is not a topic filter`,
		"$share/g": `subscribers of "$share/g": invalid argument: "$share/g" is not a topic filter`,
		"a+":       `subscribers of "a+": invalid argument: "a+" is not a topic filter`,
	} {
		_, err := b.Subscribers(filter)
		errorIs(t, err, broker.ErrInvalidArgument, msg)
	}
}

func TestListRetained(t *testing.T) {
	b := startAdmin(t)
	var topics []string
	for i := range 12 {
		topics = append(topics, fmt.Sprintf("a/%d", i))
	}
	topics = append(topics, "a/b/c", "a", "b/1", "$x/1")
	for _, tp := range topics {
		if err := b.PutRetained(broker.Message{Topic: tp, Payload: []byte("p " + tp), QoS: 1, ContentType: "text/plain"}); err != nil {
			t.Fatal(err)
		}
	}
	b.publish3("b/2", 1, true, "from a client")
	topicsOf := func(msgs []broker.Message) []string {
		var out []string
		for _, m := range msgs {
			out = append(out, m.Topic)
		}
		return out
	}
	poll.Until(t, "the client's retained message", func() bool { _, ok := b.Retained("b/2"); return ok })
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"a/+", []string{"a/0", "a/1", "a/10", "a/11", "a/2", "a/3", "a/4", "a/5", "a/6", "a/7", "a/8", "a/9"}},
		{"+/1", []string{"a/1", "b/1"}},
		{"b/#", []string{"b/1", "b/2"}},
		{"a/b/c", []string{"a/b/c"}},
		{"$x/#", []string{"$x/1"}},
		{"none/#", nil},
	} {
		msgs, next, total, err := b.ListRetained(tc.filter, "", 0)
		if err != nil || !slices.Equal(topicsOf(msgs), tc.want) || next != "" || total != len(tc.want) {
			t.Errorf("ListRetained(%q) = %v, %q, %d, %v; want %v", tc.filter, topicsOf(msgs), next, total, err, tc.want)
		}
	}
	msgs, _, _, _ := b.ListRetained("b/#", "", 0)
	if m := msgs[1]; string(m.Payload) != "from a client" || m.QoS != 1 || !m.Retain {
		t.Errorf("b/2: %+v", m)
	}
	if m := msgs[0]; m.ContentType != "text/plain" || string(m.Payload) != "p b/1" {
		t.Errorf("b/1: %+v", m)
	}

	// "#" in pages of 4, deleting a listed topic and one not yet listed
	// between pages, and retaining a new one after the cursor.
	var listed []string
	after := ""
	for pages := 0; ; pages++ {
		msgs, next, total, err := b.ListRetained("#", after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if pages == 0 {
			if total != 16 || next != "a/10" {
				t.Errorf("first page of #: total %d, next %q; want 16 (no $x/1), a/10", total, next)
			}
			for _, tp := range []string{"a/0", "a/5"} {
				if err := b.DeleteRetained(tp); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.PutRetained(broker.Message{Topic: "a/55", Payload: []byte("new")}); err != nil {
				t.Fatal(err)
			}
		}
		listed = append(listed, topicsOf(msgs)...)
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatalf("more than 10 pages: %v", listed)
		}
		after = next
	}
	want := []string{"a", "a/0", "a/1", "a/10", "a/11", "a/2", "a/3", "a/4", "a/55", "a/6", "a/7", "a/8", "a/9", "a/b/c", "b/1", "b/2"}
	if !slices.Equal(listed, want) {
		t.Errorf("# in pages: %v\nwant %v", listed, want)
	}

	for _, tc := range []struct {
		filter string
		limit  int
		msg    string
	}{
		{"a/#/b", 0, `list retained "a/#/b": invalid argument: not a topic filter`},
		{"$share/g/a", 0, `list retained "$share/g/a": invalid argument: a shared subscription ($share/...) receives no retained messages; give its topic filter`},
		{"", 0, `list retained "": invalid argument: not a topic filter`},
		{"a\x00", 0, `list retained "a\x00": invalid argument: filter contains U+0000`},
		{"a/#", 1001, `list retained "a/#": invalid argument: limit 1001, want 1 to 1000 (0: 100)`},
		{"a/#", -5, `list retained "a/#": invalid argument: limit -5, want 1 to 1000 (0: 100)`},
	} {
		_, _, _, err := b.ListRetained(tc.filter, "", tc.limit)
		errorIs(t, err, broker.ErrInvalidArgument, tc.msg)
	}
}

// ListRetained lists exactly the retained messages a subscriber to the
// filter would receive (MQTT 5 4.7.1.2: "sport/#" also matches "sport"),
// $SYS/ topics left out (mochi's statistics; Levels does not count them).
func TestListRetainedMatchesSubscribers(t *testing.T) {
	b := startAdmin(t)
	topics := []string{"a", "a/b", "a/b/c", "a/b/c/d", "/x", "/", "x/", "a//b", "$x", "$x/y", "$SYS/z"}
	for _, tp := range topics {
		if err := b.PutRetained(broker.Message{Topic: tp, Payload: []byte("p")}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"#", "a/#", "a/b/#", "+/#", "+", "+/+", "/#", "a/+/#", "a/+/b", "+/+/+", "$x/#", "$x", "$SYS/#", "$SYS/+", "a/b/c/#", "x/+"} {
		var want []string
		for _, tp := range topics {
			if topic.Match(f, tp) && !strings.HasPrefix(tp, "$SYS/") {
				want = append(want, tp)
			}
		}
		slices.Sort(want)
		msgs, _, total, err := b.ListRetained(f, "", 0)
		var got []string
		for _, m := range msgs {
			got = append(got, m.Topic)
		}
		if err != nil || !slices.Equal(got, want) || total != len(want) {
			t.Errorf("ListRetained(%q) = %q, total %d, %v; want %q", f, got, total, err, want)
		}
	}
	if lv := b.Levels(); lv.RetainedMessages != int64(len(topics)-1) {
		t.Errorf("Levels counts %d retained messages, want %d", lv.RetainedMessages, len(topics)-1)
	}
}

// ListRetained follows every way a retained message comes and goes: a
// client's retained publish and its clearing with an empty payload, expiry,
// and a restart restoring them.
func TestListRetainedFollowsTheBroker(t *testing.T) {
	b := startAdmin(t)
	list := func(filter string) ([]string, int) {
		t.Helper()
		msgs, _, total, err := b.ListRetained(filter, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range msgs {
			out = append(out, m.Topic)
		}
		return out, total
	}
	b.publish3("f/keep", 1, true, "kept")
	b.publish3("f/clear", 1, true, "cleared soon")
	if err := b.PutRetained(broker.Message{Topic: "f/expires", Payload: []byte("e"), MessageExpiry: 1}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "three retained under f/", func() bool { got, n := list("f/#"); return len(got) == 3 && n == 3 })
	b.publish3("f/clear", 1, true, "")
	poll.Until(t, "f/clear cleared and f/expires expired", func() bool {
		got, n := list("f/#")
		return slices.Equal(got, []string{"f/keep"}) && n == 1
	})
	b.restart()
	if got, n := list("#"); !slices.Equal(got, []string{"f/keep"}) || n != 1 {
		t.Errorf("after a restart: %v (total %d), want [f/keep]", got, n)
	}
}

func TestInfo(t *testing.T) {
	before := time.Now()
	b := startAdmin(t)
	info := b.Info()
	if info.StartedAt.Before(before) || info.StartedAt.After(time.Now()) {
		t.Errorf("started at %v, want between %v and now", info.StartedAt, before)
	}
	var got []string
	for _, l := range info.Listeners {
		got = append(got, l.Name+" "+l.Type)
		if l.Address != b.Addr(l.Name) {
			t.Errorf("%s: address %q, want %q", l.Name, l.Address, b.Addr(l.Name))
		}
		if _, port, err := net.SplitHostPort(l.Address); err != nil || port == "0" {
			t.Errorf("%s: address %q is not a bound address", l.Name, l.Address)
		}
	}
	if want := []string{"tcp tcp", "tcp2 tcp", "ws websocket"}; !slices.Equal(got, want) {
		t.Errorf("listeners %v, want %v", got, want)
	}
	// The address reported is where clients connect.
	b.addr = info.Listeners[1].Address
	b.connect5("via-info", true, 0, nil)
	if c, ok := b.Client("via-info"); !ok || c.Listener != "tcp2" {
		t.Errorf("client through the reported address: %+v", c)
	}
}

// TestInfoWebsocketTLS: a websocket listener with TLS is "websocket-tls".
func TestInfoWebsocketTLS(t *testing.T) {
	pki := testpki.New(t)
	cfg := testConfig(t.TempDir())
	cfg.Listeners = append(cfg.Listeners, config.Listener{Name: "wss", Type: "websocket", Address: "127.0.0.1:0", Path: "/mqtt",
		TLS: &config.TLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey}})
	s, _ := startServer(t, cfg, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	if l := s.Info().Listeners; len(l) != 2 || l[1].Type != "websocket-tls" || l[1].Address != s.Addr("wss") {
		t.Errorf("listeners %+v", l)
	}
}

// BenchmarkListClients pages through 100,000 sessions restored from a real
// store: the first page, a page in the middle, and a filtered search.
// BenchmarkListRetained pages 100,000 retained messages (restored from
// the store), each with a 256-byte payload.
func BenchmarkListRetained(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	st, err := store.Open(store.Options{Dir: dir, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	for i := range n {
		m := &store.Message{Type: 3, QoS: 1, Retain: true, Topic: fmt.Sprintf("site/%d/sensor/%06d", i%100, i), Payload: payload, Created: int64(i + 1)}
		if err := st.PutRetained(m, i == n-1); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	s, _ := startServer(b, testConfig(dir), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	if _, _, total, err := s.ListRetained("#", "", 0); err != nil || total != n {
		b.Fatalf("restored %d retained messages, %v; want %d", total, err, n)
	}
	for _, bc := range []struct {
		name, filter, after string
		limit               int
	}{
		{"all-first-page-100", "#", "", 0},
		{"all-middle-page-100", "#", "site/50", 0},
		{"all-page-1000", "#", "", 1000},
		{"one-site", "site/7/#", "", 0},
		{"one-topic", "site/7/sensor/000007", "", 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := s.ListRetained(bc.filter, bc.after, bc.limit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkListClients(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	st, err := store.Open(store.Options{Dir: dir, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().Unix()
	for i := range n {
		s := &store.Session{ClientID: fmt.Sprintf("client-%06d", i), Username: []byte(fmt.Sprintf("user%d", i%100)),
			Listener: "tcp", ProtocolVersion: 5, SessionExpiry: 86400, SessionExpirySet: true, ConnectedAt: now - 10, DisconnectedAt: now - 5}
		if err := st.PutSession(s, i == n-1); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	s, _ := startServer(b, testConfig(dir), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	if p, err := s.ListClients(broker.ClientQuery{}); err != nil || p.Total != n {
		b.Fatalf("restored %d sessions, %v; want %d", p.Total, err, n)
	}
	for _, bc := range []struct {
		name string
		q    broker.ClientQuery
	}{
		{"first-page-100", broker.ClientQuery{}},
		{"middle-page-100", broker.ClientQuery{After: "client-050000"}},
		{"page-1000", broker.ClientQuery{Limit: 1000}},
		{"prefix", broker.ClientQuery{Prefix: "client-0999"}},
		{"username", broker.ClientQuery{Username: "user7"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.ListClients(bc.q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
