package host

import (
	"errors"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file holds the bodies of the host services (ABI.md section 5, "Host
// services") and what they share: reading arguments without trapping,
// handing results back (take_result), and turning the broker's errors into
// status codes. hostfuncs.go's gate has already checked where the call is
// made, the grant and the rate limit.

// arg returns a copy of guest memory [ptr, ptr+n): TOO_LARGE beyond max
// bytes, INVALID_ARGUMENT when it is not inside the guest's memory (a bad
// pointer is a status here, not a trap).
func arg(mod api.Module, ptr, n, max uint32) ([]byte, int32) {
	if n > max {
		return nil, abi.StatusTooLarge
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		return nil, abi.StatusInvalidArgument
	}
	return append([]byte(nil), b...), abi.StatusOK
}

// strArg is arg as a string.
func strArg(mod api.Module, ptr, n, max uint32) (string, int32) {
	b, st := arg(mod, ptr, n, max)
	return string(b), st
}

// result hands data to the guest as a service's result: written at
// outPtr when it fits outCap, else kept for take_result until the callback
// ends. It returns the result's length, or INVALID_ARGUMENT when outPtr is
// not inside the guest's memory, or TOO_LARGE beyond abi.MaxResult.
func result(in *instance, mod api.Module, outPtr, outCap uint32, data []byte) int32 {
	if len(data) > abi.MaxResult {
		return abi.StatusTooLarge
	}
	if uint32(len(data)) <= outCap {
		if !mod.Memory().Write(outPtr, data) {
			return abi.StatusInvalidArgument
		}
		return int32(len(data))
	}
	in.out.dirty = true
	in.out.result, in.out.held = data, true
	return int32(len(data))
}

func hfTakeResult(in *instance, mod api.Module, stack []uint64) int32 {
	outPtr, outCap := uint32(stack[0]), uint32(stack[1])
	if !in.out.held {
		return abi.StatusNotFound
	}
	data := in.out.result
	if uint32(len(data)) > outCap {
		return int32(len(data)) // still too small: kept
	}
	if !mod.Memory().Write(outPtr, data) {
		return abi.StatusInvalidArgument
	}
	in.out.result, in.out.held = nil, false
	return int32(len(data))
}

// serviceStatus turns a broker service's error into a status code; an
// error the guest cannot have caused is logged, as INTERNAL.
func serviceStatus(in *instance, f abi.HostFunc, err error) int32 {
	switch {
	case err == nil:
		return abi.StatusOK
	case errors.Is(err, broker.ErrNoSession), errors.Is(err, broker.ErrNotConnected):
		return abi.StatusNotFound
	case errors.Is(err, broker.ErrInvalidArgument):
		return abi.StatusInvalidArgument
	case errors.Is(err, broker.ErrTooLarge):
		return abi.StatusTooLarge
	}
	in.ext.log.Error("host service failed", "function", f.String(), "callback", in.cb.String(), "error", err)
	return abi.StatusInternal
}

// clientAndKey reads the client id and attribute key arguments at
// stack[0:4].
func clientAndKey(mod api.Module, stack []uint64) (clientID, key string, st int32) {
	if clientID, st = strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxString); st != abi.StatusOK {
		return
	}
	key, st = strArg(mod, uint32(stack[2]), uint32(stack[3]), abi.MaxAttributeKey)
	return
}

func hfSessionAttributeGet(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, key, st := clientAndKey(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	v, ok, err := svc.Attribute(cid, key)
	if err != nil {
		return serviceStatus(in, abi.FuncSessionAttributeGet, err)
	}
	if !ok {
		return abi.StatusNotFound
	}
	return result(in, mod, uint32(stack[4]), uint32(stack[5]), v)
}

func hfSessionAttributeGetAll(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	attrs, err := svc.Attributes(cid)
	if err != nil {
		return serviceStatus(in, abi.FuncSessionAttributeGetAll, err)
	}
	return result(in, mod, uint32(stack[2]), uint32(stack[3]), encodeAttributes(attrs))
}

func hfSessionAttributePut(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, key, st := clientAndKey(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	v, st := arg(mod, uint32(stack[4]), uint32(stack[5]), abi.MaxAttributeValue)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncSessionAttributePut, svc.PutAttribute(cid, key, v))
}

func hfSessionAttributePutIfNewer(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, key, st := clientAndKey(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	v, st := arg(mod, uint32(stack[4]), uint32(stack[5]), abi.MaxAttributeValue)
	if st != abi.StatusOK {
		return st
	}
	ts, flags := int64(stack[6]), uint32(stack[7])
	if flags&^abi.PutIfNewerOrEqual != 0 {
		return abi.StatusInvalidArgument
	}
	prev, replaced, err := svc.PutAttributeIfNewer(cid, key, v, time.Unix(0, ts), flags&abi.PutIfNewerOrEqual != 0)
	if err != nil {
		return serviceStatus(in, abi.FuncSessionAttributePutIfNewer, err)
	}
	var w abi.Writer
	w.Reset(make([]byte, 0, 2+4+len(prev)))
	w.U8(b2u8(replaced))
	w.U8(b2u8(prev != nil))
	w.Bytes(prev)
	return result(in, mod, uint32(stack[8]), uint32(stack[9]), w.Fields())
}

func hfSessionAttributeRemove(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, key, st := clientAndKey(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncSessionAttributeRemove, svc.DeleteAttribute(cid, key))
}

// b2u8 is 1 for true.
func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// encodeAttributes is the result of session_attribute_get_all and
// connection_attribute_get_all: u32 count, then per attribute str key,
// bytes value, u64 time (Unix ns).
func encodeAttributes(attrs []broker.Attribute) []byte {
	n := 4
	for _, a := range attrs {
		n += 4 + len(a.Key) + 4 + len(a.Value) + 8
	}
	var w abi.Writer
	w.Reset(make([]byte, 0, n))
	w.U32(uint32(len(attrs)))
	for _, a := range attrs {
		w.Str(a.Key)
		w.Bytes(a.Value)
		w.U64(uint64(a.Time.UnixNano()))
	}
	return w.Fields()
}
