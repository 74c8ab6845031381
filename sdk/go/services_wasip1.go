//go:build wasip1

package propolis

import "unsafe"

// The host services' imports (abi_wasip1.go) with Go arguments.

func strPtr(s string) unsafe.Pointer   { return unsafe.Pointer(unsafe.StringData(s)) }
func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func svcTakeResult(out []byte) int32 { return hostTakeResult(bytesPtr(out), uint32(len(out))) }

func svcSessionAttributeGet(cid, key string, out []byte) int32 {
	return hostSessionAttributeGet(strPtr(cid), uint32(len(cid)), strPtr(key), uint32(len(key)), bytesPtr(out), uint32(len(out)))
}

func svcSessionAttributeGetAll(cid string, out []byte) int32 {
	return hostSessionAttributeGetAll(strPtr(cid), uint32(len(cid)), bytesPtr(out), uint32(len(out)))
}

func svcSessionAttributePut(cid, key string, val []byte) int32 {
	return hostSessionAttributePut(strPtr(cid), uint32(len(cid)), strPtr(key), uint32(len(key)), bytesPtr(val), uint32(len(val)))
}

func svcSessionAttributePutIfNewer(cid, key string, val []byte, t int64, flags uint32, out []byte) int32 {
	return hostSessionAttributePutIfNewer(strPtr(cid), uint32(len(cid)), strPtr(key), uint32(len(key)),
		bytesPtr(val), uint32(len(val)), t, flags, bytesPtr(out), uint32(len(out)))
}

func svcSessionAttributeRemove(cid, key string) int32 {
	return hostSessionAttributeRemove(strPtr(cid), uint32(len(cid)), strPtr(key), uint32(len(key)))
}

func svcSubscriptionList(cid string, out []byte) int32 {
	return hostSubscriptionList(strPtr(cid), uint32(len(cid)), bytesPtr(out), uint32(len(out)))
}

func svcSubscriptionAdd(cid, filter string, qos, options, id uint32) int32 {
	return hostSubscriptionAdd(strPtr(cid), uint32(len(cid)), strPtr(filter), uint32(len(filter)), qos, options, id)
}

func svcSubscriptionRemove(cid, filter string) int32 {
	return hostSubscriptionRemove(strPtr(cid), uint32(len(cid)), strPtr(filter), uint32(len(filter)))
}

func svcRetainedGet(topic string, out []byte) int32 {
	return hostRetainedGet(strPtr(topic), uint32(len(topic)), bytesPtr(out), uint32(len(out)))
}

func svcRetainedPut(msg []byte) int32 { return hostRetainedPut(bytesPtr(msg), uint32(len(msg))) }

func svcRetainedRemove(topic string) int32 {
	return hostRetainedRemove(strPtr(topic), uint32(len(topic)))
}

func svcConnectionAttributeGet(key string, out []byte) int32 {
	return hostConnectionAttributeGet(strPtr(key), uint32(len(key)), bytesPtr(out), uint32(len(out)))
}

func svcConnectionAttributeGetAll(out []byte) int32 {
	return hostConnectionAttributeGetAll(bytesPtr(out), uint32(len(out)))
}

func svcConnectionAttributePut(key string, val []byte) int32 {
	return hostConnectionAttributePut(strPtr(key), uint32(len(key)), bytesPtr(val), uint32(len(val)))
}

func svcConnectionAttributeRemove(key string) int32 {
	return hostConnectionAttributeRemove(strPtr(key), uint32(len(key)))
}

func svcStorageGet(key string, out []byte) int32 {
	return hostStorageGet(strPtr(key), uint32(len(key)), bytesPtr(out), uint32(len(out)))
}

func svcStoragePut(key string, val []byte) int32 {
	return hostStoragePut(strPtr(key), uint32(len(key)), bytesPtr(val), uint32(len(val)))
}

func svcStorageRemove(key string) int32 { return hostStorageRemove(strPtr(key), uint32(len(key))) }

func svcStorageList(prefix, after string, limit uint32, out []byte) int32 {
	return hostStorageList(strPtr(prefix), uint32(len(prefix)), strPtr(after), uint32(len(after)), limit, bytesPtr(out), uint32(len(out)))
}

func svcClientIsConnected(cid string) int32 {
	return hostClientIsConnected(strPtr(cid), uint32(len(cid)))
}

func svcClientSession(cid string, out []byte) int32 {
	return hostClientSession(strPtr(cid), uint32(len(cid)), bytesPtr(out), uint32(len(out)))
}

func svcClientDisconnect(cid string, code uint32, reason string, flags uint32) int32 {
	return hostClientDisconnect(strPtr(cid), uint32(len(cid)), code, strPtr(reason), uint32(len(reason)), flags)
}

func svcClientInvalidateSession(cid string) int32 {
	return hostClientInvalidateSession(strPtr(cid), uint32(len(cid)))
}

func svcClientSetSessionExpiry(cid string, seconds uint32) int32 {
	return hostClientSetSessionExpiry(strPtr(cid), uint32(len(cid)), seconds)
}

func svcClientSetInflightWindow(cid string, n uint32) int32 {
	return hostClientSetInflightWindow(strPtr(cid), uint32(len(cid)), n)
}

func svcPublish(msg []byte) int32 { return hostPublish(bytesPtr(msg), uint32(len(msg))) }

func svcPublishToClient(cid string, msg []byte) int32 {
	return hostPublishToClient(strPtr(cid), uint32(len(cid)), bytesPtr(msg), uint32(len(msg)))
}
func svcHTTPRequest(req, out []byte) int32 {
	return hostHttpRequest(bytesPtr(req), uint32(len(req)), bytesPtr(out), uint32(len(out)))
}

func svcCacheResult(seconds uint32) int32 { return hostCacheResult(seconds) }

func svcAuthCacheFlush(cid string) int32 { return hostAuthCacheFlush(strPtr(cid), uint32(len(cid))) }
