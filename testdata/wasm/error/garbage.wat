;; garbage.wat: an extension that answers with decisions the ABI does not
;; define.
;;
;; Simulates: a guest bug in the decision encoding (ABI.md section 3,
;; "Decisions"), with a valid propolis_buffer so the calls get that far:
;; - propolis_authenticate returns 0x7fffffff: decision 0xff, reason code
;;   0xff, and bits 16-31 not 0;
;; - propolis_authorize_publish returns 0x0105: decision 5, undefined.
;; Expects (ABI.md section 7): each answer is an invalid answer: the
;; instance is discarded and replaced, the failure counted and logged, and
;; the decision fails closed (CONNECT: 0x80, 3.1.1: 0x05; PUBLISH: 0x80).
;; The host must not read 0x7fffffff as, say, DISCONNECT or ALLOW by
;; masking bits.

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
    (i32.const 0x7fffffff))

  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (i32.const 0x0105))
)
