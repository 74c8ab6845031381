;; sleep_loop.wat: an extension that keeps sleeping.
;;
;; Simulates: propolis_authenticate loops on WASI poll_oneoff, each a
;; relative clock sleep of 1 s (the host caps a sleep at the call
;; deadline), without ever returning.
;; Expects: the call is stopped at its deadline, after at most one more
;; sleep (the host checks its halt flag at every loop head, and cuts a
;; sleep short once the instance is halted), not after thousands of them;
;; deny 0x80. Closing the host while it sleeps returns promptly.

(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    ;; one subscription at 0: userdata 0, tag 0 (clock), clock id 1
    ;; (monotonic), timeout 1e9 ns, relative; events written at 128
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 1000000000))
    (loop $l
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (br $l))
    (i32.const 1))   ;; ALLOW, never reached
)
