package host

import (
	"errors"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file holds the bodies of the client service ("clients") and the
// publish service ("publish"), ABI.md section 5. hostfuncs.go's gate has
// checked where the call is made, the grant and the rate limit.

// clientArg reads the client id argument at stack[0:2].
func clientArg(mod api.Module, stack []uint64) (string, int32) {
	return strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxString)
}

func hfClientIsConnected(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := clientArg(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	info, ok := svc.Client(cid)
	if !ok {
		return abi.StatusNotFound
	}
	return int32(b2u8(info.Connected))
}

// sessionResult encodes info as client_session's result (ABI.md).
func sessionResult(info broker.ClientInfo) []byte {
	var w abi.Writer
	w.Reset(make([]byte, 0, 48+12+len(info.Username)+len(info.Listener)+len(info.RemoteAddr)))
	w.U8(b2u8(info.Connected))
	w.U8(info.ProtocolVersion)
	w.U8(abi.DropNewest)
	w.U8(0)
	w.U32(info.SessionExpiry)
	w.U64(unixNanos(info.ConnectedSince))
	w.U64(unixNanos(info.ExpiresAt))
	w.U32(uint32(info.InflightWindow))
	w.U32(uint32(info.ReceiveMaximum))
	w.U32(uint32(info.Queued))
	w.U32(uint32(info.MaxQueued))
	w.Str(info.Username)
	w.Str(info.Listener)
	w.Str(info.RemoteAddr)
	return w.Fields()
}

func hfClientSession(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := clientArg(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	info, ok := svc.Client(cid)
	if !ok {
		return abi.StatusNotFound
	}
	return result(in, mod, uint32(stack[2]), uint32(stack[3]), sessionResult(info))
}

func hfClientDisconnect(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := clientArg(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	code, flags := uint32(stack[2]), uint32(stack[5])
	if code > 0xff || flags&^abi.DisconnectPreventWill != 0 {
		return abi.StatusInvalidArgument
	}
	reason, st := strArg(mod, uint32(stack[3]), uint32(stack[4]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncClientDisconnect, svc.Disconnect(cid, byte(code), reason, flags&abi.DisconnectPreventWill != 0))
}

func hfClientInvalidateSession(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := clientArg(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncClientInvalidateSession, svc.InvalidateSession(cid))
}

func hfClientSetSessionExpiry(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := clientArg(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	_, err := svc.SetSessionExpiry(cid, uint32(stack[2]))
	return serviceStatus(in, abi.FuncClientSetSessionExpiry, err)
}

func hfClientSetInflightWindow(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := clientArg(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	n := uint32(stack[2])
	if n < 1 || n > 65535 {
		return abi.StatusInvalidArgument
	}
	got, err := svc.SetInflightWindow(cid, uint16(n))
	if err != nil {
		return serviceStatus(in, abi.FuncClientSetInflightWindow, err)
	}
	return int32(got)
}

// messageArg reads and decodes the message argument at ptr, n (ABI.md, "The
// message argument"); the broker checks its strings.
func messageArg(mod api.Module, ptr, n uint32) (broker.Message, int32) {
	b, st := arg(mod, ptr, n, abi.MaxMessage)
	if st != abi.StatusOK {
		return broker.Message{}, st
	}
	am, err := abi.DecodeMessage(b)
	if err != nil {
		return broker.Message{}, abi.StatusInvalidArgument
	}
	m := broker.Message{
		Topic:           am.Topic,
		Payload:         am.Payload,
		QoS:             am.QoS,
		Retain:          am.Flags&abi.MessageRetain != 0,
		MessageExpiry:   am.MessageExpiry,
		PayloadFormat:   am.PayloadFormat,
		ContentType:     am.ContentType,
		ResponseTopic:   am.ResponseTopic,
		CorrelationData: am.CorrelationData,
	}
	for _, u := range am.UserProperties {
		m.UserProperties = append(m.UserProperties, broker.UserProperty{Key: u.Key, Value: u.Value})
	}
	return m, abi.StatusOK
}

func hfPublish(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	m, st := messageArg(mod, uint32(stack[0]), uint32(stack[1]))
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncPublish, svc.Publish(m))
}

func hfPublishToClient(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := clientArg(mod, stack)
	if st != abi.StatusOK {
		return st
	}
	m, st := messageArg(mod, uint32(stack[2]), uint32(stack[3]))
	if st != abi.StatusOK {
		return st
	}
	switch err := svc.PublishTo(cid, m); {
	case err == nil:
		return 1
	case errors.Is(err, broker.ErrNotSubscribed):
		return 0
	default:
		return serviceStatus(in, abi.FuncPublishToClient, err)
	}
}

// unixNanos is t in Unix nanoseconds, 0 for the zero time.
func unixNanos(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano())
}
