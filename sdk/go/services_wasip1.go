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

func svcHTTPRequest(req, out []byte) int32 {
	return hostHttpRequest(bytesPtr(req), uint32(len(req)), bytesPtr(out), uint32(len(out)))
}

func svcCacheResult(seconds uint32) int32 { return hostCacheResult(seconds) }

func svcAuthCacheFlush(cid string) int32 { return hostAuthCacheFlush(strPtr(cid), uint32(len(cid))) }
