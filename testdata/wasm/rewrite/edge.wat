;; edge.wat: not an extension; the instructions the interrupt rewrite
;; (host/interrupt.go) must read and keep working: SIMD lanes and
;; shuffles, bulk memory and table instructions (each charged fuel),
;; passive segments, multi-value loops and blocks, br_table, typed select,
;; call_indirect, reference types.
;;
;; Expects: f(5, 6) returns the same with and without the rewrite (13), and
;; the rewritten module validates.

(module
  (type $t2 (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $tb 4 funcref)
  (table $tb2 2 externref)
  (global $g (mut i64) (i64.const -1))
  (data $d "hello")
  (elem $e funcref (ref.func $add) (ref.null func))
  (elem (table $tb) (i32.const 0) funcref (ref.func $add))

  (func $add (type $t2) (i32.add (local.get 0) (local.get 1)))

  (func $f (export "f") (param i32 i32) (result i32)
    (local v128 f64 i64)
    (local.set 2 (v128.const i32x4 1 2 3 4))
    (local.set 2 (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get 2) (local.get 2)))
    (local.set 2 (v128.load32_lane 1 (i32.const 0) (local.get 2)))
    (v128.store64_lane offset=8 0 (i32.const 0) (local.get 2))
    (drop (i32x4.extract_lane 3 (local.get 2)))
    (local.set 2 (v128.load64_zero (i32.const 0)))
    (drop (i64x2.all_true (local.get 2)))
    (drop (f64x2.convert_low_i32x4_u (local.get 2)))
    (memory.init $d (i32.const 0) (i32.const 0) (i32.const 5))
    (data.drop $d)
    (memory.copy (i32.const 16) (i32.const 0) (i32.const 5))
    (memory.fill (i32.const 32) (i32.const 1) (i32.const 8))
    (table.init $tb $e (i32.const 1) (i32.const 0) (i32.const 2))
    (elem.drop $e)
    (table.copy $tb $tb (i32.const 2) (i32.const 1) (i32.const 1))
    (drop (table.grow $tb2 (ref.null extern) (i32.const 1)))
    (table.fill $tb2 (i32.const 0) (ref.null extern) (i32.const 1))
    (drop (table.size $tb2))
    (drop (i32.trunc_sat_f64_s (f64.const 1e100)))
    (drop (select (result i64) (i64.const 1) (i64.const 2) (local.get 0)))
    (drop (i64.extend32_s (i64.const 0x7fffffffffffffff)))
    (global.set $g (i64.const -9223372036854775808))
    ;; 3 + 4 in a multi-value loop, then br_table out of nested blocks
    (i32.const 3) (i32.const 4)
    (loop (param i32 i32) (result i32)
      (i32.add)
      (block $b (block $c (br_table $c $b $b (i32.const 9)))))
    (block (param i32) (result i32)
      (br_if 0 (i32.const 1)))
    ;; + add(5, 6) through the table (slot 2, copied from slot 1 = $add),
    ;; minus the 5 and 6 passed in: 7 + 11 - 5 = 13
    (call_indirect $tb (type $t2) (local.get 0) (local.get 1) (i32.const 2))
    (i32.add)
    (i32.sub (local.get 0)))
)
