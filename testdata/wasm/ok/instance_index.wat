;; instance_index.wat: an ABI 1.1 module (its marker returns 1) that reads
;; the START record's `instance` field (1.1), written from abi/ABI.md alone.
;;
;; propolis_start logs (info) "instance N", N the index as one digit ('?'
;; above 9), and declares its callbacks: instance 0 declares authenticate
;; only (mask 1); every later instance declares authenticate and
;; authorize_publish (mask 3), which the host must ignore (only instance
;; 0's declaration counts) and log as a warning.
;; propolis_authenticate ALLOWs (1) a CONNECT record of at most 200 bytes
;; and returns an invalid decision (0xff) for a longer one, so that a test
;; can make the host discard an instance and start a replacement (which
;; gets the next index).
;;
;; The START record: 8-byte header, then five str fields (u32 length +
;; bytes): extension_id, extension_version, broker_version,
;; previous_version, config; then u32 instance. A record ending before it
;; (an ABI 1.0 host) reads as instance 0.
;;
;; Memory (1 page): "instance ?" at 1024, the record buffer at 4096 (60 KiB).

(module
  (import "propolis_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "propolis_v1" "declare_callbacks" (func $declare (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "instance ?")   ;; 10 bytes; the digit at index 9
  (global $BUF i32 (i32.const 4096))

  (func (export "propolis_abi_v1") (result i32) (i32.const 1))

  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (global.get $BUF))))

  (func (export "propolis_start") (param $len i32) (result i32)
    (local $p i32) (local $end i32) (local $i i32) (local $index i32)
    (local.set $end (i32.add (global.get $BUF) (local.get $len)))
    ;; skip the header and the five str fields
    (local.set $p (i32.add (global.get $BUF) (i32.const 8)))
    (block $done
      (loop $skip
        (br_if $done (i32.ge_u (local.get $i) (i32.const 5)))
        (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $skip)))
    ;; the instance field, 0 when the record ends before it
    (if (i32.le_u (i32.add (local.get $p) (i32.const 4)) (local.get $end))
      (then (local.set $index (i32.load (local.get $p)))))
    (i32.store8 (i32.const 1033)
      (if (result i32) (i32.gt_u (local.get $index) (i32.const 9))
        (then (i32.const 63))
        (else (i32.add (i32.const 48) (local.get $index)))))
    (drop (call $log (i32.const 1) (i32.const 1024) (i32.const 10)))
    (drop (call $declare
      (if (result i32) (i32.eqz (local.get $index)) (then (i32.const 1)) (else (i32.const 3)))))
    (i32.const 0))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $len) (i32.const 200))
      (then (i32.const 0xff)) (else (i32.const 1))))

  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (i32.const 2)))
