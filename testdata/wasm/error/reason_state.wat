;; reason_state.wat: an extension whose reason string comes from a global.
;;
;; Simulates: a guest that always denies with the same decision and code
;; (DENY 0x87) but names, in its set_reason, whether it has seen an odd or
;; an even number of calls: state kept in the instance that shows only in
;; the reason string a client reads.
;; Expects: the conformance kit fails its check "same answer on every
;; instance", which compares reason strings as well as decisions.
(module
  (import "propolis_v1" "set_reason" (func $set_reason (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "evenodd_")
  (global $n (mut i32) (i32.const 0))
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (drop (call $set_reason
      (select (i32.const 4) (i32.const 0) (i32.and (global.get $n) (i32.const 1)))
      (i32.const 4)))
    (i32.const 0x8702)))
