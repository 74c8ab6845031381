;; svc_bad_args.wat: bad arguments to the subscriptions, retained and
;; connection_attributes host services (ABI.md section 5) are statuses,
;; never traps. Written from ABI.md (1.1) alone.
;;
;; Simulates: a guest passing pointers outside its memory, buffers that
;; run across its end, a message cut in half, QoS 7 and an unknown options
;; bit.
;; Expects: every CONNECT is allowed; every PUBLISH makes the 16 calls
;; below, each of which must return INVALID_ARGUMENT (-1). The PUBLISH is
;; then allowed; the first call that returns anything else denies it with
;; reason code 0x80 + its index (0x80 to 0x8F), which the client reads in
;; its PUBACK. None of the calls may change anything (client "c1" keeps no
;; subscription, "a/b" no retained message).
;;
;; Memory (1 page, 64 KiB): 1024 "c1", 1040 "a/b", 1056 "k", 1072 a
;; message cut short (5 bytes; its fixed part alone is 8), 2048 a result
;; buffer, 4096 the record buffer (60 KiB).

(module
  (import "propolis_v1" "subscription_list" (func $subscription_list (param i32 i32 i32 i32) (result i32)))
  (import "propolis_v1" "subscription_add" (func $subscription_add (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "propolis_v1" "subscription_remove" (func $subscription_remove (param i32 i32 i32 i32) (result i32)))
  (import "propolis_v1" "retained_get" (func $retained_get (param i32 i32 i32 i32) (result i32)))
  (import "propolis_v1" "retained_put" (func $retained_put (param i32 i32) (result i32)))
  (import "propolis_v1" "retained_remove" (func $retained_remove (param i32 i32) (result i32)))
  (import "propolis_v1" "connection_attribute_get" (func $connection_attribute_get (param i32 i32 i32 i32) (result i32)))
  (import "propolis_v1" "connection_attribute_get_all" (func $connection_attribute_get_all (param i32 i32) (result i32)))
  (import "propolis_v1" "connection_attribute_put" (func $connection_attribute_put (param i32 i32 i32 i32) (result i32)))
  (import "propolis_v1" "connection_attribute_remove" (func $connection_attribute_remove (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $BAD i32 (i32.const 0xFFFF0000))
  (data (i32.const 1024) "c1")
  (data (i32.const 1040) "a/b")
  (data (i32.const 1056) "k")
  (data (i32.const 1072) "\0a\00\00\00a")
  (func (export "propolis_abi_v1") (result i32) (i32.const 1)) ;; built for 1.1
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    ;; 0: subscription_list, bad cid pointer
    (if (i32.ne (call $subscription_list (global.get $BAD) (i32.const 2) (i32.const 2048) (i32.const 64)) (i32.const -1))
      (then (return (i32.const 0x8002))))
    ;; 1: subscription_list, bad out pointer
    (if (i32.ne (call $subscription_list (i32.const 1024) (i32.const 2) (global.get $BAD) (i32.const 64)) (i32.const -1))
      (then (return (i32.const 0x8102))))
    ;; 2: subscription_list, out buffer across the end of memory
    (if (i32.ne (call $subscription_list (i32.const 1024) (i32.const 2) (i32.const 65534) (i32.const 64)) (i32.const -1))
      (then (return (i32.const 0x8202))))
    ;; 3: subscription_add, bad filter pointer
    (if (i32.ne (call $subscription_add (i32.const 1024) (i32.const 2) (global.get $BAD) (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0)) (i32.const -1))
      (then (return (i32.const 0x8302))))
    ;; 4: subscription_add, QoS 7
    (if (i32.ne (call $subscription_add (i32.const 1024) (i32.const 2) (i32.const 1040) (i32.const 3) (i32.const 7) (i32.const 0) (i32.const 0)) (i32.const -1))
      (then (return (i32.const 0x8402))))
    ;; 5: subscription_add, an unknown options bit
    (if (i32.ne (call $subscription_add (i32.const 1024) (i32.const 2) (i32.const 1040) (i32.const 3) (i32.const 0) (i32.const 0x10) (i32.const 0)) (i32.const -1))
      (then (return (i32.const 0x8502))))
    ;; 6: subscription_remove, bad cid pointer
    (if (i32.ne (call $subscription_remove (global.get $BAD) (i32.const 2) (i32.const 1040) (i32.const 3)) (i32.const -1))
      (then (return (i32.const 0x8602))))
    ;; 7: retained_get, bad topic pointer
    (if (i32.ne (call $retained_get (global.get $BAD) (i32.const 3) (i32.const 2048) (i32.const 64)) (i32.const -1))
      (then (return (i32.const 0x8702))))
    ;; 8: retained_put, bad message pointer
    (if (i32.ne (call $retained_put (global.get $BAD) (i32.const 16)) (i32.const -1))
      (then (return (i32.const 0x8802))))
    ;; 9: retained_put, a message cut short
    (if (i32.ne (call $retained_put (i32.const 1072) (i32.const 5)) (i32.const -1))
      (then (return (i32.const 0x8902))))
    ;; 10: retained_remove, bad topic pointer
    (if (i32.ne (call $retained_remove (global.get $BAD) (i32.const 3)) (i32.const -1))
      (then (return (i32.const 0x8A02))))
    ;; 11: connection_attribute_get, bad key pointer
    (if (i32.ne (call $connection_attribute_get (global.get $BAD) (i32.const 1) (i32.const 2048) (i32.const 64)) (i32.const -1))
      (then (return (i32.const 0x8B02))))
    ;; 12: connection_attribute_get_all, bad out pointer
    (if (i32.ne (call $connection_attribute_get_all (global.get $BAD) (i32.const 64)) (i32.const -1))
      (then (return (i32.const 0x8C02))))
    ;; 13: connection_attribute_put, bad value pointer
    (if (i32.ne (call $connection_attribute_put (i32.const 1056) (i32.const 1) (global.get $BAD) (i32.const 4)) (i32.const -1))
      (then (return (i32.const 0x8D02))))
    ;; 14: connection_attribute_remove, bad key pointer
    (if (i32.ne (call $connection_attribute_remove (global.get $BAD) (i32.const 1)) (i32.const -1))
      (then (return (i32.const 0x8E02))))
    ;; 15: connection_attribute_put, value across the end of memory
    (if (i32.ne (call $connection_attribute_put (i32.const 1056) (i32.const 1) (i32.const 65534) (i32.const 4)) (i32.const -1))
      (then (return (i32.const 0x8F02))))
    (i32.const 1)))
