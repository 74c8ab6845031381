;; leak.wat: an extension whose memory grows on every call and is never
;; given back.
;;
;; Simulates: a guest that leaks: each propolis_authorize_publish keeps
;; 64 KiB it never frees (memory.grow by one page), then answers NEXT. Each
;; answer is valid and fast, so only the growth gives it away.
;; Expects: the host keeps serving it until limits.memory is reached; the
;; conformance kit (`propolis extensions check`) fails its check "memory
;; does not keep growing", because the linear memory grows on every run of
;; the same calls.
(module
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (drop (memory.grow (i32.const 1)))
    (i32.const 0)))
