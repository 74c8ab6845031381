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

func svcSubscriptionList(string, []byte) int32                 { return statusNotAvailable }
func svcSubscriptionAdd(_, _ string, _, _, _ uint32) int32     { return statusNotAvailable }
func svcSubscriptionRemove(_, _ string) int32                  { return statusNotAvailable }
func svcRetainedGet(string, []byte) int32                      { return statusNotAvailable }
func svcRetainedPut([]byte) int32                              { return statusNotAvailable }
func svcRetainedRemove(string) int32                           { return statusNotAvailable }
func svcConnectionAttributeGet(string, []byte) int32           { return statusNotAvailable }
func svcConnectionAttributeGetAll([]byte) int32                { return statusNotAvailable }
func svcConnectionAttributePut(string, []byte) int32           { return statusNotAvailable }
func svcConnectionAttributeRemove(string) int32                { return statusNotAvailable }
func svcStorageGet(string, []byte) int32                       { return statusNotAvailable }
func svcStoragePut(string, []byte) int32                       { return statusNotAvailable }
func svcStorageRemove(string) int32                            { return statusNotAvailable }
func svcStorageList(_, _ string, _ uint32, _ []byte) int32     { return statusNotAvailable }
func svcClientIsConnected(string) int32                        { return statusNotAvailable }
func svcClientSession(string, []byte) int32                    { return statusNotAvailable }
func svcClientDisconnect(string, uint32, string, uint32) int32 { return statusNotAvailable }
func svcClientInvalidateSession(string) int32                  { return statusNotAvailable }
func svcClientSetSessionExpiry(string, uint32) int32           { return statusNotAvailable }
func svcClientSetInflightWindow(string, uint32) int32          { return statusNotAvailable }
func svcPublish([]byte) int32                                  { return statusNotAvailable }
func svcPublishToClient(string, []byte) int32                  { return statusNotAvailable }
func svcHTTPRequest(_, _ []byte) int32                         { return statusNotAvailable }
func svcCacheResult(uint32) int32                              { return statusNotAvailable }
func svcAuthCacheFlush(string) int32                           { return statusNotAvailable }
