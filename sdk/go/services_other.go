//go:build !wasip1

package propolis

// Outside a Wasm build there is no broker: every host service answers
// NOT_AVAILABLE, so handlers that call them can still be unit-tested
// natively (they see ErrNotAvailable).

func svcTakeResult([]byte) int32                         { return statusNotAvailable }
func svcSessionAttributeGet(_, _ string, _ []byte) int32 { return statusNotAvailable }
func svcSessionAttributeGetAll(string, []byte) int32     { return statusNotAvailable }
func svcSessionAttributePut(_, _ string, _ []byte) int32 { return statusNotAvailable }
func svcSessionAttributePutIfNewer(_, _ string, _ []byte, _ int64, _ uint32, _ []byte) int32 {
	return statusNotAvailable
}
func svcSessionAttributeRemove(_, _ string) int32 { return statusNotAvailable }
func svcHTTPRequest(_, _ []byte) int32            { return statusNotAvailable }
func svcCacheResult(uint32) int32                 { return statusNotAvailable }
func svcAuthCacheFlush(string) int32              { return statusNotAvailable }
