;; minimal.wat: the minimal extension of abi/ABI.md section 9, verbatim
;; (everything below this comment block is copied unchanged from the spec).
;;
;; Simulates: the smallest security extension the spec promises works.
;; Expects: it loads; every CONNECT is denied with 0x87 (not authorized;
;; MQTT 3.1.1: 0x05) and, for MQTT 5 clients, the reason string "go away".
;; If the spec's example changes, update this file with it.

(module
  (import "propolis_v1" "set_reason" (func $set_reason (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "go away")
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  ;; one fixed buffer at offset 4096, 60 KiB; 0 ("cannot") for a larger
  ;; record: the host then fails that call closed (section 4, Record size)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  ;; deny every CONNECT with 0x87 and a reason string
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (drop (call $set_reason (i32.const 1024) (i32.const 7)))
    (i32.const 0x8702)))
