package abi

// This file is the one table of ABI 1: every export the host calls, every
// host function, decision, status code, record kind, event kind and
// disconnect kind, with its number, name and signature. The host checks
// modules and dispatches calls from it, the Go SDK's abi_table.go is
// generated from it (go test ./abi -run TestSDKTable -update), and
// abi_md_test.go fails when ABI.md says otherwise. Adding a callback or a
// host function is a row here, its section in ABI.md, and the one function
// that implements it.

// Callback identifies an export the host calls (ABI.md section 3).
type Callback uint8

// The exports the host calls, in the order of ABI.md section 3.
const (
	// CallbackInitialize is the WASI reactor initializer "_initialize",
	// run once per instance by the runtime before anything else.
	CallbackInitialize Callback = iota
	CallbackMarker
	CallbackBuffer
	CallbackStart
	CallbackStop
	CallbackAuthenticate
	CallbackAuthorizePublish
	CallbackAuthorizeSubscribe
	CallbackOnEvent
	// CallbackTick is the periodic callback of ABI 1.1 (manifest tick).
	CallbackTick
	// The interceptors of ABI 1.2 (ABI.md section 3, "Interceptors"): they
	// change or stop packets on their way through the broker.
	CallbackInterceptConnect
	CallbackInterceptConnack
	CallbackInterceptPublishInbound
	CallbackInterceptPublishOutbound
	CallbackInterceptSubscribe
	CallbackInterceptDisconnect
	// NumCallbacks is the number of callbacks; it is not one.
	NumCallbacks
)

// CallbackInfo describes one export the host calls.
type CallbackInfo struct {
	// Name is the short name used in logs, the CLI and ABI.md's
	// declare_callbacks bits: "authorize_publish".
	Name string
	// Export is the export's name in the module: "propolis_authorize_publish".
	Export string
	// Sig is the export's signature.
	Sig Signature
	// Bit is the callback's bit in declare_callbacks; 0 for the exports
	// that are not chain callbacks (lifecycle, marker, buffer).
	Bit uint32
	// Record is the kind of record the host passes; 0 for none.
	Record uint16
	// Decisions are the decisions the callback may return; empty for a
	// callback that does not decide.
	Decisions DecisionSet
	// Required is true for the one export every module must have.
	Required bool
}

// Decides reports whether the callback returns a decision.
func (c CallbackInfo) Decides() bool { return c.Decisions != 0 }

var (
	none   = []ValType{}
	oneI32 = []ValType{I32}
)

// Callbacks describes every callback, indexed by Callback.
var Callbacks = [NumCallbacks]CallbackInfo{
	CallbackInitialize: {Name: "initialize", Export: "_initialize", Sig: Signature{none, none}},
	CallbackMarker:     {Name: "marker", Export: "propolis_abi_v1", Sig: Signature{none, oneI32}, Required: true},
	CallbackBuffer:     {Name: "buffer", Export: "propolis_buffer", Sig: Signature{oneI32, oneI32}},
	CallbackStart:      {Name: "start", Export: "propolis_start", Sig: Signature{oneI32, oneI32}, Record: KindStart},
	CallbackStop:       {Name: "stop", Export: "propolis_stop", Sig: Signature{none, none}},
	CallbackAuthenticate: {Name: "authenticate", Export: "propolis_authenticate", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 0, Record: KindConnect, Decisions: DecisionsOf(DecisionNext, DecisionAllow, DecisionDeny)},
	CallbackAuthorizePublish: {Name: "authorize_publish", Export: "propolis_authorize_publish", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 1, Record: KindPublish, Decisions: DecisionsOf(DecisionNext, DecisionAllow, DecisionDeny, DecisionDisconnect)},
	CallbackAuthorizeSubscribe: {Name: "authorize_subscribe", Export: "propolis_authorize_subscribe", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 2, Record: KindSubscribe, Decisions: DecisionsOf(DecisionNext, DecisionAllow, DecisionDeny, DecisionDisconnect)},
	CallbackOnEvent: {Name: "on_event", Export: "propolis_on_event", Sig: Signature{oneI32, none},
		Bit: 1 << 3, Record: KindEvent},
	CallbackTick: {Name: "tick", Export: "propolis_tick", Sig: Signature{none, none}, Bit: 1 << 4},
	CallbackInterceptConnect: {Name: "intercept_connect", Export: "propolis_intercept_connect", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 5, Record: KindConnect, Decisions: DecisionsOf(DecisionNext)},
	CallbackInterceptConnack: {Name: "intercept_connack", Export: "propolis_intercept_connack", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 6, Record: KindConnack, Decisions: DecisionsOf(DecisionNext)},
	CallbackInterceptPublishInbound: {Name: "intercept_publish_inbound", Export: "propolis_intercept_publish_inbound", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 7, Record: KindMessage, Decisions: DecisionsOf(DecisionNext, DecisionDeny)},
	CallbackInterceptPublishOutbound: {Name: "intercept_publish_outbound", Export: "propolis_intercept_publish_outbound", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 8, Record: KindMessage, Decisions: DecisionsOf(DecisionNext, DecisionDeny)},
	CallbackInterceptSubscribe: {Name: "intercept_subscribe", Export: "propolis_intercept_subscribe", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 9, Record: KindSubscription, Decisions: DecisionsOf(DecisionNext, DecisionDeny)},
	CallbackInterceptDisconnect: {Name: "intercept_disconnect", Export: "propolis_intercept_disconnect", Sig: Signature{oneI32, oneI32},
		Bit: 1 << 10, Record: KindDisconnect, Decisions: DecisionsOf(DecisionNext)},
}

// Interceptors is the set of the interceptor callbacks (ABI 1.2).
var Interceptors = CallbacksOf(CallbackInterceptConnect, CallbackInterceptConnack, CallbackInterceptPublishInbound,
	CallbackInterceptPublishOutbound, CallbackInterceptSubscribe, CallbackInterceptDisconnect)

// String returns the callback's export name.
func (c Callback) String() string {
	if c < NumCallbacks {
		return Callbacks[c].Export
	}
	return "unknown callback"
}

// callbackByExport finds a callback by its export name.
func callbackByExport(export string) (Callback, bool) {
	for i := range Callbacks {
		if Callbacks[i].Export == export {
			return Callback(i), true
		}
	}
	return 0, false
}

// AllCallbackBits is every declare_callbacks bit ABI 1 defines.
var AllCallbackBits = func() uint32 {
	var m uint32
	for _, c := range Callbacks {
		m |= c.Bit
	}
	return m
}()

// CallbackNames returns the names of the chain callbacks whose bits are
// set in mask, in table order.
func CallbackNames(mask uint32) []string {
	var out []string
	for _, c := range Callbacks {
		if c.Bit != 0 && mask&c.Bit != 0 {
			out = append(out, c.Name)
		}
	}
	return out
}

// CallbackSet is a set of callbacks, one bit per Callback.
type CallbackSet uint32

// CallbacksOf returns the set of the given callbacks.
func CallbacksOf(cbs ...Callback) CallbackSet {
	var s CallbackSet
	for _, c := range cbs {
		s |= 1 << c
	}
	return s
}

// AnyCallback is the set of every callback, _initialize included.
const AnyCallback CallbackSet = 1<<NumCallbacks - 1

// Has reports whether c is in the set.
func (s CallbackSet) Has(c Callback) bool { return s&(1<<c) != 0 }

// HostFunc identifies a host function of ImportModule (ABI.md section 5).
type HostFunc uint8

// The host functions, in the order of ABI.md section 5.
const (
	FuncLog HostFunc = iota
	FuncSetReason
	FuncDeclareCallbacks
	FuncAddPublishFilter
	FuncSetSessionExpiry
	FuncSetReceiveMaximum
	FuncSetKeepalive
	FuncSetMaxQueued
	FuncAddConnackUserProperty
	FuncAddPermission
	// Host services (ABI 1.1): granted in the manifest, rate-limited.
	FuncTakeResult
	FuncSessionAttributeGet
	FuncSessionAttributeGetAll
	FuncSessionAttributePut
	FuncSessionAttributePutIfNewer
	FuncSessionAttributeRemove
	// Subscriptions, retained messages, connection attributes (1.1).
	FuncSubscriptionList
	FuncSubscriptionAdd
	FuncSubscriptionRemove
	FuncRetainedGet
	FuncRetainedPut
	FuncRetainedRemove
	FuncConnectionAttributeGet
	FuncConnectionAttributeGetAll
	FuncConnectionAttributePut
	FuncConnectionAttributeRemove
	FuncStorageGet
	FuncStoragePut
	FuncStorageRemove
	FuncStorageList
	// The client service.
	FuncClientIsConnected
	FuncClientSession
	FuncClientDisconnect
	FuncClientInvalidateSession
	FuncClientSetSessionExpiry
	FuncClientSetInflightWindow
	// The publish service.
	FuncPublish
	FuncPublishToClient
	FuncHTTPRequest
	FuncCacheResult
	FuncAuthCacheFlush
	// Interceptors (ABI 1.2): change the packet being intercepted.
	FuncPacketSet
	FuncPacketSetInt
	FuncAddInterceptFilter
	FuncAddInterceptClient
	// Client settings (ABI 1.3).
	FuncSetOverloadThrottling
	// NumHostFuncs is the number of host functions; it is not one.
	NumHostFuncs
)

// Service is a group of host functions an extension may call only when its
// manifest's services list grants it (ABI.md section 5, "Host services").
// Every call of a service function also passes the extension's rate
// limiter.
type Service uint8

// The services. ServiceNone marks the functions of ABI 1.0 and
// take_result, which need no grant and are not rate-limited.
const (
	ServiceNone Service = iota
	ServiceSessionAttributes
	ServiceSubscriptions
	ServiceRetained
	ServiceConnectionAttributes
	ServiceStorage
	ServiceClients
	ServicePublish
	ServiceHTTP
	ServiceAuthCache
	// NumServices is the number of services, ServiceNone included.
	NumServices
)

// ServiceNames are the names the manifest's services list uses, indexed
// by Service ("" for ServiceNone).
var ServiceNames = [NumServices]string{
	ServiceSessionAttributes:    "session_attributes",
	ServiceSubscriptions:        "subscriptions",
	ServiceRetained:             "retained",
	ServiceConnectionAttributes: "connection_attributes",
	ServiceStorage:              "storage",
	ServiceClients:              "clients",
	ServicePublish:              "publish",
	ServiceHTTP:                 "http",
	ServiceAuthCache:            "auth_cache",
}

// String returns the service's manifest name.
func (s Service) String() string {
	if s < NumServices && s != ServiceNone {
		return ServiceNames[s]
	}
	return "none"
}

// ServiceByName finds a service by its manifest name.
func ServiceByName(name string) (Service, bool) {
	for s := ServiceNone + 1; s < NumServices; s++ {
		if ServiceNames[s] == name {
			return s, true
		}
	}
	return 0, false
}

// Param is a named parameter of a host function.
type Param struct {
	Name string
	Type ValType
}

// HostFuncInfo describes one host function.
type HostFuncInfo struct {
	// Name is the function's name in ImportModule.
	Name string
	// Params are its parameters, named as in ABI.md.
	Params []Param
	// Results are its results (every ABI 1 host function returns one i32
	// status).
	Results []ValType
	// In is where it may be called; elsewhere it returns
	// StatusNotAvailable without doing anything.
	In CallbackSet
	// Service is the grant the function needs (ServiceNone: none, and no
	// rate limit).
	Service Service
}

// Sig returns the function's signature.
func (f HostFuncInfo) Sig() Signature {
	ps := make([]ValType, len(f.Params))
	for i, p := range f.Params {
		ps[i] = p.Type
	}
	return Signature{Params: ps, Results: f.Results}
}

func i32s(names ...string) []Param {
	ps := make([]Param, len(names))
	for i, n := range names {
		ps[i] = Param{Name: n, Type: I32}
	}
	return ps
}

var (
	inStart        = CallbacksOf(CallbackStart)
	inAuthenticate = CallbacksOf(CallbackAuthenticate)
	// inCacheable is where cache_result may be called: the authorize
	// callbacks since 1.4 (a module built for an earlier minor gets
	// NOT_AVAILABLE there, as it did).
	inCacheable = CallbacksOf(CallbackAuthenticate, CallbackAuthorizePublish, CallbackAuthorizeSubscribe)
	inDeciding  = CallbacksOf(CallbackStart, CallbackAuthenticate, CallbackAuthorizePublish, CallbackAuthorizeSubscribe)
	// InServices is where host services may be called: every callback
	// that runs while the broker serves.
	InServices = CallbacksOf(CallbackStart, CallbackAuthenticate, CallbackAuthorizePublish, CallbackAuthorizeSubscribe, CallbackOnEvent,
		CallbackTick)
	// inConnection is where a callback runs for one connection: the
	// connection attribute functions act on it.
	inConnection = CallbacksOf(CallbackAuthenticate, CallbackAuthorizePublish, CallbackAuthorizeSubscribe, CallbackOnEvent)
	// InHTTP is where http_request may be called: not on the publish
	// path (authorize_publish, authorize_subscribe), where a round trip
	// per message would hold up the client.
	InHTTP = CallbacksOf(CallbackStart, CallbackAuthenticate, CallbackOnEvent, CallbackTick)
)

// params is i32s, except that a name ending in "!" is an i64 parameter
// (the "!" dropped).
func params(names ...string) []Param {
	ps := make([]Param, len(names))
	for i, n := range names {
		ps[i] = Param{Name: n, Type: I32}
		if n[len(n)-1] == '!' {
			ps[i] = Param{Name: n[:len(n)-1], Type: I64}
		}
	}
	return ps
}

// HostFuncs describes every host function, indexed by HostFunc.
var HostFuncs = [NumHostFuncs]HostFuncInfo{
	FuncLog:                    {Name: "log", Params: i32s("level", "ptr", "len"), Results: oneI32, In: AnyCallback},
	FuncSetReason:              {Name: "set_reason", Params: i32s("ptr", "len"), Results: oneI32, In: inDeciding | inPreventing},
	FuncDeclareCallbacks:       {Name: "declare_callbacks", Params: i32s("mask"), Results: oneI32, In: inStart},
	FuncAddPublishFilter:       {Name: "add_publish_filter", Params: i32s("ptr", "len"), Results: oneI32, In: inStart},
	FuncSetSessionExpiry:       {Name: "set_session_expiry", Params: i32s("seconds"), Results: oneI32, In: inAuthenticate},
	FuncSetReceiveMaximum:      {Name: "set_receive_maximum", Params: i32s("n"), Results: oneI32, In: inAuthenticate},
	FuncSetKeepalive:           {Name: "set_keepalive", Params: i32s("seconds"), Results: oneI32, In: inAuthenticate},
	FuncSetMaxQueued:           {Name: "set_max_queued", Params: i32s("n"), Results: oneI32, In: inAuthenticate},
	FuncAddConnackUserProperty: {Name: "add_connack_user_property", Params: i32s("kptr", "klen", "vptr", "vlen"), Results: oneI32, In: inAuthenticate},
	FuncAddPermission:          {Name: "add_permission", Params: i32s("ptr", "len"), Results: oneI32, In: inAuthenticate},

	FuncTakeResult: {Name: "take_result", Params: i32s("out_ptr", "out_cap"), Results: oneI32, In: InServices},
	FuncSessionAttributeGet: {Name: "session_attribute_get", Params: i32s("cid_ptr", "cid_len", "key_ptr", "key_len", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceSessionAttributes},
	FuncSessionAttributeGetAll: {Name: "session_attribute_get_all", Params: i32s("cid_ptr", "cid_len", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceSessionAttributes},
	FuncSessionAttributePut: {Name: "session_attribute_put", Params: i32s("cid_ptr", "cid_len", "key_ptr", "key_len", "val_ptr", "val_len"),
		Results: oneI32, In: InServices, Service: ServiceSessionAttributes},
	FuncSessionAttributePutIfNewer: {Name: "session_attribute_put_if_newer",
		Params:  params("cid_ptr", "cid_len", "key_ptr", "key_len", "val_ptr", "val_len", "time!", "flags", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceSessionAttributes},
	FuncSessionAttributeRemove: {Name: "session_attribute_remove", Params: i32s("cid_ptr", "cid_len", "key_ptr", "key_len"),
		Results: oneI32, In: InServices, Service: ServiceSessionAttributes},

	FuncSubscriptionList: {Name: "subscription_list", Params: i32s("cid_ptr", "cid_len", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceSubscriptions},
	FuncSubscriptionAdd: {Name: "subscription_add", Params: i32s("cid_ptr", "cid_len", "filter_ptr", "filter_len", "qos", "options", "identifier"),
		Results: oneI32, In: InServices, Service: ServiceSubscriptions},
	FuncSubscriptionRemove: {Name: "subscription_remove", Params: i32s("cid_ptr", "cid_len", "filter_ptr", "filter_len"),
		Results: oneI32, In: InServices, Service: ServiceSubscriptions},
	FuncRetainedGet: {Name: "retained_get", Params: i32s("topic_ptr", "topic_len", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceRetained},
	FuncRetainedPut: {Name: "retained_put", Params: i32s("msg_ptr", "msg_len"),
		Results: oneI32, In: InServices, Service: ServiceRetained},
	FuncRetainedRemove: {Name: "retained_remove", Params: i32s("topic_ptr", "topic_len"),
		Results: oneI32, In: InServices, Service: ServiceRetained},
	FuncConnectionAttributeGet: {Name: "connection_attribute_get", Params: i32s("key_ptr", "key_len", "out_ptr", "out_cap"),
		Results: oneI32, In: inConnection, Service: ServiceConnectionAttributes},
	FuncConnectionAttributeGetAll: {Name: "connection_attribute_get_all", Params: i32s("out_ptr", "out_cap"),
		Results: oneI32, In: inConnection, Service: ServiceConnectionAttributes},
	FuncConnectionAttributePut: {Name: "connection_attribute_put", Params: i32s("key_ptr", "key_len", "val_ptr", "val_len"),
		Results: oneI32, In: inConnection, Service: ServiceConnectionAttributes},
	FuncConnectionAttributeRemove: {Name: "connection_attribute_remove", Params: i32s("key_ptr", "key_len"),
		Results: oneI32, In: inConnection, Service: ServiceConnectionAttributes},
	FuncStorageGet: {Name: "storage_get", Params: i32s("key_ptr", "key_len", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceStorage},
	FuncStoragePut: {Name: "storage_put", Params: i32s("key_ptr", "key_len", "val_ptr", "val_len"),
		Results: oneI32, In: InServices, Service: ServiceStorage},
	FuncStorageRemove: {Name: "storage_remove", Params: i32s("key_ptr", "key_len"),
		Results: oneI32, In: InServices, Service: ServiceStorage},
	FuncStorageList: {Name: "storage_list", Params: i32s("prefix_ptr", "prefix_len", "after_ptr", "after_len", "limit", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceStorage},
	FuncClientIsConnected: {Name: "client_is_connected", Params: i32s("cid_ptr", "cid_len"),
		Results: oneI32, In: InServices, Service: ServiceClients},
	FuncClientSession: {Name: "client_session", Params: i32s("cid_ptr", "cid_len", "out_ptr", "out_cap"),
		Results: oneI32, In: InServices, Service: ServiceClients},
	FuncClientDisconnect: {Name: "client_disconnect", Params: i32s("cid_ptr", "cid_len", "code", "reason_ptr", "reason_len", "flags"),
		Results: oneI32, In: InServices, Service: ServiceClients},
	FuncClientInvalidateSession: {Name: "client_invalidate_session", Params: i32s("cid_ptr", "cid_len"),
		Results: oneI32, In: InServices, Service: ServiceClients},
	FuncClientSetSessionExpiry: {Name: "client_set_session_expiry", Params: i32s("cid_ptr", "cid_len", "seconds"),
		Results: oneI32, In: InServices, Service: ServiceClients},
	FuncClientSetInflightWindow: {Name: "client_set_inflight_window", Params: i32s("cid_ptr", "cid_len", "n"),
		Results: oneI32, In: InServices, Service: ServiceClients},
	FuncPublish: {Name: "publish", Params: i32s("msg_ptr", "msg_len"),
		Results: oneI32, In: InServices, Service: ServicePublish},
	FuncPublishToClient: {Name: "publish_to_client", Params: i32s("cid_ptr", "cid_len", "msg_ptr", "msg_len"),
		Results: oneI32, In: InServices, Service: ServicePublish},
	FuncHTTPRequest: {Name: "http_request", Params: i32s("req_ptr", "req_len", "out_ptr", "out_cap"),
		Results: oneI32, In: InHTTP, Service: ServiceHTTP},
	FuncCacheResult:    {Name: "cache_result", Params: i32s("seconds"), Results: oneI32, In: inCacheable},
	FuncAuthCacheFlush: {Name: "auth_cache_flush", Params: i32s("cid_ptr", "cid_len"), Results: oneI32, In: InServices, Service: ServiceAuthCache},

	FuncPacketSet:          {Name: "packet_set", Params: i32s("field", "ptr", "len"), Results: oneI32, In: Interceptors},
	FuncPacketSetInt:       {Name: "packet_set_int", Params: params("field", "value!"), Results: oneI32, In: Interceptors},
	FuncAddInterceptFilter: {Name: "add_intercept_filter", Params: i32s("callbacks", "ptr", "len"), Results: oneI32, In: inStart},
	FuncAddInterceptClient: {Name: "add_intercept_client", Params: i32s("ptr", "len"), Results: oneI32, In: inStart},

	FuncSetOverloadThrottling: {Name: "set_overload_throttling", Params: i32s("enabled"), Results: oneI32, In: inAuthenticate},
}

// String returns the function's name.
func (f HostFunc) String() string {
	if f < NumHostFuncs {
		return HostFuncs[f].Name
	}
	return "unknown host function"
}

// HostFuncByName finds a host function by its import name.
func HostFuncByName(name string) (HostFunc, bool) {
	for i := range HostFuncs {
		if HostFuncs[i].Name == name {
			return HostFunc(i), true
		}
	}
	return 0, false
}

// Field identifies a field of the packet an interceptor is called for,
// the one packet_set and packet_set_int change (ABI.md section 5,
// "Changing the packet"). 0 is no field.
type Field uint8

// The fields, in the order of ABI.md's table.
const (
	FieldClientID Field = iota + 1
	FieldUsername
	FieldPassword
	FieldSessionExpiry
	FieldKeepalive
	FieldReceiveMaximum
	FieldUserProperties
	FieldWillTopic
	FieldWillPayload
	FieldWillQoS
	FieldWillRetain
	FieldWillDelay
	FieldReasonString
	FieldTopic
	FieldPayload
	FieldQoS
	FieldRetain
	FieldMessageExpiry
	FieldContentType
	FieldPayloadFormat
	FieldResponseTopic
	FieldCorrelationData
	FieldSubscriptionOptions
	// NumFields is the number of fields plus one (field 0 is none).
	NumFields
)

// FieldType is how packet_set or packet_set_int passes a field's value.
type FieldType uint8

// Field types.
const (
	// FieldInt: an integer, through packet_set_int, from Min to Max.
	FieldInt FieldType = iota + 1
	// FieldText: UTF-8 text through packet_set, at most MaxString bytes.
	FieldText
	// FieldBytes: any bytes through packet_set (payloads: at most the
	// broker's mqtt.max_packet_size, else MaxString).
	FieldBytes
	// FieldProperties: a list<str, str> of user properties through
	// packet_set; it replaces the packet's whole list.
	FieldProperties
)

// FieldInfo describes one field.
type FieldInfo struct {
	// Name is the field's name in ABI.md and the SDKs: "topic".
	Name string
	Type FieldType
	// Min and Max bound an int field's value.
	Min, Max uint64
	// In is the interceptors that may change it; elsewhere packet_set and
	// packet_set_int answer INVALID_ARGUMENT.
	In CallbackSet
}

var (
	inInterceptConnect = CallbacksOf(CallbackInterceptConnect)
	inInterceptPublish = CallbacksOf(CallbackInterceptPublishInbound)
	inInterceptEither  = CallbacksOf(CallbackInterceptPublishInbound, CallbackInterceptPublishOutbound)
	inInterceptReply   = CallbacksOf(CallbackInterceptConnack, CallbackInterceptDisconnect)
	// inPreventing is the interceptors that may answer DENY (set_reason).
	inPreventing = CallbacksOf(CallbackInterceptPublishInbound, CallbackInterceptPublishOutbound, CallbackInterceptSubscribe)
)

// Fields describes every field, indexed by Field.
var Fields = [NumFields]FieldInfo{
	FieldClientID:       {Name: "client_id", Type: FieldText, In: inInterceptConnect},
	FieldUsername:       {Name: "username", Type: FieldText, In: inInterceptConnect},
	FieldPassword:       {Name: "password", Type: FieldBytes, In: inInterceptConnect},
	FieldSessionExpiry:  {Name: "session_expiry", Type: FieldInt, Max: 1<<32 - 1, In: inInterceptConnect},
	FieldKeepalive:      {Name: "keepalive", Type: FieldInt, Max: 65535, In: inInterceptConnect},
	FieldReceiveMaximum: {Name: "receive_maximum", Type: FieldInt, Min: 1, Max: 65535, In: inInterceptConnect},
	FieldUserProperties: {Name: "user_properties", Type: FieldProperties,
		In: inInterceptConnect | inInterceptEither | inInterceptReply},
	FieldWillTopic:           {Name: "will_topic", Type: FieldText, In: inInterceptConnect},
	FieldWillPayload:         {Name: "will_payload", Type: FieldBytes, In: inInterceptConnect},
	FieldWillQoS:             {Name: "will_qos", Type: FieldInt, Max: 2, In: inInterceptConnect},
	FieldWillRetain:          {Name: "will_retain", Type: FieldInt, Max: 1, In: inInterceptConnect},
	FieldWillDelay:           {Name: "will_delay", Type: FieldInt, Max: 1<<32 - 1, In: inInterceptConnect},
	FieldReasonString:        {Name: "reason_string", Type: FieldText, In: inInterceptReply},
	FieldTopic:               {Name: "topic", Type: FieldText, In: inInterceptEither},
	FieldPayload:             {Name: "payload", Type: FieldBytes, In: inInterceptEither},
	FieldQoS:                 {Name: "qos", Type: FieldInt, Max: 2, In: inInterceptPublish | CallbacksOf(CallbackInterceptSubscribe)},
	FieldRetain:              {Name: "retain", Type: FieldInt, Max: 1, In: inInterceptPublish},
	FieldMessageExpiry:       {Name: "message_expiry", Type: FieldInt, Max: 1<<32 - 1, In: inInterceptPublish},
	FieldContentType:         {Name: "content_type", Type: FieldText, In: inInterceptPublish},
	FieldPayloadFormat:       {Name: "payload_format", Type: FieldInt, Max: 1, In: inInterceptPublish},
	FieldResponseTopic:       {Name: "response_topic", Type: FieldText, In: inInterceptPublish},
	FieldCorrelationData:     {Name: "correlation_data", Type: FieldBytes, In: inInterceptPublish},
	FieldSubscriptionOptions: {Name: "subscription_options", Type: FieldInt, Max: 0x0B, In: CallbacksOf(CallbackInterceptSubscribe)},
}

// String returns the field's ABI.md name.
func (f Field) String() string {
	if f > 0 && f < NumFields {
		return Fields[f].Name
	}
	return "unknown field"
}

// Decision is the low byte of a deciding callback's answer (ABI.md
// section 3).
type Decision uint8

// Decisions.
const (
	DecisionNext Decision = iota
	DecisionAllow
	DecisionDeny
	DecisionDisconnect
)

// DecisionInfo describes one decision.
type DecisionInfo struct {
	// Name is the decision's name in ABI.md: "DENY".
	Name string
	// Refuses is true for decisions that refuse and carry a reason code
	// (>= 0x80, or 0 for 0x87).
	Refuses bool
}

// Decisions describes every decision, indexed by Decision.
var Decisions = [...]DecisionInfo{
	DecisionNext:       {Name: "NEXT"},
	DecisionAllow:      {Name: "ALLOW"},
	DecisionDeny:       {Name: "DENY", Refuses: true},
	DecisionDisconnect: {Name: "DISCONNECT", Refuses: true},
}

// String returns the decision's ABI.md name.
func (d Decision) String() string {
	if int(d) < len(Decisions) {
		return Decisions[d].Name
	}
	return "unknown decision"
}

// DecisionSet is a set of decisions, one bit per Decision.
type DecisionSet uint8

// DecisionsOf returns the set of the given decisions.
func DecisionsOf(ds ...Decision) DecisionSet {
	var s DecisionSet
	for _, d := range ds {
		s |= 1 << d
	}
	return s
}

// Has reports whether d is in the set.
func (s DecisionSet) Has(d Decision) bool { return d < 8 && s&(1<<d) != 0 }

// Status codes of host functions (ABI.md section 6).
const (
	StatusOK              int32 = 0
	StatusInvalidArgument int32 = -1
	StatusNotAvailable    int32 = -2
	StatusNotPermitted    int32 = -3
	StatusRateLimited     int32 = -4
	StatusNotFound        int32 = -5
	StatusInternal        int32 = -6
	StatusTooLarge        int32 = -7
)

// StatusInfo describes one status code.
type StatusInfo struct {
	Code int32
	// Name is the code's name in ABI.md: "NOT_AVAILABLE".
	Name string
}

// Statuses lists every status code, in ABI.md's order.
var Statuses = []StatusInfo{
	{StatusOK, "OK"},
	{StatusInvalidArgument, "INVALID_ARGUMENT"},
	{StatusNotAvailable, "NOT_AVAILABLE"},
	{StatusNotPermitted, "NOT_PERMITTED"},
	{StatusRateLimited, "RATE_LIMITED"},
	{StatusNotFound, "NOT_FOUND"},
	{StatusInternal, "INTERNAL"},
	{StatusTooLarge, "TOO_LARGE"},
}

// Record kinds (ABI.md section 4).
const (
	KindStart     uint16 = 1
	KindConnect   uint16 = 2
	KindPublish   uint16 = 3
	KindSubscribe uint16 = 4
	KindEvent     uint16 = 5
	// The records of the interceptors (ABI 1.2).
	KindConnack      uint16 = 6
	KindMessage      uint16 = 7
	KindSubscription uint16 = 8
	KindDisconnect   uint16 = 9
)

// NamedValue is a number with its ABI.md name.
type NamedValue struct {
	Value uint16
	Name  string
}

// RecordKinds names every record kind.
var RecordKinds = []NamedValue{
	{KindStart, "START"},
	{KindConnect, "CONNECT"},
	{KindPublish, "PUBLISH"},
	{KindSubscribe, "SUBSCRIBE"},
	{KindEvent, "EVENT"},
	{KindConnack, "CONNACK"},
	{KindMessage, "MESSAGE"},
	{KindSubscription, "SUBSCRIPTION"},
	{KindDisconnect, "DISCONNECT"},
}

// Event kinds of the EVENT record.
const (
	EventConnectionStart = 1
	EventAuthSucceeded   = 2
	EventAuthFailed      = 3
	EventDisconnect      = 4
	EventSubscribe       = 5
	EventUnsubscribe     = 6
)

// EventKinds names every event kind; the names are the ones logs, the SDKs
// and ABI.md use.
var EventKinds = []NamedValue{
	{EventConnectionStart, "connection_start"},
	{EventAuthSucceeded, "auth_succeeded"},
	{EventAuthFailed, "auth_failed"},
	{EventDisconnect, "disconnect"},
	{EventSubscribe, "subscribe"},
	{EventUnsubscribe, "unsubscribe"},
}

// Disconnect kinds of the EVENT record (event EventDisconnect).
const (
	DisconnectByClient = 1
	DisconnectLost     = 2
	DisconnectByServer = 3
)

// DisconnectKinds names every disconnect kind.
var DisconnectKinds = []NamedValue{
	{DisconnectByClient, "client"},
	{DisconnectLost, "lost"},
	{DisconnectByServer, "server"},
}

// NameOf returns the name of v in a table of named values, or "unknown".
func NameOf(table []NamedValue, v uint16) string {
	for _, nv := range table {
		if nv.Value == v {
			return nv.Name
		}
	}
	return "unknown"
}
