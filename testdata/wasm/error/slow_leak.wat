;; slow_leak.wat: an extension whose memory grows slowly and is never
;; given back.
;;
;; Simulates: a guest that leaks a little: every 64th
;; propolis_authorize_publish grows the memory by one page (64 KiB), 1024
;; bytes per call on average, so many runs of the same calls end with the
;; memory as it was after the run before.
;; Expects: the conformance kit fails its check "memory does not keep
;; growing": the memory rises in most windows of its fixed budget of
;; calls (stopping at the first flat run would pass it).
(module
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (if (i32.eqz (i32.rem_u (global.get $n) (i32.const 64)))
      (then (drop (memory.grow (i32.const 1)))))
    (i32.const 0)))
