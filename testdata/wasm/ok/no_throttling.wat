;; no_throttling.wat: an authenticator of ABI 1.3 that exempts every client
;; it allows from the broker's overload throttling.
;;
;; Simulates: set_overload_throttling (abi/ABI.md section 5).
;; Expects: set_overload_throttling(2) is INVALID_ARGUMENT (-1), which the
;; module checks (a different answer denies with 0x80); then every CONNECT
;; is allowed with set_overload_throttling(0), so the broker's
;; AuthResult.Settings.NoThrottling is true.

(module
  (import "propolis_v1" "set_overload_throttling" (func $set_overload_throttling (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 3))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (if (i32.ne (call $set_overload_throttling (i32.const 2)) (i32.const -1))
      (then (return (i32.const 0x8002))))
    (drop (call $set_overload_throttling (i32.const 0)))
    (i32.const 1)))
