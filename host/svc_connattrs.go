package host

import (
	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file holds the bodies of the connection_attributes service (ABI.md
// section 5), on the broker's ConnectionAttributes. They act on the
// connection of the running callback (instance.conn, set by invokeFor):
// the connecting client in authenticate, the client authorized in
// authorize_*, the event's connection in on_event.

// callConn returns the running callback's connection; NOT_AVAILABLE when
// the callback is about none (an event without a connection).
func callConn(in *instance) (broker.Conn, int32) {
	if in.conn.IsZero() {
		return in.conn, abi.StatusNotAvailable
	}
	return in.conn, abi.StatusOK
}

func hfConnectionAttributeGet(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	conn, st := callConn(in)
	if st != abi.StatusOK {
		return st
	}
	key, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxAttributeKey)
	if st != abi.StatusOK {
		return st
	}
	v, ok, err := svc.ConnectionAttribute(conn, key)
	if err != nil {
		return serviceStatus(in, abi.FuncConnectionAttributeGet, err)
	}
	if !ok {
		return abi.StatusNotFound
	}
	return result(in, mod, uint32(stack[2]), uint32(stack[3]), v)
}

func hfConnectionAttributeGetAll(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	conn, st := callConn(in)
	if st != abi.StatusOK {
		return st
	}
	attrs, err := svc.ConnectionAttributes(conn)
	if err != nil {
		return serviceStatus(in, abi.FuncConnectionAttributeGetAll, err)
	}
	return result(in, mod, uint32(stack[0]), uint32(stack[1]), encodeAttributes(attrs))
}

func hfConnectionAttributePut(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	conn, st := callConn(in)
	if st != abi.StatusOK {
		return st
	}
	key, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxAttributeKey)
	if st != abi.StatusOK {
		return st
	}
	v, st := arg(mod, uint32(stack[2]), uint32(stack[3]), abi.MaxAttributeValue)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncConnectionAttributePut, svc.PutConnectionAttribute(conn, key, v))
}

func hfConnectionAttributeRemove(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	conn, st := callConn(in)
	if st != abi.StatusOK {
		return st
	}
	key, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxAttributeKey)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncConnectionAttributeRemove, svc.DeleteConnectionAttribute(conn, key))
}
