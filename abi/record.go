package abi

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// Writer encodes one record into a caller-provided byte slice, appending
// fields in ABI.md order. It never allocates once buf has the capacity; the
// host encodes straight into guest memory with it.
type Writer struct {
	buf []byte
}

// Begin starts a record of kind in buf[:0] (reusing its capacity).
func (w *Writer) Begin(buf []byte, kind uint16) {
	w.buf = append(buf[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(w.buf[4:], kind)
	binary.LittleEndian.PutUint16(w.buf[6:], Minor)
}

// Reset starts a list of fields without a record header in buf[:0]: the
// results of host services (ABI.md section 5).
func (w *Writer) Reset(buf []byte) { w.buf = buf[:0] }

// Fields returns the fields appended since Reset.
func (w *Writer) Fields() []byte { return w.buf }

// U8 appends a byte.
func (w *Writer) U8(v uint8) { w.buf = append(w.buf, v) }

// U16 appends a little-endian uint16.
func (w *Writer) U16(v uint16) { w.buf = binary.LittleEndian.AppendUint16(w.buf, v) }

// U32 appends a little-endian uint32.
func (w *Writer) U32(v uint32) { w.buf = binary.LittleEndian.AppendUint32(w.buf, v) }

// U64 appends a little-endian uint64.
func (w *Writer) U64(v uint64) { w.buf = binary.LittleEndian.AppendUint64(w.buf, v) }

// Str appends a length-prefixed string.
func (w *Writer) Str(s string) {
	w.U32(uint32(len(s)))
	w.buf = append(w.buf, s...)
}

// Bytes appends a length-prefixed byte string.
func (w *Writer) Bytes(b []byte) {
	w.U32(uint32(len(b)))
	w.buf = append(w.buf, b...)
}

// End fills in the header's length and returns the record.
func (w *Writer) End() []byte {
	binary.LittleEndian.PutUint32(w.buf[0:], uint32(len(w.buf)))
	return w.buf
}

// The per-message records (PUBLISH, MESSAGE) are written by offset: their
// size first, then each field at its place, one bounds check and one copy
// each. Writer's appends, which check the capacity and move the length at
// every field, took about twice as long (~100 against ~50 ns a record).

// sized returns buf[:n] when buf has the capacity, a new slice of n bytes
// otherwise.
func sized(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	return buf[:n]
}

// putHeader writes a record header of kind, for the whole of b.
func putHeader(b []byte, kind uint16) {
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	binary.LittleEndian.PutUint16(b[4:], kind)
	binary.LittleEndian.PutUint16(b[6:], Minor)
}

// putStr writes the str field s at b[o:] and returns the offset after it.
func putStr(b []byte, o int, s string) int {
	binary.LittleEndian.PutUint32(b[o:], uint32(len(s)))
	return o + 4 + copy(b[o+4:], s)
}

// view returns b as a string without copying, for putStr.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// ErrTruncated is returned by Reader when a record ends inside a field.
var ErrTruncated = errors.New("record truncated")

// Reader decodes a record field by field. A field past the end of the
// record reads as its zero value (a record from an older minor version);
// a field cut in half sets Err.
type Reader struct {
	b    []byte
	Kind uint16
	// Minor is the minor version the record was written for.
	Minor uint16
	Err   error
}

// NewReader checks the header of rec and returns a reader positioned on the
// first field.
func NewReader(rec []byte) (*Reader, error) {
	if len(rec) < HeaderSize {
		return nil, ErrTruncated
	}
	n := binary.LittleEndian.Uint32(rec)
	if n < HeaderSize || int(n) > len(rec) {
		return nil, ErrTruncated
	}
	return &Reader{b: rec[HeaderSize:n], Kind: binary.LittleEndian.Uint16(rec[4:]), Minor: binary.LittleEndian.Uint16(rec[6:])}, nil
}

// NewFieldReader returns a reader of a list of fields without a record
// header: a host service's result.
func NewFieldReader(b []byte) *Reader { return &Reader{b: b} }

func (r *Reader) take(n int) []byte {
	if len(r.b) == 0 || r.Err != nil {
		return nil
	}
	if len(r.b) < n {
		r.Err, r.b = ErrTruncated, nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// U8 reads a byte.
func (r *Reader) U8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

// U16 reads a little-endian uint16.
func (r *Reader) U16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

// U32 reads a little-endian uint32.
func (r *Reader) U32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// U64 reads a little-endian uint64.
func (r *Reader) U64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// Bytes reads a length-prefixed byte string (a view into the record).
func (r *Reader) Bytes() []byte {
	n := r.U32()
	if n == 0 {
		return nil
	}
	return r.take(int(n))
}

// Str reads a length-prefixed string.
func (r *Reader) Str() string { return string(r.Bytes()) }
