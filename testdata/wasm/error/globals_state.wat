;; globals_state.wat: an extension that keeps state in a global.
;;
;; Simulates: a connection quota kept in the instance: a mutable global
;; counts the CONNECTs propolis_authenticate has seen, and every CONNECT
;; after the fifth is denied with 0x97 (quota exceeded). Each instance of a
;; pool counts apart, and a replaced instance starts again at 0, so the
;; quota means nothing (ABI.md section 1: keep state in a host service).
;; Expects: the conformance kit fails its check "same answer on every
;; instance": the same CONNECT is allowed on a fresh instance and denied on
;; one that saw other calls first.
(module
  (memory (export "memory") 1)
  (global $seen (mut i32) (i32.const 0))
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (global.set $seen (i32.add (global.get $seen) (i32.const 1)))
    (if (result i32) (i32.gt_u (global.get $seen) (i32.const 5))
      (then (i32.const 0x9702))   ;; DENY, 0x97 quota exceeded
      (else (i32.const 1)))))     ;; ALLOW
