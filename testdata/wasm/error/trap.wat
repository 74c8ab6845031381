;; trap.wat: an extension with a bug that traps in every decision.
;;
;; Simulates: a guest crash (a Wasm trap) in propolis_authenticate and
;; propolis_authorize_publish: both execute `unreachable`.
;; Expects (ABI.md section 7): the module loads; each call traps, the
;; instance is discarded and replaced, the failure is counted and logged
;; with the extension id and callback; the decision fails closed: a CONNECT
;; is refused with 0x80 (MQTT 3.1.1: 0x05), a PUBLISH is refused with 0x80;
;; after 10 failures within 10 s the extension is stopped. The broker and
;; other clients keep running.

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
    (unreachable))

  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (unreachable))
)
