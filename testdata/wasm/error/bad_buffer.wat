;; bad_buffer.wat: an extension whose propolis_buffer points outside its
;; memory.
;;
;; Simulates: a guest allocator bug: propolis_buffer returns 0x7ffffff0,
;; far beyond the module's 1-page (64 KiB) memory.
;; Expects (ABI.md sections 3 and 7): an invalid answer; the host checks the
;; pointer (and pointer + size) against the memory size before writing the
;; record, writes nothing, discards the instance, and fails closed: the
;; CONNECT is refused with 0x80 (3.1.1: 0x05). propolis_authenticate, which
;; would ALLOW (1), is never reached; a client getting in means the host
;; skipped the check.

(module
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; invalid: outside the 64 KiB memory
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (i32.const 0x7ffffff0))

  ;; never reached
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))                                       ;; ALLOW
)
