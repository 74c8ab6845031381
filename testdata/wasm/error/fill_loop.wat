;; fill_loop.wat: an extension that keeps filling all of its memory.
;;
;; Simulates: propolis_authenticate loops on memory.fill of its whole
;; 128 MiB memory (2048 pages), without ever returning. One fill runs in
;; native code for milliseconds; no loop iteration is cheap.
;; Expects: a garbage collection (which must stop every goroutine, and
;; cannot preempt native code) completes while it runs, since the host
;; charges each bulk instruction against the guest's fuel and so exits to
;; Go every few fills; the call is stopped at its deadline after at most
;; one more fill; deny 0x80. Needs limits.memory of at least 128 MiB.

(module
  (memory (export "memory") 2048)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (loop $l
      (memory.fill (i32.const 0) (i32.const 7) (i32.const 134217728))
      (br $l))
    (i32.const 1))   ;; ALLOW, never reached
)
