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

// hostFuncBody implements one host function of abi.HostFuncs. It runs on
// the goroutine of the call into the guest, only when the function is
// callable from the running callback (the row's In; elsewhere the guest
// gets NOT_AVAILABLE without the body running), and returns the status.
// Bodies use the stack-based API (no reflection) and never allocate on the
// paths a publish takes.
type hostFuncBody func(in *instance, mod api.Module, stack []uint64) int32

// brokerBody is the body of a host service that acts on the broker: it
// gets the broker's services, which needsBroker checks are wired.
type brokerBody func(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32

// needsBroker makes a hostFuncBody of b that answers NOT_AVAILABLE while
// the host has no broker (UseBroker not called: a host checking a folder
// offline, or tests).
func needsBroker(b brokerBody) hostFuncBody {
	return func(in *instance, mod api.Module, stack []uint64) int32 {
		svc := in.ext.host.services()
		if svc == nil {
			return abi.StatusNotAvailable
		}
		in.ext.inBroker.Add(1)
		defer in.ext.inBroker.Add(-1)
		return b(in, svc, mod, stack)
	}
}

// hostFuncBodies implements abi.HostFuncs, row for row. Adding a host
// function: a row in abi's table, its section in ABI.md, and its body here.
var hostFuncBodies = [abi.NumHostFuncs]hostFuncBody{
	abi.FuncLog:                    hfLog,
	abi.FuncSetReason:              hfSetReason,
	abi.FuncDeclareCallbacks:       hfDeclareCallbacks,
	abi.FuncAddPublishFilter:       hfAddPublishFilter,
	abi.FuncSetSessionExpiry:       hfSetSessionExpiry,
	abi.FuncSetReceiveMaximum:      hfSetReceiveMaximum,
	abi.FuncSetKeepalive:           hfSetKeepalive,
	abi.FuncSetMaxQueued:           hfSetMaxQueued,
	abi.FuncAddConnackUserProperty: hfAddConnackUserProperty,
	abi.FuncAddPermission:          hfAddPermission,

	abi.FuncTakeResult:                 hfTakeResult,
	abi.FuncSessionAttributeGet:        needsBroker(hfSessionAttributeGet),
	abi.FuncSessionAttributeGetAll:     needsBroker(hfSessionAttributeGetAll),
	abi.FuncSessionAttributePut:        needsBroker(hfSessionAttributePut),
	abi.FuncSessionAttributePutIfNewer: needsBroker(hfSessionAttributePutIfNewer),
	abi.FuncSessionAttributeRemove:     needsBroker(hfSessionAttributeRemove),

	abi.FuncSubscriptionList:          needsBroker(hfSubscriptionList),
	abi.FuncSubscriptionAdd:           needsBroker(hfSubscriptionAdd),
	abi.FuncSubscriptionRemove:        needsBroker(hfSubscriptionRemove),
	abi.FuncRetainedGet:               needsBroker(hfRetainedGet),
	abi.FuncRetainedPut:               needsBroker(hfRetainedPut),
	abi.FuncRetainedRemove:            needsBroker(hfRetainedRemove),
	abi.FuncConnectionAttributeGet:    needsBroker(hfConnectionAttributeGet),
	abi.FuncConnectionAttributeGetAll: needsBroker(hfConnectionAttributeGetAll),
	abi.FuncConnectionAttributePut:    needsBroker(hfConnectionAttributePut),
	abi.FuncConnectionAttributeRemove: needsBroker(hfConnectionAttributeRemove),
	abi.FuncStorageGet:                needsBroker(hfStorageGet),
	abi.FuncStoragePut:                needsBroker(hfStoragePut),
	abi.FuncStorageRemove:             needsBroker(hfStorageRemove),
	abi.FuncStorageList:               needsBroker(hfStorageList),
	abi.FuncClientIsConnected:         needsBroker(hfClientIsConnected),
	abi.FuncClientSession:             needsBroker(hfClientSession),
	abi.FuncClientDisconnect:          needsBroker(hfClientDisconnect),
	abi.FuncClientInvalidateSession:   needsBroker(hfClientInvalidateSession),
	abi.FuncClientSetSessionExpiry:    needsBroker(hfClientSetSessionExpiry),
	abi.FuncClientSetInflightWindow:   needsBroker(hfClientSetInflightWindow),
	abi.FuncPublish:                   needsBroker(hfPublish),
	abi.FuncPublishToClient:           needsBroker(hfPublishToClient),
	abi.FuncHTTPRequest:               hfHTTPRequest,
	abi.FuncCacheResult:               hfCacheResult,
	abi.FuncAuthCacheFlush:            hfAuthCacheFlush,
	abi.FuncPacketSet:                 hfPacketSet,
	abi.FuncPacketSetInt:              hfPacketSetInt,
	abi.FuncAddInterceptFilter:        hfAddInterceptFilter,
	abi.FuncAddInterceptClient:        hfAddInterceptClient,
	abi.FuncSetOverloadThrottling:     hfSetOverloadThrottling,
}

// instantiateHostFuncs defines the propolis_v1 module in rt, for e, from
// abi.HostFuncs.
func instantiateHostFuncs(ctx context.Context, rt wazero.Runtime, e *extension) error {
	b := rt.NewHostModuleBuilder(abi.ImportModule)
	for f, info := range abi.HostFuncs {
		f := abi.HostFunc(f)
		body := hostFuncBodies[f]
		if body == nil {
			return fmt.Errorf("host function %s: not implemented by this host", info.Name)
		}
		sig := info.Sig()
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			in := instanceFrom(ctx)
			if in == nil {
				// Outside a call made through instance.run (none is:
				// newInstance runs _initialize itself); answer as during
				// _initialize.
				in = &instance{ext: e, cb: abi.CallbackInitialize}
			}
			st := callHostFunc(in, f, &info, body, mod, stack)
			stack[0] = status(st)
		}), valueTypes(sig.Params), valueTypes(sig.Results)).Export(info.Name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host functions: %w", err)
	}
	return nil
}

// callHostFunc is the one path of a guest's call of host function f:
// where it is callable (info.In), then for a host service the manifest's
// grant and the rate limit (the gate), then its body. Every host service
// call that returns is counted here, by service and status, refusals
// included.
func callHostFunc(in *instance, f abi.HostFunc, info *abi.HostFuncInfo, body hostFuncBody, mod api.Module, stack []uint64) int32 {
	if info.Service == abi.ServiceNone {
		if !info.In.Has(in.cb) {
			return abi.StatusNotAvailable
		}
		return body(in, mod, stack)
	}
	st := abi.StatusNotAvailable
	if info.In.Has(in.cb) {
		if st = in.ext.gate.admit(in, f); st == abi.StatusOK {
			st = body(in, mod, stack) // a trap (bad pointer) panics through: not counted
		}
	}
	in.ext.counters.countService(info.Service, st)
	return st
}

// valueTypes converts ABI value types to wazero's (the same bytes).
func valueTypes(ts []abi.ValType) []api.ValueType {
	out := make([]api.ValueType, len(ts))
	for i, t := range ts {
		out[i] = api.ValueType(t)
	}
	return out
}

// status encodes an i32 result on the stack.
func status(v int32) uint64 { return uint64(uint32(v)) }

// read returns a copy of guest memory [ptr, ptr+n). Out of bounds is a
// guest bug: it traps (the panic becomes the call's error). Callers check
// n against abi.MaxString first.
func read(mod api.Module, ptr, n uint32) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("host function: memory [%d, %d) outside the guest's %d bytes", ptr, uint64(ptr)+uint64(n), mod.Memory().Size()))
	}
	return append([]byte(nil), b...)
}

func hfLog(in *instance, mod api.Module, stack []uint64) int32 {
	level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	msg := read(mod, ptr, min(n, abi.MaxLogLine))
	attrs := []any{"source", "guest", "callback", in.cb.String()}
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
	ptr, n := uint32(stack[0]), uint32(stack[1])
	if n > abi.MaxReason {
		return abi.StatusTooLarge
	}
	in.out.dirty = true
	in.out.reason = string(read(mod, ptr, n))
	return abi.StatusOK
}

func hfDeclareCallbacks(in *instance, _ api.Module, stack []uint64) int32 {
	mask := uint32(stack[0])
	if mask&^abi.AllCallbackBits != 0 || mask&^in.ext.callbacks != 0 {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	in.out.declared, in.out.mask = true, mask
	return abi.StatusOK
}

func hfAddPublishFilter(in *instance, mod api.Module, stack []uint64) int32 {
	if uint32(stack[1]) > abi.MaxString || len(in.out.filters) >= abi.MaxPublishFilters {
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
	v := uint32(stack[0])
	in.out.dirty = true
	in.out.sessionExpiry = &v
	return abi.StatusOK
}

func hfSetReceiveMaximum(in *instance, _ api.Module, stack []uint64) int32 {
	return setCount(in, stack, &in.out.receiveMax)
}

func hfSetKeepalive(in *instance, _ api.Module, stack []uint64) int32 {
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

// hfSetOverloadThrottling is set_overload_throttling (ABI 1.3): 0 exempts
// the client from the broker's overload throttling, 1 leaves it to its
// listener.
func hfSetOverloadThrottling(in *instance, _ api.Module, stack []uint64) int32 {
	v := uint32(stack[0])
	if v > 1 {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	in.out.noThrottling = v == 0
	return abi.StatusOK
}

// setCount stores a 1-65535 setting.
func setCount(in *instance, stack []uint64, dst *uint16) int32 {
	v := uint32(stack[0])
	if v < 1 || v > 65535 {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	*dst = uint16(v)
	return abi.StatusOK
}

func hfAddConnackUserProperty(in *instance, mod api.Module, stack []uint64) int32 {
	if len(in.out.connack) >= abi.MaxConnackProperties {
		return abi.StatusTooLarge
	}
	if uint32(stack[1]) > abi.MaxString || uint32(stack[3]) > abi.MaxString {
		return abi.StatusTooLarge
	}
	k := read(mod, uint32(stack[0]), uint32(stack[1]))
	v := read(mod, uint32(stack[2]), uint32(stack[3]))
	in.out.dirty = true
	in.out.connack = append(in.out.connack, broker.UserProperty{Key: string(k), Value: string(v)})
	return abi.StatusOK
}

func hfAddPermission(in *instance, mod api.Module, stack []uint64) int32 {
	if len(in.out.perms) >= abi.MaxPermissions {
		return abi.StatusTooLarge
	}
	if uint32(stack[1]) > abi.MaxString {
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
