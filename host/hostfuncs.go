package host

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// hostFunc is a host function of ABI 1.0: its name, signature and body.
// Bodies use the stack-based API (no reflection) and never allocate on the
// paths a publish takes.
type hostFunc struct {
	name string
	fn   func(in *instance, mod api.Module, stack []uint64) int32
}

// maxFilters bounds add_publish_filter calls.
const maxFilters = 1024

var hostFuncs = []hostFunc{
	{abi.FuncLog, hfLog},
	{abi.FuncSetReason, hfSetReason},
	{abi.FuncDeclareCallbacks, hfDeclareCallbacks},
	{abi.FuncAddPublishFilter, hfAddPublishFilter},
	{abi.FuncSetSessionExpiry, hfSetSessionExpiry},
	{abi.FuncSetReceiveMaximum, hfSetReceiveMaximum},
	{abi.FuncSetKeepalive, hfSetKeepalive},
	{abi.FuncSetMaxQueued, hfSetMaxQueued},
	{abi.FuncAddConnackUserProperty, hfAddConnackUserProperty},
	{abi.FuncAddPermission, hfAddPermission},
}

// instantiateHostFuncs defines the propolis_v1 module in rt, for e.
func instantiateHostFuncs(ctx context.Context, rt wazero.Runtime, e *Extension) error {
	b := rt.NewHostModuleBuilder(abi.ImportModule)
	for _, hf := range hostFuncs {
		sig := abi.HostFuncs[hf.name]
		params := make([]api.ValueType, len(sig.Params))
		for i, p := range sig.Params {
			params[i] = api.ValueType(p)
		}
		results := make([]api.ValueType, len(sig.Results))
		for i, r := range sig.Results {
			results[i] = api.ValueType(r)
		}
		body := hf.fn
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instanceFrom(ctx)
			if in == nil {
				// Outside a callback: during _initialize only log works.
				in = &instance{ext: e}
			}
			stack[0] = status(body(in, mod, stack))
		}), params, results).Export(hf.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host functions: %w", err)
	}
	return nil
}

// status encodes an i32 result on the stack.
func status(v int32) uint64 { return uint64(uint32(v)) }

// maxString bounds any string a host function copies out of the guest.
const maxString = 64 << 10

// read returns a copy of guest memory [ptr, ptr+n). Out of bounds is a
// guest bug: it traps (the panic becomes the call's error). Callers check
// n against maxString first.
func read(mod api.Module, ptr, n uint32) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("host function: memory [%d, %d) outside the guest's %d bytes", ptr, uint64(ptr)+uint64(n), mod.Memory().Size()))
	}
	return append([]byte(nil), b...)
}

// in reports whether the instance is inside one of the callbacks.
func (in *instance) inside(cbs ...callback) bool {
	for _, c := range cbs {
		if in.cb == c {
			return true
		}
	}
	return false
}

func hfLog(in *instance, mod api.Module, stack []uint64) int32 {
	level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	msg := read(mod, ptr, min(n, abi.MaxLogLine))
	attrs := []any{"source", "guest"}
	if in.cb != cbNone {
		attrs = append(attrs, "callback", in.cb.String())
	}
	switch level {
	case 0:
		in.ext.log.Debug(string(msg), attrs...)
	case 1:
		in.ext.log.Info(string(msg), attrs...)
	case 2:
		in.ext.log.Warn(string(msg), attrs...)
	case 3:
		in.ext.log.Error(string(msg), attrs...)
	default:
		return abi.StatusInvalidArgument
	}
	return abi.StatusOK
}

func hfSetReason(in *instance, mod api.Module, stack []uint64) int32 {
	if !in.inside(cbStart, cbAuthenticate, cbAuthorizePublish, cbAuthorizeSubscribe) {
		return abi.StatusNotAvailable
	}
	ptr, n := uint32(stack[0]), uint32(stack[1])
	if n > abi.MaxReason {
		return abi.StatusTooLarge
	}
	in.out.dirty = true
	in.out.reason = string(read(mod, ptr, n))
	return abi.StatusOK
}

func hfDeclareCallbacks(in *instance, _ api.Module, stack []uint64) int32 {
	if in.cb != cbStart {
		return abi.StatusNotAvailable
	}
	mask := int32(stack[0])
	const all = abi.CallbackAuthenticate | abi.CallbackAuthorizePublish | abi.CallbackAuthorizeSubscribe | abi.CallbackOnEvent
	if mask&^all != 0 || mask&^in.ext.callbacks != 0 {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	in.out.declared = mask
	return abi.StatusOK
}

func hfAddPublishFilter(in *instance, mod api.Module, stack []uint64) int32 {
	if in.cb != cbStart {
		return abi.StatusNotAvailable
	}
	if uint32(stack[1]) > maxString || len(in.out.filters) >= maxFilters {
		return abi.StatusTooLarge
	}
	f := string(read(mod, uint32(stack[0]), uint32(stack[1])))
	if !topic.ValidFilter(f) {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	in.out.filters = append(in.out.filters, f)
	return abi.StatusOK
}

func hfSetSessionExpiry(in *instance, _ api.Module, stack []uint64) int32 {
	if in.cb != cbAuthenticate {
		return abi.StatusNotAvailable
	}
	v := uint32(stack[0])
	in.out.dirty = true
	in.out.sessionExpiry = &v
	return abi.StatusOK
}

func hfSetReceiveMaximum(in *instance, _ api.Module, stack []uint64) int32 {
	return setCount(in, stack, &in.out.receiveMax)
}

func hfSetKeepalive(in *instance, _ api.Module, stack []uint64) int32 {
	if in.cb != cbAuthenticate {
		return abi.StatusNotAvailable
	}
	v := uint32(stack[0])
	if v > 65535 {
		return abi.StatusInvalidArgument
	}
	k := uint16(v)
	in.out.dirty = true
	in.out.keepalive = &k
	return abi.StatusOK
}

func hfSetMaxQueued(in *instance, _ api.Module, stack []uint64) int32 {
	return setCount(in, stack, &in.out.maxQueued)
}

// setCount stores a 1-65535 setting given during authenticate.
func setCount(in *instance, stack []uint64, dst *uint16) int32 {
	if in.cb != cbAuthenticate {
		return abi.StatusNotAvailable
	}
	v := uint32(stack[0])
	if v < 1 || v > 65535 {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	*dst = uint16(v)
	return abi.StatusOK
}

func hfAddConnackUserProperty(in *instance, mod api.Module, stack []uint64) int32 {
	if in.cb != cbAuthenticate {
		return abi.StatusNotAvailable
	}
	if len(in.out.connack) >= abi.MaxConnackProperties {
		return abi.StatusTooLarge
	}
	if uint32(stack[1]) > maxString || uint32(stack[3]) > maxString {
		return abi.StatusTooLarge
	}
	k := read(mod, uint32(stack[0]), uint32(stack[1]))
	v := read(mod, uint32(stack[2]), uint32(stack[3]))
	in.out.dirty = true
	in.out.connack = append(in.out.connack, broker.UserProperty{Key: string(k), Value: string(v)})
	return abi.StatusOK
}

func hfAddPermission(in *instance, mod api.Module, stack []uint64) int32 {
	if in.cb != cbAuthenticate {
		return abi.StatusNotAvailable
	}
	if len(in.out.perms) >= abi.MaxPermissions {
		return abi.StatusTooLarge
	}
	if uint32(stack[1]) > maxString {
		return abi.StatusTooLarge
	}
	p, err := abi.DecodePermission(read(mod, uint32(stack[0]), uint32(stack[1])))
	if err != nil || !topic.ValidFilter(p.Filter) {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	in.out.perms = append(in.out.perms, p)
	return abi.StatusOK
}
