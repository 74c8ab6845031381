//go:build wasip1

package propolis

import "unsafe"

// host is the host functions: the broker's imports.
var host hostAPI = wasmHost{}

// wasmHost implements hostAPI with the propolis_v1 imports.
type wasmHost struct{}

func (wasmHost) log(level Level, msg string) int32 {
	return hostLog(uint32(level), unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

func (wasmHost) setReason(reason string) int32 {
	return hostSetReason(unsafe.Pointer(unsafe.StringData(reason)), uint32(len(reason)))
}

func (wasmHost) declareCallbacks(mask uint32) int32 { return hostDeclareCallbacks(mask) }

func (wasmHost) addPublishFilter(filter string) int32 {
	return hostAddPublishFilter(unsafe.Pointer(unsafe.StringData(filter)), uint32(len(filter)))
}

func (wasmHost) setSessionExpiry(seconds uint32) int32 { return hostSetSessionExpiry(seconds) }

func (wasmHost) setReceiveMaximum(n uint16) int32 { return hostSetReceiveMaximum(uint32(n)) }

func (wasmHost) setKeepalive(seconds uint16) int32 { return hostSetKeepalive(uint32(seconds)) }

func (wasmHost) setMaxQueued(n uint16) int32 { return hostSetMaxQueued(uint32(n)) }

func (wasmHost) setOverloadThrottling(enabled bool) int32 {
	if enabled {
		return hostSetOverloadThrottling(1)
	}
	return hostSetOverloadThrottling(0)
}

func (wasmHost) addConnackUserProperty(key, value string) int32 {
	return hostAddConnackUserProperty(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)),
		unsafe.Pointer(unsafe.StringData(value)), uint32(len(value)))
}

func (wasmHost) addPermission(perm []byte) int32 {
	return hostAddPermission(unsafe.Pointer(unsafe.SliceData(perm)), uint32(len(perm)))
}

func (wasmHost) packetSet(field uint32, value string) int32 {
	return hostPacketSet(field, unsafe.Pointer(unsafe.StringData(value)), uint32(len(value)))
}

func (wasmHost) packetSetInt(field uint32, value int64) int32 { return hostPacketSetInt(field, value) }

func (wasmHost) addInterceptFilter(callbacks uint32, filter string) int32 {
	return hostAddInterceptFilter(callbacks, unsafe.Pointer(unsafe.StringData(filter)), uint32(len(filter)))
}

func (wasmHost) addInterceptClient(pattern string) int32 {
	return hostAddInterceptClient(unsafe.Pointer(unsafe.StringData(pattern)), uint32(len(pattern)))
}
