;; spin.wat: an extension stuck in an infinite loop.
;;
;; Simulates: a guest that never returns: propolis_authenticate and
;; propolis_authorize_publish spin forever in `(loop $l (br $l))`.
;; Expects (ABI.md section 7): the call is stopped at its deadline
;; (manifest limits.call_deadline, default 100 ms) - the host must interrupt
;; running Wasm, not just stop waiting for it; the instance is discarded and
;; replaced; the decision fails closed (CONNECT: 0x80, 3.1.1: 0x05;
;; PUBLISH: 0x80); the failure is counted and logged; 10 failures within
;; 10 s stop the extension. The broker and other clients keep running, and
;; no goroutine or CPU stays busy with the abandoned call.

(module
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (loop $l (br $l))
    (unreachable))   ;; never reached; makes the function type-check

  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (loop $l (br $l))
    (unreachable))   ;; never reached
)
