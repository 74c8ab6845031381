package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Control requests: an operator's action carried out on every alive node
// of the cluster, each node acting on what is its own (its extensions
// folder). The requesting node sends one NATS request per alive node of
// the registry (itself included) on the subject pctl.<kind>.<node> and
// collects one answer each, waiting at most ControlTimeout for all of
// them; a node that does not answer in time, or has nothing subscribed
// (a Propolis version before control requests, a node stopping), is
// named in the result. The requests and answers are JSON (controlRequest,
// NodeResult).
//
// Two kinds so far: ControlExtension, enable or disable an extension, and
// controlPing, which every node answers at once with an empty message: a
// node's round trip that makes its new subscriptions known on the others
// (interest.go). Each node applies it with Options.Extension, the function
// `propolis extensions enable|disable` runs locally; this package does
// not import package host (cmd/propolis wires the function).
//
// A node trusts the control requests it receives: whoever reaches the
// cluster's NATS servers (the nodes' routes, each node's in-process
// connection) is a node. The requesting node's admin API checked the
// operator's permission and audited the action; the acting nodes log it,
// naming the requesting node and operator.

// ControlTimeout is how long a control request waits for the answers of
// the nodes.
const ControlTimeout = 5 * time.Second

// ControlExtension is the kind of control request that enables or
// disables an extension (SetExtension).
const ControlExtension = "extension"

// controlPing is the kind of request every node answers at once, with an
// empty message (interest.go).
const controlPing = "ping"

// controlPrefix starts every control subject: pctl.<kind>.<node>.
const controlPrefix = "pctl."

// controlVersion is the version of controlRequest this build writes and
// reads; a node answers a request of a later version with an error naming
// both (rolling upgrade: the operator sees which node is older).
const controlVersion = 1

// ErrBadControl is wrapped by the error of a control request that cannot
// be sent as asked (SetExtension without an extension id), and begins the
// answer of a node to a request it cannot read.
var ErrBadControl = errors.New("bad control request")

// ExtensionFunc enables (disable false) or disables extension id in this
// node's own extensions folder, and says what it did in the operator's
// words. It is Options.Extension: cmd/propolis passes the one function
// `propolis extensions enable|disable` runs. It is called on a NATS
// subscription's goroutine, one request at a time.
type ExtensionFunc func(id string, disable bool) (string, error)

// NodeResult is one node's answer to a control request.
type NodeResult struct {
	// Node is the node's name.
	Node string `json:"node"`
	// OK is true when the node carried the request out.
	OK bool `json:"ok"`
	// Message says what the node did, when OK.
	Message string `json:"message"`
	// Error says why not, when not OK: the node's own error, no answer
	// within ControlTimeout, or nothing on the node taking the request.
	Error string `json:"error"`
}

// ControlResult is the answer of a control request to every alive node.
type ControlResult struct {
	// OK is true when every node asked answered and carried the request
	// out; the nodes not asked do not count.
	OK bool `json:"ok"`
	// Nodes holds one result per node the request was sent to, by name.
	Nodes []NodeResult `json:"nodes"`
	// NotAsked are the nodes this node knows of that the request was not
	// sent to because they are not alive, by name: the request is not
	// carried out there (a node's extensions folder is its own; enable
	// or disable it there once it is back).
	NotAsked []NotAsked `json:"not_asked"`
}

// NotAsked is a node a control request was not sent to, and why.
type NotAsked struct {
	// Node is the node's name.
	Node string `json:"node"`
	// Reason says why in the operator's words: "not alive: last seen
	// 94 s ago", or "not alive: a JetStream peer without a registry
	// entry (stopped, or not a Propolis node)".
	Reason string `json:"reason"`
}

// Failed returns the names of the nodes that did not carry the request
// out, in r's order.
func (r ControlResult) Failed() []string {
	var out []string
	for _, n := range r.Nodes {
		if !n.OK {
			out = append(out, n.Node)
		}
	}
	return out
}

// controlRequest is the JSON body of a control request.
type controlRequest struct {
	// Version is controlVersion.
	Version int `json:"version"`
	// From is the requesting node's name, By the operator who asked
	// (the admin API's user), for the acting node's log.
	From string `json:"from"`
	By   string `json:"by"`
	// Extension is the request of kind ControlExtension.
	Extension *extensionRequest `json:"extension,omitempty"`
}

// extensionRequest enables or disables extension ID.
type extensionRequest struct {
	ID      string `json:"id"`
	Disable bool   `json:"disable"`
}

// controlOptions are what newControl needs.
type controlOptions struct {
	Conn *nats.Conn
	// Node is this node's name: its control subjects end with it.
	Node string
	Log  *slog.Logger
	// Timeout is ControlTimeout when zero (tests shorten it).
	Timeout time.Duration
	// Extension answers the requests of kind ControlExtension; nil: the
	// node does not subscribe to them.
	Extension ExtensionFunc
}

// control answers the control requests sent to this node and sends this
// node's requests to the others. Its methods are safe for concurrent use.
type control struct {
	o    controlOptions
	mu   sync.Mutex
	subs []*nats.Subscription // nil once closed
}

// newControl subscribes to the control subjects of o.Node: the ping, and
// the kinds it has a function for.
func newControl(o controlOptions) (*control, error) {
	if o.Timeout <= 0 {
		o.Timeout = ControlTimeout
	}
	c := &control{o: o}
	ping, err := o.Conn.Subscribe(controlSubject(controlPing, o.Node), c.pong)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", controlSubject(controlPing, o.Node), err)
	}
	c.subs = append(c.subs, ping)
	if o.Extension != nil {
		sub, err := o.Conn.Subscribe(controlSubject(ControlExtension, o.Node), c.serve)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("subscribe to %s: %w", controlSubject(ControlExtension, o.Node), err)
		}
		c.subs = append(c.subs, sub)
	}
	// The server has the subscriptions once the flush returns: a request
	// sent after newControl reaches them.
	if err := o.Conn.FlushTimeout(o.Timeout); err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe to %s: %w", controlPrefix+"*."+o.Node, err)
	}
	return c, nil
}

// controlSubject is the subject of the control requests of kind to node
// (a node name is one NATS token: config.Cluster.Name allows letters,
// digits, _ and - only).
func controlSubject(kind, node string) string { return controlPrefix + kind + "." + node }

// close stops answering control requests; calling it again does nothing.
func (c *control) close() {
	c.mu.Lock()
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

// pong answers a ping (on its own subscription's goroutine, so that a
// slow extension request does not hold it up).
func (c *control) pong(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	if err := m.Respond(nil); err != nil {
		c.o.Log.Warn("cluster ping not answered", "subject", m.Subject, "error", err)
	}
}

// serve answers one control request (a NATS subscription's goroutine).
// A message without a reply subject is not a request: nobody would learn
// what it did, so it is not carried out.
func (c *control) serve(m *nats.Msg) {
	if m.Reply == "" {
		c.o.Log.Warn("cluster control message without a reply subject ignored", "subject", m.Subject)
		return
	}
	res := c.answer(m)
	res.Node = c.o.Node
	data, err := json.Marshal(res)
	if err != nil {
		panic(err) // a struct of strings and a bool always marshals
	}
	if err := m.Respond(data); err != nil {
		c.o.Log.Warn("cluster control answer not sent", "subject", m.Subject, "error", err)
	}
}

// answer carries out the request m and says how it went.
func (c *control) answer(m *nats.Msg) NodeResult {
	var req controlRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return NodeResult{Error: fmt.Sprintf("%s: %v", ErrBadControl, err)}
	}
	if req.Version != controlVersion {
		return NodeResult{Error: fmt.Sprintf("%s: version %d, this node reads version %d", ErrBadControl, req.Version, controlVersion)}
	}
	x := req.Extension
	if x == nil || x.ID == "" {
		return NodeResult{Error: fmt.Sprintf("%s: no extension id in the %s request", ErrBadControl, ControlExtension)}
	}
	action := "enabled"
	if x.Disable {
		action = "disabled"
	}
	msg, err := c.o.Extension(x.ID, x.Disable)
	if err != nil {
		c.o.Log.Warn("extension not "+action+" on a cluster request", "extension", x.ID, "from", req.From, "by", req.By, "error", err)
		return NodeResult{Error: err.Error()}
	}
	c.o.Log.Info("extension "+action+" on a cluster request", "extension", x.ID, "from", req.From, "by", req.By)
	return NodeResult{OK: true, Message: msg}
}

// request sends req of kind to each of nodes at once and returns their
// answers by node name, waiting at most the timeout (or until ctx ends)
// for them.
func (c *control) request(ctx context.Context, kind string, nodes []string, req controlRequest) ControlResult {
	req.Version = controlVersion
	data, err := json.Marshal(req)
	if err != nil {
		panic(err) // plain fields always marshal
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	nodes = slices.Compact(slices.Sorted(slices.Values(nodes)))
	res := ControlResult{OK: true, Nodes: make([]NodeResult, len(nodes)), NotAsked: []NotAsked{}}
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Go(func() { res.Nodes[i] = c.ask(ctx, kind, node, data) })
	}
	wg.Wait()
	for _, r := range res.Nodes {
		res.OK = res.OK && r.OK
	}
	return res
}

// ask sends one request to node and reads its answer.
func (c *control) ask(ctx context.Context, kind, node string, data []byte) NodeResult {
	m, err := c.o.Conn.RequestWithContext(ctx, controlSubject(kind, node), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return NodeResult{Node: node, Error: fmt.Sprintf("no answer: nothing on the node takes %s requests (a Propolis version without them, or a node stopping)", kind)}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return NodeResult{Node: node, Error: fmt.Sprintf("no answer within %s", c.o.Timeout)}
	case err != nil:
		return NodeResult{Node: node, Error: fmt.Sprintf("request not sent: %v", err)}
	}
	var r NodeResult
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return NodeResult{Node: node, Error: fmt.Sprintf("unreadable answer: %v", err)}
	}
	if !r.OK && r.Error == "" {
		r.Error = "the node answered that it failed, without saying why"
	}
	r.Node = node
	return r
}

// SetExtension enables (disable false) or disables extension id on every
// alive node of the cluster, this one included, each in its own
// extensions folder with Options.Extension; by names the operator, for
// the nodes' logs. It waits at most ControlTimeout for the answers and
// returns one result per node: a node that did not answer in time is
// named with that error. The nodes it knows of but did not ask, not
// being alive, are in the result's NotAsked (Node.notAlive). Its error wraps ErrBadControl for an empty id;
// a node's failure is in the result, not in the error.
func (n *Node) SetExtension(ctx context.Context, id string, disable bool, by string) (ControlResult, error) {
	if id == "" {
		return ControlResult{}, fmt.Errorf("%w: no extension id", ErrBadControl)
	}
	alive, notAsked := n.aliveNames(), n.notAlive()
	res := n.control.request(ctx, ControlExtension, alive,
		controlRequest{From: n.cfg.Name, By: by, Extension: &extensionRequest{ID: id, Disable: disable}})
	res.NotAsked = notAsked
	return res, nil
}
