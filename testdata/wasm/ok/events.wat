;; events.wat: an event listener, written from abi/ABI.md (ABI 1.0).
;;
;; Simulates: an extension exporting propolis_on_event, plus a
;; propolis_authenticate that ALLOWs (1) every CONNECT so clients get in
;; (with no propolis_start, it gets every callback it exports).
;; On each EVENT record it logs, at level 1 (info), the line "event N",
;; where N is the record's `event` field (offset 8, u8) as one digit:
;; 1 connection start, 2 authentication succeeded, 3 authentication failed,
;; 4 disconnect, 5 subscribe, 6 unsubscribe. A kind above 9 logs "event ?";
;; a record too short to hold the field logs "event 0" (its zero value).
;; It also counts events in a global (per instance; internal, not exported:
;; instances come and go, so the count is only a debugging aid).
;;
;; Expects: a client connecting and disconnecting makes the broker log,
;; tagged with the extension id, "event 1", "event 2" and "event 4" (in
;; that order for one client; events are asynchronous, so wait for them).
;;
;; Memory (1 page): "event ?" template at 1024, the line being built at
;; 1088, the record buffer at 4096 (60 KiB).

(module
  (import "propolis_v1" "log"
    (func $log (param i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 1024) "event ?")   ;; 7 bytes; the digit goes at index 6
  (data (i32.const 1040) "stopped")   ;; logged by propolis_stop

  (global $BUF i32 (i32.const 4096))
  (global $events (mut i32) (i32.const 0))

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (global.get $BUF))))

  ;; Let every client in, so that events happen.
  ;; Logs "stopped" (info) so a test can see the stop callback ran.
  (func (export "propolis_stop")
    (drop (call $log (i32.const 1) (i32.const 1040) (i32.const 7))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))                                       ;; ALLOW

  ;; EVENT record: 8-byte header, then u8 event at offset 8.
  (func (export "propolis_on_event") (param $len i32)
    (local $kind i32) (local $digit i32)
    (global.set $events (i32.add (global.get $events) (i32.const 1)))
    ;; the event kind, 0 when the record ends before it
    (if (i32.gt_u (local.get $len) (i32.const 8))
      (then (local.set $kind
              (i32.load8_u (i32.add (global.get $BUF) (i32.const 8))))))
    ;; one ASCII digit, or '?' (63) above 9
    (local.set $digit
      (if (result i32) (i32.gt_u (local.get $kind) (i32.const 9))
        (then (i32.const 63))
        (else (i32.add (i32.const 48) (local.get $kind)))))
    ;; copy the template to 1088 and patch the digit in
    (i64.store (i32.const 1088) (i64.load (i32.const 1024)))
    (i32.store8 (i32.const 1094) (local.get $digit))
    (drop (call $log (i32.const 1) (i32.const 1088) (i32.const 7))))
)
