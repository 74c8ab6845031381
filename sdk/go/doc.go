// Package propolis is the Go SDK for Propolis extensions: WebAssembly
// modules that authenticate clients, authorize publishes and subscribes,
// change or stop packets (interceptors, see PublishPacket) and observe
// lifecycle events in the Propolis MQTT broker.
//
// An extension is a main package that registers its handlers in an init
// function and is built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o ext.wasm .
//
// The SDK implements the guest side of the Propolis extension ABI 1.2
// (abi/ABI.md in the Propolis repository): it exports the callbacks the
// broker calls, decodes the records the broker passes into the Go types of
// this package, and turns the handlers' answers into decisions and host
// function calls. Extension authors never handle pointers or record
// layouts.
//
// # Example
//
// This extension lets in clients whose user name is their client id,
// confines each to its own topic tree with default permissions (checked by
// the broker without calling the extension), refuses large payloads on
// "alerts/" topics and logs disconnects:
//
//	package main
//
//	import (
//		"strings"
//
//		propolis "github.com/propolis-mqtt/propolis/sdk/go"
//	)
//
//	type config struct {
//		MaxAlert int `json:"max_alert"`
//	}
//
//	var cfg = config{MaxAlert: 256}
//
//	func init() {
//		propolis.Register(propolis.Extension{
//			Start:            start,
//			Authenticate:     authenticate,
//			AuthorizePublish: authorizePublish,
//			PublishFilters:   []string{"alerts/#"},
//			OnEvent:          onEvent,
//		})
//	}
//
//	func main() {}
//
//	func start(info propolis.StartInfo) error {
//		if err := info.DecodeConfig(&cfg); err != nil {
//			return err // refuses to start; the broker shows err.Error()
//		}
//		if info.Instance == 0 { // Start runs once per instance
//			propolis.Infof("%s %s started", info.ID, info.Version)
//		}
//		return nil
//	}
//
//	func authenticate(c *propolis.Connect) propolis.AuthResult {
//		if c.Username == "" || c.Username != c.ClientID {
//			return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "user name must be the client id")}
//		}
//		return propolis.AuthResult{
//			Verdict: propolis.Allow(),
//			Permissions: []propolis.Permission{
//				propolis.AllowTopic("clients/{clientid}/#"),
//				propolis.AllowPublish("alerts/{clientid}"),
//			},
//		}
//	}
//
//	func authorizePublish(p *propolis.Publish) propolis.Verdict {
//		if len(p.Payload) > cfg.MaxAlert {
//			return propolis.Deny(propolis.CodeQuotaExceeded, "alert too large")
//		}
//		return propolis.Next() // the client's permissions decide
//	}
//
//	func onEvent(e *propolis.Event) {
//		if e.Kind == propolis.EventDisconnect && strings.HasPrefix(e.ClientID, "gw-") {
//			propolis.Warnf("gateway %s disconnected (%s)", e.ClientID, e.DisconnectKind)
//		}
//	}
//
// # Handlers
//
// Every handler of Extension is optional; the broker never calls the
// extension for a handler it did not set (the SDK declares the set ones
// at start). Authenticate answers Allow, Deny or Next in an AuthResult,
// which on Allow may also carry settings (session expiry, receive maximum,
// keepalive, queue size), CONNACK user properties and default topic
// permissions. AuthorizePublish and AuthorizeSubscribe answer a Verdict:
// Allow, Deny, Disconnect or Next. Next passes the question on along the
// chain of extensions and finally, for publishes and subscribes, to the
// client's permissions. OnEvent hears lifecycle events after the fact,
// and Tick runs every manifest tick interval (tick: 10s) for housekeeping,
// one call at a time.
//
// A client allowed with no permissions may use every topic: once it has
// one permission, whatever none matches is denied, but with none,
// everything no authorize handler refuses is allowed. Set
// AuthResult.Unrestricted when that is meant; otherwise the SDK logs a
// warning (once per instance).
//
// If the SDK cannot do what a handler asked (a host function refuses a
// setting or a permission, or Permission.Validate fails), it logs the
// problem and denies the client with 0x80 rather than let it in with less
// than intended.
//
// # Panics, blocking and state
//
// A panic in a handler is not recovered: the Go runtime prints it to
// standard error (which the broker logs) and the call traps. The broker
// then fails closed (the CONNECT, PUBLISH or SUBSCRIBE is denied, an
// event dropped) and replaces the instance; an extension failing 10 times
// in 10 seconds is stopped. Handlers run synchronously inside the call
// from the broker, within a deadline (100 ms by default); do not block in
// them or rely on goroutines running between calls.
//
// The broker runs several instances of the module and sends any client's
// callbacks to any of them, one callback at a time per instance. Keep
// per-client state in the broker (settings and permissions in the
// AuthResult, session attributes, the extension's storage: PutStoredValue),
// not in package variables; configuration read in Start is
// fine, since every instance is started. For the same reason Start runs
// several times per load: log start-up messages only when
// StartInfo.Instance is 0.
//
// # Memory
//
// Event and Subscribe hold copies and may be kept (the *Subscribe itself is
// reused). On the per-message and per-connection paths the SDK copies and
// allocates nothing: every field of the *Publish passed to
// AuthorizePublish (ClientID, Username, Topic, Payload) and of the
// *Connect passed to Authenticate (strings, Password, Will, TLSSANs,
// UserProperties) is a view of the buffer the broker wrote the record to,
// valid only until the handler returns (an AuthResult may still use them:
// the SDK applies it before the buffer is reused). Compare and match them
// freely; to keep one, copy it (strings.Clone, bytes.Clone, or
// Publish.Clone / Connect.Clone for the whole record).
//
// The broker writes each record into one buffer the SDK keeps, grown on
// request up to Extension.MaxRecordSize (default 4 MiB). A larger record,
// in practice a PUBLISH with a larger payload, is refused: the handler is
// not called and the broker denies that PUBLISH (or CONNECT, for a large
// will) with 0x80, without counting it as a failure of the extension.
//
// # Testing
//
// The types, constructors and Register compile on every platform, so
// handlers are ordinary Go functions that can be unit-tested natively with
// go test: build a *Connect, *Publish, *Subscribe or *Event and check the
// answer. Outside a Wasm build, Log and its helpers write to standard
// error.
package propolis
