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

// marker answers the required marker export: the ABI minor version the
// SDK follows.
func marker() int32 { return abiMinor }

// buffer answers propolis_buffer: a pointer to at least size bytes, valid
// until the next call. It grows buf as asked (see bufferSize), and answers
// 0, keeping buf, for a size beyond Extension.MaxRecordSize: the broker
// then fails that one call closed without counting it as a crash.
func buffer(size int32) uint32 {
	n, ok := bufferSize(len(buf), int64(size), ext.maxRecordSize())
	if !ok {
		return 0
	}
	if n > len(buf) {
		buf = nil // let the collector take the old buffer for the new one
		buf = make([]byte, n)
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
