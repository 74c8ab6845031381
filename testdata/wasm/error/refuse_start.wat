;; refuse_start.wat: an extension that refuses to start.
;;
;; Simulates: a guest deciding at start that it cannot run (a missing
;; license key): propolis_start calls set_reason("missing license key") and
;; returns 1. Its propolis_authenticate would ALLOW (1).
;; Expects (ABI.md section 3, propolis_start): the extension is not started;
;; the reason "missing license key" is logged and shown (e.g. in the error
;; returned when enabling it). It is never asked about a CONNECT: with no
;; other security extension, clients are refused with 0x87 (3.1.1: 0x05).

(module
  (import "propolis_v1" "set_reason"
    (func $set_reason (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (data (i32.const 1024) "missing license key")        ;; 1024, 19

  (func (export "propolis_start") (param $len i32) (result i32)
    (drop (call $set_reason (i32.const 1024) (i32.const 19)))
    (i32.const 1))                                       ;; refuse

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))                                       ;; ALLOW
)
