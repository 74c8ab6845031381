;; start_trap.wat: an extension that traps while starting.
;;
;; Simulates: a guest crash in propolis_start (`unreachable`), e.g. a panic
;; while parsing its config. Its propolis_authenticate would ALLOW (1).
;; Expects: the extension does not start (the trap is reported as the start
;; failure, with the extension id and callback propolis_start); it is never
;; asked about a CONNECT: with no other security extension, clients are
;; refused with 0x87 (3.1.1: 0x05). The broker keeps running.

(module
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_start") (param $len i32) (result i32)
    (unreachable))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))                                       ;; ALLOW
)
