;; features.wat: a security extension exercising the WebAssembly 2.0 core
;; features Propolis supports (ABI.md section 2, "Wasm features"), all
;; enabled by default in wat2wasm: multi-value (a function returning two
;; results), bulk memory (memory.fill, memory.copy), SIMD (a v128 add),
;; sign extension, non-trapping float-to-int conversion and reference types
;; (a funcref table and ref.null).
;;
;; propolis_authenticate computes, with each feature, values whose sum is
;; 1 and returns it: ALLOW (1) when every feature behaved, anything else
;; (an invalid answer, so the host fails closed) otherwise.
;;
;; Expects: loads; every CONNECT is allowed.

(module
  (memory (export "memory") 1)
  (table 1 funcref)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  ;; multi-value: returns 3 and -3
  (func $pair (result i32 i32) (i32.const 3) (i32.const -3))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (local $sum i32)
    ;; multi-value: 3 + -3 = 0
    (local.set $sum (i32.add (call $pair)))
    ;; bulk memory: fill 8 bytes at 100 with 1, copy them to 200; read 1
    (memory.fill (i32.const 100) (i32.const 1) (i32.const 8))
    (memory.copy (i32.const 200) (i32.const 100) (i32.const 8))
    (local.set $sum (i32.add (local.get $sum) (i32.load8_u (i32.const 207))))
    ;; SIMD: (2,2,2,2) + (-2,-2,-2,-2), lane 0 = 0
    (local.set $sum (i32.add (local.get $sum)
      (i32x4.extract_lane 0 (i32x4.add (i32x4.splat (i32.const 2)) (i32x4.splat (i32.const -2))))))
    ;; sign extension: 0xff as i8 is -1; + 1 = 0
    (local.set $sum (i32.add (local.get $sum)
      (i32.add (i32.extend8_s (i32.const 0xff)) (i32.const 1))))
    ;; non-trapping conversion: NaN saturates to 0
    (local.set $sum (i32.add (local.get $sum) (i32.trunc_sat_f32_s (f32.const nan))))
    ;; reference types: the table's slot 0 is null: 1 - 1 = 0
    (local.set $sum (i32.add (local.get $sum)
      (i32.sub (ref.is_null (table.get 0 (i32.const 0))) (i32.const 1))))
    (local.get $sum)))
