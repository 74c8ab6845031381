;; authorize_cache_13.wat: a module built for ABI 1.3 that calls
;; cache_result in propolis_authorize_publish, where only 1.4 modules may.
;;
;; Simulates: an older module under a 1.4 host (abi/ABI.md section 2).
;; Expects: cache_result answers NOT_AVAILABLE (-2) there, as a 1.3 host
;; did, and keeps nothing. Every CONNECT is allowed; every PUBLISH is
;; denied with code 0x80 minus cache_result's status (0x82 for -2), so the
;; test reads the status from the verdict.

(module
  (import "propolis_v1" "cache_result" (func $cache_result (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 3))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (i32.or
      (i32.shl (i32.sub (i32.const 0x80) (call $cache_result (i32.const 60))) (i32.const 8))
      (i32.const 2))))
