;; wat_auth.wat: a real security extension written by hand from abi/ABI.md
;; (ABI 1.0) alone, with no SDK. It guards against ABI drift: if the host
;; changes a record layout, a decision encoding or a host function signature,
;; this module stops behaving as described below.
;;
;; What it does:
;; - propolis_start: declares the callbacks authenticate|authorize_publish
;;   (mask 3) and adds no publish filter, so every PUBLISH is asked. If the
;;   host rejects the declaration it refuses to start ("declare_callbacks
;;   failed").
;; - propolis_authenticate (CONNECT record): ALLOW (1) when the user name is
;;   exactly "wat" and the password exactly "secret"; on ALLOW it also adds
;;   the CONNACK user property via=wat and sets the session expiry to 120 s.
;;   Anything else: set_reason("bad user name or password") and DENY with
;;   0x86 (0x8602).
;; - propolis_authorize_publish (PUBLISH record): topic starting with the 9
;;   bytes "readonly/": set_reason("topic is read-only") and DENY with 0x87
;;   (0x8702); topic exactly "kick": DISCONNECT with 0x98 (0x9803);
;;   anything else: NEXT (0).
;; A failing host call in a callback (negative status) is logged at level 2
;; (warn) as "wat_auth: host call failed"; the decision is unchanged.
;;
;; What a test expects: user wat/secret connects (MQTT 5: CONNACK user
;; property via=wat, session expiry 120 capped by the broker's maximum);
;; any other credentials are refused with 0x86 (3.1.1: 0x04) and reason
;; string "bad user name or password"; publishing to readonly/... is refused
;; with 0x87 and reason "topic is read-only"; publishing to "kick"
;; disconnects the client with 0x98; other publishes fall through to the
;; client's permissions (none here: allowed).
;;
;; Memory layout (2 pages = 128 KiB, exported as "memory"):
;;   0     .. 1023    unused
;;   1024  .. 1279    constant strings (data segments below)
;;   65536 .. 126975  the record buffer returned by propolis_buffer (60 KiB)
;;   126976 .. 131071 unused
;;
;; Record parsing is defensive, as section 4 asks: a field cut off by the end
;; of the record reads as its zero value (an empty string), and a string
;; length running past the end of the record is treated as empty too.

(module
  ;; ---- host functions (section 5) -------------------------------------
  (import "propolis_v1" "log"
    (func $log (param i32 i32 i32) (result i32)))
  (import "propolis_v1" "set_reason"
    (func $set_reason (param i32 i32) (result i32)))
  (import "propolis_v1" "declare_callbacks"
    (func $declare_callbacks (param i32) (result i32)))
  (import "propolis_v1" "set_session_expiry"
    (func $set_session_expiry (param i32) (result i32)))
  (import "propolis_v1" "add_connack_user_property"
    (func $add_connack_user_property (param i32 i32 i32 i32) (result i32)))

  ;; ---- memory -----------------------------------------------------------
  (memory (export "memory") 2)

  ;; The record buffer: offset 65536 (start of page 1), 61440 bytes (60 KiB).
  (global $BUF      i32 (i32.const 65536))
  (global $BUF_SIZE i32 (i32.const 61440))

  ;; ---- constant strings (offset, length) -----------------------------
  (data (i32.const 1024) "wat")                        ;; 1024, 3
  (data (i32.const 1032) "secret")                     ;; 1032, 6
  (data (i32.const 1040) "via")                        ;; 1040, 3
  (data (i32.const 1048) "bad user name or password")  ;; 1048, 25
  (data (i32.const 1080) "readonly/")                  ;; 1080, 9
  (data (i32.const 1096) "kick")                       ;; 1096, 4
  (data (i32.const 1104) "topic is read-only")         ;; 1104, 18
  (data (i32.const 1128) "declare_callbacks failed")   ;; 1128, 24
  (data (i32.const 1160) "wat_auth: host call failed") ;; 1160, 26

  ;; ---- helpers --------------------------------------------------------

  ;; The end (exclusive address) of a record of $len bytes in the buffer.
  ;; The host never writes more than the buffer holds; clamp anyway.
  (func $record_end (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (global.get $BUF_SIZE))
      (then (local.set $len (global.get $BUF_SIZE))))
    (i32.add (global.get $BUF) (local.get $len)))

  ;; The u32 (little-endian) at $pos, or 0 when its 4 bytes are not all
  ;; before $end. i32.load is little-endian and allows unaligned addresses.
  (func $u32_at (param $pos i32) (param $end i32) (result i32)
    (if (result i32)
        (i32.gt_u (i32.add (local.get $pos) (i32.const 4)) (local.get $end))
      (then (i32.const 0))
      (else (i32.load (local.get $pos)))))

  ;; 1 when the str at $pos (a u32 length, then the bytes) lies wholly
  ;; before $end, else 0. Positions stay far below 2^31 (the buffer ends at
  ;; 126976), so $pos + 4 cannot overflow; the length is compared against
  ;; the room left, unsigned, so a huge length cannot overflow either.
  (func $str_fits (param $pos i32) (param $end i32) (result i32)
    (if (result i32)
        (i32.gt_u (i32.add (local.get $pos) (i32.const 4)) (local.get $end))
      (then (i32.const 0))
      (else
        (i32.le_u (call $u32_at (local.get $pos) (local.get $end))
                  (i32.sub (local.get $end)
                           (i32.add (local.get $pos) (i32.const 4)))))))

  ;; The length of the str at $pos; 0 (its zero value) when it does not
  ;; fit. Its bytes start at $pos + 4.
  (func $str_len (param $pos i32) (param $end i32) (result i32)
    (if (result i32) (call $str_fits (local.get $pos) (local.get $end))
      (then (call $u32_at (local.get $pos) (local.get $end)))
      (else (i32.const 0))))

  ;; The position just after the str at $pos; $end when it does not fit
  ;; (every later field then reads as its zero value).
  (func $skip_str (param $pos i32) (param $end i32) (result i32)
    (if (result i32) (call $str_fits (local.get $pos) (local.get $end))
      (then (i32.add (i32.add (local.get $pos) (i32.const 4))
                     (call $u32_at (local.get $pos) (local.get $end))))
      (else (local.get $end))))

  ;; 1 when the $n bytes at $a equal the $n bytes at $b, else 0.
  (func $mem_eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ
          (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; 1 when the bytes ($p, $n) are exactly the constant ($c, $m).
  (func $bytes_eq (param $p i32) (param $n i32) (param $c i32) (param $m i32)
                  (result i32)
    (if (result i32) (i32.ne (local.get $n) (local.get $m))
      (then (i32.const 0))
      (else (call $mem_eq (local.get $p) (local.get $c) (local.get $m)))))

  ;; 1 when the bytes ($p, $n) start with the constant ($c, $m).
  (func $has_prefix (param $p i32) (param $n i32) (param $c i32) (param $m i32)
                    (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (local.get $m))
      (then (i32.const 0))
      (else (call $mem_eq (local.get $p) (local.get $c) (local.get $m)))))

  ;; Logs a warning when a host call returned a negative status.
  (func $check (param $status i32)
    (if (i32.lt_s (local.get $status) (i32.const 0))
      (then (drop (call $log (i32.const 2) (i32.const 1160) (i32.const 26))))))

  ;; ---- exports (section 3) -------------------------------------------

  ;; The marker: built against ABI 1.0.
  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; One fixed 60 KiB buffer; 0 (an invalid answer) for a bigger record.
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (global.get $BUF_SIZE))
      (then (i32.const 0))
      (else (global.get $BUF))))

  ;; START record: ignored. Declare authenticate (bit 0) and
  ;; authorize_publish (bit 1); no publish filter, so every publish is asked.
  (func (export "propolis_start") (param $len i32) (result i32)
    (if (i32.lt_s (call $declare_callbacks (i32.const 3)) (i32.const 0))
      (then
        (drop (call $set_reason (i32.const 1128) (i32.const 24)))
        (return (i32.const 1))))
    (i32.const 0))

  ;; CONNECT record:
  ;;   0  header (u32 length, u16 kind, u16 minor)      8 bytes
  ;;   8  u8 protocol_version, u8 flags, u8 will_qos, u8 reserved,
  ;;      u16 keepalive, u16 reserved, u32 session_expiry  12 bytes
  ;;   20 str client_id, str username, str password, ... (ignored)
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (local $end i32) (local $pos i32)
    (local $user i32) (local $user_len i32)
    (local $pass i32) (local $pass_len i32)
    (local.set $end (call $record_end (local.get $len)))
    (local.set $pos (i32.add (global.get $BUF) (i32.const 20)))
    ;; client_id: skipped
    (local.set $pos (call $skip_str (local.get $pos) (local.get $end)))
    ;; username
    (local.set $user (i32.add (local.get $pos) (i32.const 4)))
    (local.set $user_len (call $str_len (local.get $pos) (local.get $end)))
    (local.set $pos (call $skip_str (local.get $pos) (local.get $end)))
    ;; password
    (local.set $pass (i32.add (local.get $pos) (i32.const 4)))
    (local.set $pass_len (call $str_len (local.get $pos) (local.get $end)))

    (if (i32.and
          (call $bytes_eq (local.get $user) (local.get $user_len)
                          (i32.const 1024) (i32.const 3))     ;; "wat"
          (call $bytes_eq (local.get $pass) (local.get $pass_len)
                          (i32.const 1032) (i32.const 6)))    ;; "secret"
      (then
        ;; via=wat in the CONNACK, session expiry 120 s
        (call $check (call $add_connack_user_property
                       (i32.const 1040) (i32.const 3)          ;; "via"
                       (i32.const 1024) (i32.const 3)))        ;; "wat"
        (call $check (call $set_session_expiry (i32.const 120)))
        (return (i32.const 1))))                               ;; ALLOW

    (call $check (call $set_reason (i32.const 1048) (i32.const 25)))
    (i32.const 0x8602))                                        ;; DENY 0x86

  ;; PUBLISH record:
  ;;   0  header                                          8 bytes
  ;;   8  u8 qos, u8 flags, u16 reserved                  4 bytes
  ;;   12 str client_id, str username, str topic, str payload
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (local $end i32) (local $pos i32)
    (local $topic i32) (local $topic_len i32)
    (local.set $end (call $record_end (local.get $len)))
    (local.set $pos (i32.add (global.get $BUF) (i32.const 12)))
    ;; client_id, username: skipped
    (local.set $pos (call $skip_str (local.get $pos) (local.get $end)))
    (local.set $pos (call $skip_str (local.get $pos) (local.get $end)))
    ;; topic
    (local.set $topic (i32.add (local.get $pos) (i32.const 4)))
    (local.set $topic_len (call $str_len (local.get $pos) (local.get $end)))

    (if (call $has_prefix (local.get $topic) (local.get $topic_len)
                          (i32.const 1080) (i32.const 9))     ;; "readonly/"
      (then
        (call $check (call $set_reason (i32.const 1104) (i32.const 18)))
        (return (i32.const 0x8702))))                          ;; DENY 0x87

    (if (call $bytes_eq (local.get $topic) (local.get $topic_len)
                        (i32.const 1096) (i32.const 4))        ;; "kick"
      (then (return (i32.const 0x9803))))                      ;; DISCONNECT 0x98

    (i32.const 0))                                             ;; NEXT
)
