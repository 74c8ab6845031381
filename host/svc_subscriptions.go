package host

import (
	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// This file holds the bodies of the subscriptions service (ABI.md section
// 5): subscription_list, subscription_add, subscription_remove, on the
// broker's Subscriptions.

func hfSubscriptionList(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	subs, err := svc.Subscriptions(cid)
	if err != nil {
		return serviceStatus(in, abi.FuncSubscriptionList, err)
	}
	n := 4
	for _, s := range subs {
		n += 4 + len(s.Filter) + 1 + 1 + 4
	}
	var w abi.Writer
	w.Reset(make([]byte, 0, n))
	w.U32(uint32(len(subs)))
	for _, s := range subs {
		w.Str(s.Filter)
		w.U8(s.QoS)
		w.U8(subscriptionOptions(s))
		w.U32(uint32(s.Identifier))
	}
	return result(in, mod, uint32(stack[2]), uint32(stack[3]), w.Fields())
}

// subscriptionOptions encodes the MQTT 5 options of s as ABI.md's options
// byte.
func subscriptionOptions(s broker.SubscriptionInfo) uint8 {
	o := s.RetainHandling << abi.SubscriptionRetainHandlingShift
	if s.NoLocal {
		o |= abi.SubscriptionNoLocal
	}
	if s.RetainAsPublished {
		o |= abi.SubscriptionRetainAsPublished
	}
	return o
}

// knownOptions are the bits of subscription_add's options a guest may set.
const knownOptions = abi.SubscriptionNoLocal | abi.SubscriptionRetainAsPublished | abi.SubscriptionRetainHandlingMask

func hfSubscriptionAdd(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	filter, st := strArg(mod, uint32(stack[2]), uint32(stack[3]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	qos, options, id := uint32(stack[4]), uint32(stack[5]), uint32(stack[6])
	// The broker checks the ranges; values that do not fit its fields must
	// not wrap into valid ones.
	if qos > 0xff || options&^knownOptions != 0 || id > 1<<31-1 {
		return abi.StatusInvalidArgument
	}
	sub := broker.SubscriptionInfo{Filter: filter, QoS: byte(qos), NoLocal: options&abi.SubscriptionNoLocal != 0,
		RetainAsPublished: options&abi.SubscriptionRetainAsPublished != 0,
		RetainHandling:    byte(options&abi.SubscriptionRetainHandlingMask) >> abi.SubscriptionRetainHandlingShift,
		Identifier:        int(id)}
	return serviceStatus(in, abi.FuncSubscriptionAdd, svc.Subscribe(cid, sub))
}

func hfSubscriptionRemove(in *instance, svc broker.Services, mod api.Module, stack []uint64) int32 {
	cid, st := strArg(mod, uint32(stack[0]), uint32(stack[1]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	filter, st := strArg(mod, uint32(stack[2]), uint32(stack[3]), abi.MaxString)
	if st != abi.StatusOK {
		return st
	}
	return serviceStatus(in, abi.FuncSubscriptionRemove, svc.Unsubscribe(cid, filter))
}
