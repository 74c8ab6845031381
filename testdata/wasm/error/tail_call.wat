;; wat2wasm-flags: --enable-tail-call
;; tail_call.wat: a module using the tail-call proposal (return_call), which
;; Propolis does not support (ABI.md section 2, "Wasm features").
;; Otherwise a valid security extension that ALLOWs (1) every CONNECT.
;;
;; Expects: refused at load with an error naming the feature ("tail-call").

(module
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func $allow (result i32) (i32.const 1))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (return_call $allow)))
