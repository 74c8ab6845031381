//go:build wasip1

package propolis

import "unsafe"

// What the exports of ABI.md section 3 (generated in abi_wasip1.go) call.
// The SDK exports every callback and tells the host, with
// declare_callbacks in propolis_start, which ones the extension
// registered.

// buf is the buffer the host writes records into. It is a package variable
// so that it stays referenced (Go's garbage collector does not move
// objects) until propolis_buffer replaces it with a larger one.
var buf []byte

// minBuffer is the smallest buffer allocated, so that small records do not
// cause a series of reallocations.
const minBuffer = 4096

// marker answers the required marker export: the ABI minor version the
// SDK follows.
func marker() int32 { return abiMinor }

// buffer returns a pointer to at least size bytes, valid until the next
// call. It returns 0 (an invalid answer, so the host fails closed) for a
// negative size.
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
