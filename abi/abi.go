package abi

// ImportModule is the name of the import module holding the host functions
// of ABI major version 1.
const ImportModule = "propolis_v1"

// Names of the exports the host calls (ABI.md section 3).
const (
	ExportMarker             = "propolis_abi_v1"
	ExportBuffer             = "propolis_buffer"
	ExportStart              = "propolis_start"
	ExportStop               = "propolis_stop"
	ExportAuthenticate       = "propolis_authenticate"
	ExportAuthorizePublish   = "propolis_authorize_publish"
	ExportAuthorizeSubscribe = "propolis_authorize_subscribe"
	ExportOnEvent            = "propolis_on_event"
	ExportInitialize         = "_initialize" // WASI reactor initializer, called first when present
	ExportMemory             = "memory"
)

// Names of the host functions in ImportModule (ABI.md section 5).
const (
	FuncLog                    = "log"
	FuncSetReason              = "set_reason"
	FuncDeclareCallbacks       = "declare_callbacks"
	FuncAddPublishFilter       = "add_publish_filter"
	FuncSetSessionExpiry       = "set_session_expiry"
	FuncSetReceiveMaximum      = "set_receive_maximum"
	FuncSetKeepalive           = "set_keepalive"
	FuncSetMaxQueued           = "set_max_queued"
	FuncAddConnackUserProperty = "add_connack_user_property"
	FuncAddPermission          = "add_permission"
)

// ValType is a WebAssembly value type as it appears in a signature.
type ValType byte

// The value types ABI 1 uses.
const (
	I32 ValType = 0x7f
	I64 ValType = 0x7e
)

// Signature is a function type: parameters and results.
type Signature struct {
	Params, Results []ValType
}

// String formats a signature like ABI.md does: "(i32,i32)->i32".
func (s Signature) String() string {
	f := func(ts []ValType) string {
		out := ""
		for i, t := range ts {
			if i > 0 {
				out += ","
			}
			switch t {
			case I32:
				out += "i32"
			case I64:
				out += "i64"
			default:
				out += "?"
			}
		}
		return out
	}
	r := f(s.Results)
	if len(s.Results) != 1 {
		r = "(" + r + ")"
	}
	return "(" + f(s.Params) + ")->" + r
}

// Equal reports whether two signatures are the same.
func (s Signature) Equal(o Signature) bool {
	if len(s.Params) != len(o.Params) || len(s.Results) != len(o.Results) {
		return false
	}
	for i := range s.Params {
		if s.Params[i] != o.Params[i] {
			return false
		}
	}
	for i := range s.Results {
		if s.Results[i] != o.Results[i] {
			return false
		}
	}
	return true
}

func sig(params []ValType, results ...ValType) Signature {
	return Signature{Params: params, Results: results}
}

var (
	none    = []ValType{}
	oneI32  = []ValType{I32}
	twoI32  = []ValType{I32, I32}
	fourI32 = []ValType{I32, I32, I32, I32}
)

// Exports lists the signature of every export of ABI 1.0 the host may call.
var Exports = map[string]Signature{
	ExportMarker:             sig(none, I32),
	ExportBuffer:             sig(oneI32, I32),
	ExportStart:              sig(oneI32, I32),
	ExportStop:               sig(none),
	ExportAuthenticate:       sig(oneI32, I32),
	ExportAuthorizePublish:   sig(oneI32, I32),
	ExportAuthorizeSubscribe: sig(oneI32, I32),
	ExportOnEvent:            sig(oneI32),
	ExportInitialize:         sig(none),
}

// HostFuncs lists the signature of every host function of ABI 1.0.
var HostFuncs = map[string]Signature{
	FuncLog:                    sig([]ValType{I32, I32, I32}, I32),
	FuncSetReason:              sig(twoI32, I32),
	FuncDeclareCallbacks:       sig(oneI32, I32),
	FuncAddPublishFilter:       sig(twoI32, I32),
	FuncSetSessionExpiry:       sig(oneI32, I32),
	FuncSetReceiveMaximum:      sig(oneI32, I32),
	FuncSetKeepalive:           sig(oneI32, I32),
	FuncSetMaxQueued:           sig(oneI32, I32),
	FuncAddConnackUserProperty: sig(fourI32, I32),
	FuncAddPermission:          sig(twoI32, I32),
}

// Decision is the low byte of a callback's answer (ABI.md section 3).
type Decision uint8

// Decisions.
const (
	DecisionNext       Decision = 0
	DecisionAllow      Decision = 1
	DecisionDeny       Decision = 2
	DecisionDisconnect Decision = 3
)

// EncodeDecision packs a decision and reason code into a callback result.
func EncodeDecision(d Decision, code byte) uint32 { return uint32(d) | uint32(code)<<8 }

// DecodeDecision unpacks a callback result. ok is false for anything ABI.md
// does not define: a decision above 3, bits 16-31 set, or a reason code
// below 0x80 (other than 0) on DENY or DISCONNECT.
func DecodeDecision(v uint32) (d Decision, code byte, ok bool) {
	d, code = Decision(v&0xff), byte(v>>8)
	if v>>16 != 0 || d > DecisionDisconnect {
		return 0, 0, false
	}
	if (d == DecisionDeny || d == DecisionDisconnect) && code != 0 && code < 0x80 {
		return 0, 0, false
	}
	return d, code, true
}

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

// Callback bits for declare_callbacks.
const (
	CallbackAuthenticate       = 1 << 0
	CallbackAuthorizePublish   = 1 << 1
	CallbackAuthorizeSubscribe = 1 << 2
	CallbackOnEvent            = 1 << 3
)

// Record kinds (ABI.md section 4).
const (
	KindStart     uint16 = 1
	KindConnect   uint16 = 2
	KindPublish   uint16 = 3
	KindSubscribe uint16 = 4
	KindEvent     uint16 = 5
)

// HeaderSize is the size of a record header.
const HeaderSize = 8

// CONNECT record flags.
const (
	ConnectCleanStart  = 1 << 0
	ConnectHasUsername = 1 << 1
	ConnectHasPassword = 1 << 2
	ConnectHasWill     = 1 << 3
	ConnectWillRetain  = 1 << 4
	ConnectTLS         = 1 << 5
)

// PUBLISH and SUBSCRIBE record flags.
const (
	PublishRetain   = 1 << 0
	PublishWill     = 1 << 1
	SubscribeShared = 1 << 0
)

// Event kinds of the EVENT record.
const (
	EventConnectionStart = 1
	EventAuthSucceeded   = 2
	EventAuthFailed      = 3
	EventDisconnect      = 4
	EventSubscribe       = 5
	EventUnsubscribe     = 6
)

// Permission field values (add_permission).
const (
	PermAllow          = 1
	PermDeny           = 2
	ActivityPublish    = 1
	ActivitySubscribe  = 2
	ActivityBoth       = 3
	RetainAny          = 0
	RetainNotRetained  = 1
	RetainOnlyRetained = 2
	SharedAny          = 0
	SharedNotShared    = 1
	SharedOnlyShared   = 2
	PermissionHeader   = 8
)

// Limits the host enforces (ABI.md section 5).
const (
	MaxLogLine            = 4096
	MaxReason             = 1024
	MaxConnackProperties  = 32
	MaxPermissions        = 256
	DefaultBufferCapacity = 4096
)
