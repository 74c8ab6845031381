package abi

// ImportModule is the name of the import module holding the host functions
// of ABI major version 1.
const ImportModule = "propolis_v1"

// ExportMemory is the name of the linear memory every module exports.
const ExportMemory = "memory"

// ValType is a WebAssembly value type as it appears in a signature.
type ValType byte

// The value types ABI 1 uses.
const (
	I32 ValType = 0x7f
	I64 ValType = 0x7e
)

// String returns "i32" or "i64".
func (t ValType) String() string {
	switch t {
	case I32:
		return "i32"
	case I64:
		return "i64"
	}
	return "?"
}

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
			out += t.String()
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

// DecodeDecision unpacks a callback result. ok is false for anything ABI.md
// does not define: a decision above the last one, bits 16-31 set, or a
// reason code below 0x80 (other than 0) on a refusing decision.
func DecodeDecision(v uint32) (d Decision, code byte, ok bool) {
	d, code = Decision(v&0xff), byte(v>>8)
	if v>>16 != 0 || int(d) >= len(Decisions) {
		return 0, 0, false
	}
	if Decisions[d].Refuses && code != 0 && code < 0x80 {
		return 0, 0, false
	}
	return d, code, true
}

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
	MaxPublishFilters     = 1024
	MaxString             = 64 << 10
	DefaultBufferCapacity = 4096
	// MaxAttributeKey and MaxAttributeValue bound a session attribute's
	// key and value, in bytes (the broker enforces them).
	MaxAttributeKey   = 256
	MaxAttributeValue = 10 << 10
	// MaxResult is the largest result a host service hands a guest.
	MaxResult = 16 << 20
	// MaxStorageKey and MaxStorageValue bound a key and a value of an
	// extension's key-value storage (service storage), in bytes;
	// MaxStorageList bounds the keys one storage_list call answers.
	MaxStorageKey   = 1024
	MaxStorageValue = 1 << 20
	MaxStorageList  = 1000
)

// Flags and limits of the client and publish services (ABI.md section 5).
const (
	// DisconnectPreventWill is the flags bit of client_disconnect that
	// keeps the client's will from being published.
	DisconnectPreventWill = 1
	// MessageRetain is the flags bit of a message (ABI.md, "The message
	// argument") that retains it.
	MessageRetain = 1
	// MaxMessage is the largest message argument of publish and
	// publish_to_client, in bytes.
	MaxMessage = 16 << 20
	// DropNewest is the drop strategy client_session reports: a full queue
	// drops the new message.
	DropNewest = 0
)

// PutIfNewerOrEqual is the flags bit of session_attribute_put_if_newer
// that also writes when the times are equal.
const PutIfNewerOrEqual = 1

// Bits of the options parameter of subscription_add and of the options
// field of subscription_list's result: the MQTT 5 subscription options.
// Retain handling (0, 1 or 2) sits in bits 2-3.
const (
	SubscriptionNoLocal             = 1 << 0
	SubscriptionRetainAsPublished   = 1 << 1
	SubscriptionRetainHandlingShift = 2
	SubscriptionRetainHandlingMask  = 3 << SubscriptionRetainHandlingShift
)

// MaxConnectionAttributes bounds the attributes of one connection: the sum
// of its keys' and values' lengths, in bytes. Each key and value also
// keeps to MaxAttributeKey and MaxAttributeValue.
const MaxConnectionAttributes = 64 << 10

// Limits of outbound HTTP and the authentication cache (ABI.md section 5,
// http_request and cache_result).
const (
	// MaxHTTPRequest is the largest http_request request, its body
	// included, in bytes.
	MaxHTTPRequest = 1 << 20
	// MaxHTTPHeaders is the most headers a request may carry.
	MaxHTTPHeaders = 64
	// MaxCacheSeconds is the longest time cache_result keeps an answer.
	MaxCacheSeconds = 86400
	// MinorAuthorizeCache is the first minor version whose modules may
	// call cache_result in propolis_authorize_publish and
	// propolis_authorize_subscribe; an older module gets NOT_AVAILABLE
	// there, as it did under the hosts it was built for.
	MinorAuthorizeCache = 4
	// MaxKeptName is the longest topic or filter, in bytes, whose
	// authorize answer the host keeps (cache_result, 1.4).
	MaxKeptName = 256
)
