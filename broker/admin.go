package broker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// This file is what the admin API asks of the broker beyond the extension
// services: sessions listed and searched a page at a time (ListClients),
// the subscribers of a filter (Subscribers), retained messages listed by
// filter (ListRetained), and what the overview shows (Info). Like the
// services, every method is safe for concurrent use from any goroutine and
// reads memory only; none holds a broker lock while it builds its answer.
//
// Each list is sorted by a key (client id, topic) and paged with a cursor,
// the last key of the previous page: a page lists keys strictly greater
// than it. So across pages no entry is listed twice, and none is skipped
// that existed from the first page to the last, whatever came and went in
// between. Each call scans what it lists from (every session, every
// retained message matching the filter) once, keeping the smallest keys
// after the cursor (O(n log limit)), and counts every match for Total.

// Page sizes of ListClients and ListRetained.
const (
	// DefaultPageLimit is the page size a limit of 0 asks for.
	DefaultPageLimit = 100
	// MaxPageLimit is the largest page.
	MaxPageLimit = 1000
)

// ClientState selects sessions by whether their client is connected.
type ClientState int

// The states ListClients selects.
const (
	// ClientsAll selects every session.
	ClientsAll ClientState = iota
	// ClientsConnected selects the sessions whose client is connected.
	ClientsConnected
	// ClientsOffline selects the sessions whose client is not.
	ClientsOffline
)

// ClientQuery selects sessions for ListClients. Empty fields match all.
type ClientQuery struct {
	Prefix   string      // client id prefix
	Username string      // exact user name
	Listener string      // listener name
	State    ClientState // ClientsAll (0), ClientsConnected, ClientsOffline
	After    string      // cursor: list client ids strictly greater than this
	Limit    int         // 1..1000; 0 means 100
}

// ClientPage is one page: Clients sorted by client id; Next is the cursor of
// the next page ("" when this is the last); Total counts every session
// matching (all pages).
type ClientPage struct {
	Clients []ClientInfo
	Next    string
	Total   int
}

// ListClients lists the sessions, connected and offline, that q selects,
// one page at a time (see the top of this file). Each ClientInfo is as
// Client gives it, taken after the scan from the session mochi holds then:
// a session taken over since is described from its new connection, and
// one that went away or no longer matches q (another user name, listener
// or state) is left out (Total still counts it). Cost: one pass over every
// session (a copy of mochi's client map, then a few string comparisons
// each), then one Client per session listed.
// Errors: ErrInvalidArgument naming q.Limit, q.State, or q.Listener when
// no listener has that name (with the names there are).
func (s *Server) ListClients(q ClientQuery) (ClientPage, error) {
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return ClientPage{}, fmt.Errorf("list clients: %w", err)
	}
	if q.State < ClientsAll || q.State > ClientsOffline {
		return ClientPage{}, fmt.Errorf("list clients: %w: state %d, want 0 (all), 1 (connected) or 2 (offline)", ErrInvalidArgument, q.State)
	}
	if err := s.checkListener(q.Listener); err != nil {
		return ClientPage{}, fmt.Errorf("list clients: %w", err)
	}
	var page ClientPage
	first := smallest[idClient]{limit: limit, key: func(c idClient) string { return c.id }}
	for id, cl := range s.mochi.Clients.GetAll() {
		if id == mqtt.InlineClientId || !q.matches(id, cl) {
			continue
		}
		page.Total++
		if id > q.After {
			first.add(idClient{id, cl})
		}
	}
	clients := first.sorted()
	if s.hook.listScanned != nil {
		s.hook.listScanned()
	}
	page.Clients = make([]ClientInfo, 0, len(clients))
	for _, c := range clients {
		// Looked up again: the client scanned may have been taken over
		// (its replacement holds the session now) or removed since.
		cl, ok := s.mochi.Clients.Get(c.id)
		if !ok || (cl != c.cl && !q.matches(c.id, cl)) {
			continue
		}
		if info := s.clientInfo(cl); q.State.matches(info.Connected) {
			page.Clients = append(page.Clients, info)
		}
	}
	if first.more && len(clients) > 0 {
		page.Next = clients[len(clients)-1].id
	}
	return page, nil
}

// matches reports whether the session of client id, held by cl, is one q
// selects (all but the cursor). Each test reads the client only when it
// has to: its memory, scattered over the heap, is what a pass over 100k
// sessions spends its time on.
func (q *ClientQuery) matches(id string, cl *mqtt.Client) bool {
	return strings.HasPrefix(id, q.Prefix) &&
		(q.Username == "" || string(cl.Properties.Username) == q.Username) &&
		(q.Listener == "" || cl.Net.Listener == q.Listener) &&
		(q.State == ClientsAll || q.State.matches(!cl.Closed()))
}

// checkListener returns nil for "" or the name of one of the broker's
// listeners, else ErrInvalidArgument naming name and the listeners.
func (s *Server) checkListener(name string) error {
	if name == "" {
		return nil
	}
	var names []string
	for _, l := range s.listeners {
		if l.ID() == name {
			return nil
		}
		names = append(names, fmt.Sprintf("%q", l.ID()))
	}
	return fmt.Errorf("%w: no listener %q (listeners: %s)", ErrInvalidArgument, name, strings.Join(names, ", "))
}

// idClient is a session's client with its id (mochi's map key).
type idClient struct {
	id string
	cl *mqtt.Client
}

// matches reports whether a session connected or not is in st.
func (st ClientState) matches(connected bool) bool {
	return st == ClientsAll || (st == ClientsConnected) == connected
}

// Subscriber is one session subscribed with exactly a filter.
type Subscriber struct {
	ClientID     string
	Subscription SubscriptionInfo
}

// Subscribers lists the sessions, connected and offline, holding a
// subscription spelled exactly filter (a topic filter, or
// $share/<group>/<filter> for the members of one group), sorted by client
// id, with their subscription options. A subscription whose filter only
// overlaps filter (a/# for a/b) is not listed. Cost: one pass over every
// session (one map lookup each). Errors: ErrInvalidArgument when filter is
// not a topic filter.
func (s *Server) Subscribers(filter string) ([]Subscriber, error) {
	if err := checkSubscription(&SubscriptionInfo{Filter: filter}); err != nil {
		return nil, fmt.Errorf("subscribers of %q: %w", filter, err)
	}
	var out []Subscriber
	for _, cl := range s.mochi.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		if sub, ok := cl.State.Subscriptions.Get(filter); ok {
			out = append(out, Subscriber{ClientID: cl.ID, Subscription: SubscriptionInfo{Filter: sub.Filter, QoS: sub.Qos,
				NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling,
				Identifier: sub.Identifier}})
		}
	}
	slices.SortFunc(out, func(a, b Subscriber) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out, nil
}

// ListRetained lists the retained messages whose topic matches filter (a
// topic filter with MQTT wildcards, matched as for a subscriber: a/#
// matches a itself, and a first-level wildcard matches no '$' topic),
// sorted by topic, those with a topic strictly greater than after, at most
// limit (1 to 1000; 0 means 100). next is the cursor of the next page (""
// when this is the last), total the count of every message matching filter
// (all pages). Each message is as Retained gives it (Retain set, expired
// ones left out). $SYS/ topics (mochi's broker statistics) are never
// listed, as Levels leaves them out of its count. Cost: one pass over the
// topic names of every retained message (the broker's topic index,
// retainedindex.go: no message is copied), keeping the limit smallest
// topics after the cursor, then one copy per message listed; a filter
// without wildcards is one lookup. Errors:
// ErrInvalidArgument naming filter (not a topic filter, or a shared one)
// or limit.
func (s *Server) ListRetained(filter, after string, limit int) (msgs []Message, next string, total int, err error) {
	limit, err = pageLimit(limit)
	if err != nil {
		return nil, "", 0, fmt.Errorf("list retained %q: %w", filter, err)
	}
	if err := checkString("filter", filter); err != nil {
		return nil, "", 0, fmt.Errorf("list retained %q: %w", filter, err)
	}
	if _, _, shared := topic.SplitShared(filter); shared {
		return nil, "", 0, fmt.Errorf("list retained %q: %w: a shared subscription ($share/...) receives no retained messages; give its topic filter", filter, ErrInvalidArgument)
	}
	if !mqtt.IsValidFilter(filter, false) || !topic.ValidFilter(filter) {
		return nil, "", 0, fmt.Errorf("list retained %q: %w: not a topic filter", filter, ErrInvalidArgument)
	}
	if !strings.ContainsAny(filter, "+#") { // one topic: no walk
		msgs = make([]Message, 0, 1)
		if m, ok := s.Retained(filter); ok && !strings.HasPrefix(filter, mqtt.SysPrefix+"/") {
			if total = 1; filter > after {
				msgs = append(msgs, m)
			}
		}
		return msgs, "", total, nil
	}
	now := time.Now().Unix()
	first := smallest[string]{limit: limit, key: func(t string) string { return t }}
	s.hook.retained.each(func(t string, expiry int64) {
		// As Retained: mochi sweeps expired messages once a second.
		if (expiry > 0 && expiry <= now) || !topic.Match(filter, t) {
			return
		}
		total++
		if t > after {
			first.add(t)
		}
	})
	page := first.sorted()
	msgs = make([]Message, 0, len(page))
	for _, t := range page {
		// Retained looks again: the message may have gone since.
		if m, ok := s.Retained(t); ok {
			msgs = append(msgs, m)
		}
	}
	if first.more && len(page) > 0 {
		next = page[len(page)-1]
	}
	return msgs, next, total, nil
}

// pageLimit is the page size limit asks for; the error names limit.
func pageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultPageLimit, nil
	case limit < 0 || limit > MaxPageLimit:
		return 0, fmt.Errorf("%w: limit %d, want 1 to %d (0: %d)", ErrInvalidArgument, limit, MaxPageLimit, DefaultPageLimit)
	}
	return limit, nil
}

// smallest keeps the limit items of smallest key among those added (a
// max-heap on key), and whether more were added than it kept.
type smallest[T any] struct {
	limit int
	key   func(T) string
	heap  []T
	more  bool
}

// add offers v.
func (h *smallest[T]) add(v T) {
	if len(h.heap) < h.limit {
		h.heap = append(h.heap, v)
		h.up(len(h.heap) - 1)
		return
	}
	h.more = true
	if h.key(v) >= h.key(h.heap[0]) {
		return
	}
	h.heap[0] = v
	h.down(0)
}

func (h *smallest[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h.key(h.heap[p]) >= h.key(h.heap[i]) {
			return
		}
		h.heap[p], h.heap[i] = h.heap[i], h.heap[p]
		i = p
	}
}

func (h *smallest[T]) down(i int) {
	for {
		big, l, r := i, 2*i+1, 2*i+2
		if l < len(h.heap) && h.key(h.heap[l]) > h.key(h.heap[big]) {
			big = l
		}
		if r < len(h.heap) && h.key(h.heap[r]) > h.key(h.heap[big]) {
			big = r
		}
		if big == i {
			return
		}
		h.heap[i], h.heap[big] = h.heap[big], h.heap[i]
		i = big
	}
}

// sorted returns the items kept, by key.
func (h *smallest[T]) sorted() []T {
	slices.SortFunc(h.heap, func(a, b T) int { return strings.Compare(h.key(a), h.key(b)) })
	return h.heap
}

// BrokerInfo is what the overview shows.
type BrokerInfo struct {
	// StartedAt is when Start opened the listeners; zero before.
	StartedAt time.Time
	Listeners []ListenerInfo
}

// ListenerInfo is one listener of the broker.
type ListenerInfo struct {
	// Name is the listener's name in the configuration.
	Name string
	// Type is "tcp", "tls", "websocket" or "websocket-tls".
	Type string
	// Address is the address the listener is bound to (the port chosen,
	// for a configured port 0).
	Address string
}

// Info describes the running broker: when it started and its listeners,
// in configuration order. It does not block.
func (s *Server) Info() BrokerInfo {
	var info BrokerInfo
	if ns := s.startedAt.Load(); ns != 0 {
		info.StartedAt = time.Unix(0, ns)
	}
	cfg := s.cfg.Load()
	for _, l := range s.listeners {
		li := ListenerInfo{Name: l.ID(), Type: l.Protocol(), Address: l.Address()}
		for _, lc := range cfg.Listeners {
			if lc.Name == li.Name && lc.Type == "websocket" && lc.TLS != nil {
				li.Type = "websocket-tls"
			}
		}
		info.Listeners = append(info.Listeners, li)
	}
	return info
}
