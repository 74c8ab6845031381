//go:build wasip1

package propolis

import "unsafe"

// The exports of ABI.md section 3. The SDK exports every callback and
// tells the host, with declare_callbacks in propolis_start, which ones the
// extension registered.

// buf is the buffer the host writes records into. It is a package variable
// so that it stays referenced (Go's garbage collector does not move
// objects) until propolis_buffer replaces it with a larger one.
var buf []byte

// minBuffer is the smallest buffer allocated, so that small records do not
// cause a series of reallocations.
const minBuffer = 4096

// abiMarker is the required marker: the ABI minor version the SDK follows.
//
//go:wasmexport propolis_abi_v1
func abiMarker() int32 { return 0 }

// buffer returns a pointer to at least size bytes, valid until the next
// call. It returns 0 (an invalid answer, so the host fails closed) for a
// negative size.
//
//go:wasmexport propolis_buffer
func buffer(size int32) uint32 {
	if size < 0 {
		return 0
	}
	if int(size) > len(buf) {
		n := max(minBuffer, len(buf))
		for n < int(size) {
			n *= 2
		}
		buf = make([]byte, n)
	}
	if len(buf) == 0 {
		buf = make([]byte, minBuffer)
	}
	return uint32(uintptr(unsafe.Pointer(&buf[0])))
}

// record returns the record of n bytes the host wrote into buf. A length
// larger than the buffer yields an empty record, which decodes as
// truncated.
func record(n int32) []byte {
	if n < 0 || int(n) > len(buf) {
		return nil
	}
	return buf[:n]
}

//go:wasmexport propolis_start
func exportStart(n int32) int32 { return start(host, record(n)) }

//go:wasmexport propolis_stop
func exportStop() { stop() }

//go:wasmexport propolis_authenticate
func exportAuthenticate(n int32) uint32 { return authenticate(host, record(n)) }

//go:wasmexport propolis_authorize_publish
func exportAuthorizePublish(n int32) uint32 { return authorizePublish(host, record(n)) }

//go:wasmexport propolis_authorize_subscribe
func exportAuthorizeSubscribe(n int32) uint32 { return authorizeSubscribe(host, record(n)) }

//go:wasmexport propolis_on_event
func exportOnEvent(n int32) { onEvent(host, record(n)) }
