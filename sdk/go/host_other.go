//go:build !wasip1

package propolis

import "os"

// host is the host functions; outside wasip1 a stand-in.
var host hostAPI = nativeHost{}

// nativeHost stands in for the broker outside a Wasm build, so that
// handlers calling Log can be unit-tested natively. Log lines go to
// standard error; every other host function answers NOT_AVAILABLE.
type nativeHost struct{}

func (nativeHost) log(level Level, msg string) int32 {
	os.Stderr.WriteString("propolis " + level.String() + ": " + msg + "\n")
	return statusOK
}

func (nativeHost) setReason(string) int32                   { return statusNotAvailable }
func (nativeHost) declareCallbacks(uint32) int32            { return statusNotAvailable }
func (nativeHost) addPublishFilter(string) int32            { return statusNotAvailable }
func (nativeHost) setSessionExpiry(uint32) int32            { return statusNotAvailable }
func (nativeHost) setReceiveMaximum(uint16) int32           { return statusNotAvailable }
func (nativeHost) setKeepalive(uint16) int32                { return statusNotAvailable }
func (nativeHost) setMaxQueued(uint16) int32                { return statusNotAvailable }
func (nativeHost) setOverloadThrottling(bool) int32         { return statusNotAvailable }
func (nativeHost) addConnackUserProperty(_, _ string) int32 { return statusNotAvailable }
func (nativeHost) addPermission([]byte) int32               { return statusNotAvailable }
func (nativeHost) packetSet(uint32, string) int32           { return statusNotAvailable }
func (nativeHost) packetSetInt(uint32, int64) int32         { return statusNotAvailable }
func (nativeHost) addInterceptFilter(uint32, string) int32  { return statusNotAvailable }
func (nativeHost) addInterceptClient(string) int32          { return statusNotAvailable }
