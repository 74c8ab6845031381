package host

import (
	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file holds the bodies of the retained service (ABI.md section 5):
// retained_get, retained_put, retained_remove, on the broker's
// RetainedMessages. The message is abi.Message, as for publish.

// encodeMessage encodes m as ABI.md's message (abi.Message, "The message
// argument"), for retained_get's result.
func encodeMessage(m *broker.Message) []byte {
	am := abi.Message{QoS: m.QoS, PayloadFormat: m.PayloadFormat, MessageExpiry: m.MessageExpiry,
		Topic: m.Topic, Payload: m.Payload, ContentType: m.ContentType, ResponseTopic: m.ResponseTopic,
		CorrelationData: m.CorrelationData}
	if m.Retain {
		am.Flags = abi.MessageRetain
	}
	for _, p := range m.UserProperties {
		am.UserProperties = append(am.UserProperties, abi.UserProperty{Key: p.Key, Value: p.Value})
	}
	return am.Encode(nil)
}

// topicArg reads a topic name argument: INVALID_ARGUMENT for what is not
// one (a wildcard, not UTF-8).
func topicArg(mod api.Module, ptr, n uint32) (string, int32) {
	t, st := strArg(mod, ptr, n, abi.MaxString)
	if st == abi.StatusOK && broker.CheckTopicName(t) != nil {
		st = abi.StatusInvalidArgument
	}
	return t, st
}

func hfRetainedGet(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	t, st := topicArg(mod, uint32(stack[0]), uint32(stack[1]))
	if st != abi.StatusOK {
		return st
	}
	m, ok := svc.Retained(t)
	if !ok {
		return abi.StatusNotFound
	}
	return result(in, mod, uint32(stack[2]), uint32(stack[3]), encodeMessage(&m))
}

func hfRetainedPut(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	m, st := messageArg(mod, uint32(stack[0]), uint32(stack[1]))
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncRetainedPut, svc.PutRetained(m))
}

func hfRetainedRemove(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	t, st := topicArg(mod, uint32(stack[0]), uint32(stack[1]))
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncRetainedRemove, svc.DeleteRetained(t))
}
