package host

import (
	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file holds the bodies of the retained service (ABI.md section 5):
// retained_get, retained_put, retained_remove, on the broker's
// RetainedMessages, and the codec of ABI.md's message fields.

// maxMessageArg bounds the message fields a guest passes, in bytes.
const maxMessageArg = abi.MaxResult

// appendMessage encodes m as ABI.md's message fields.
func appendMessage(w *abi.Writer, m *broker.Message) {
	w.Str(m.Topic)
	w.Bytes(m.Payload)
	w.U8(m.QoS)
	w.U8(b2u8(m.Retain)) // abi.MessageRetain
	w.U32(m.MessageExpiry)
	w.U8(m.PayloadFormat)
	w.Str(m.ContentType)
	w.Str(m.ResponseTopic)
	w.Bytes(m.CorrelationData)
	w.U32(uint32(len(m.UserProperties)))
	for _, p := range m.UserProperties {
		w.Str(p.Key)
		w.Str(p.Value)
	}
}

// messageSize is the length of m's message fields.
func messageSize(m *broker.Message) int {
	n := 4 + len(m.Topic) + 4 + len(m.Payload) + 1 + 1 + 4 + 1 + 4 + len(m.ContentType) +
		4 + len(m.ResponseTopic) + 4 + len(m.CorrelationData) + 4
	for _, p := range m.UserProperties {
		n += 8 + len(p.Key) + len(p.Value)
	}
	return n
}

// decodeMessage reads ABI.md's message fields. Fields left out at the end
// read as zero; a field cut in half, an unknown flag or a property count
// the bytes cannot hold is INVALID_ARGUMENT. The broker checks the values.
func decodeMessage(b []byte) (broker.Message, int32) {
	r := abi.NewFieldReader(b)
	m := broker.Message{Topic: r.Str(), Payload: r.Bytes(), QoS: r.U8()}
	flags := r.U8()
	m.Retain = flags&abi.MessageRetain != 0
	m.MessageExpiry = r.U32()
	m.PayloadFormat = r.U8()
	m.ContentType, m.ResponseTopic, m.CorrelationData = r.Str(), r.Str(), r.Bytes()
	n := r.U32()
	if flags&^abi.MessageRetain != 0 || uint64(n)*8 > uint64(len(b)) {
		return m, abi.StatusInvalidArgument
	}
	for range n {
		m.UserProperties = append(m.UserProperties, broker.UserProperty{Key: r.Str(), Value: r.Str()})
	}
	if r.Err != nil {
		return m, abi.StatusInvalidArgument
	}
	return m, abi.StatusOK
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

func hfRetainedGet(in *instance, mod api.Module, stack []uint64) int32 {
	svc := brokerServices(in)
	if svc == nil {
		return abi.StatusNotAvailable
	}
	t, st := topicArg(mod, uint32(stack[0]), uint32(stack[1]))
	if st != abi.StatusOK {
		return st
	}
	m, ok := svc.Retained(t)
	if !ok {
		return abi.StatusNotFound
	}
	var w abi.Writer
	w.Reset(make([]byte, 0, messageSize(&m)))
	appendMessage(&w, &m)
	return result(in, mod, uint32(stack[2]), uint32(stack[3]), w.Fields())
}

func hfRetainedPut(in *instance, mod api.Module, stack []uint64) int32 {
	svc := brokerServices(in)
	if svc == nil {
		return abi.StatusNotAvailable
	}
	b, st := arg(mod, uint32(stack[0]), uint32(stack[1]), maxMessageArg)
	if st != abi.StatusOK {
		return st
	}
	m, st := decodeMessage(b)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncRetainedPut, svc.PutRetained(m))
}

func hfRetainedRemove(in *instance, mod api.Module, stack []uint64) int32 {
	svc := brokerServices(in)
	if svc == nil {
		return abi.StatusNotAvailable
	}
	t, st := topicArg(mod, uint32(stack[0]), uint32(stack[1]))
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncRetainedRemove, svc.DeleteRetained(t))
}
