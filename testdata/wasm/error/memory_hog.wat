;; memory_hog.wat: an extension that eats memory until it runs out.
;;
;; Simulates: a runaway allocator. The memory starts at 1 page with no
;; maximum; propolis_authenticate and propolis_authorize_publish grow it by
;; one page (64 KiB) at a time with memory.grow until memory.grow returns -1
;; (refused), then give up with `unreachable`, as an allocator does.
;; Expects (ABI.md section 7): memory.grow is refused at the instance memory
;; limit (manifest limits.memory, default 64 MiB = 1024 pages), not at the
;; Wasm maximum of 4 GiB; the trap that follows discards the instance (and
;; its memory) and fails closed (CONNECT: 0x80, 3.1.1: 0x05; PUBLISH: 0x80);
;; the failure is counted and logged. The broker's own memory use returns
;; to normal and other clients keep running.
;; Timing: growing one page at a time is slow in a runtime that copies the
;; memory on each grow (wazero 1.12: ~600 ms to reach 1024 pages), so with
;; the default 100 ms deadline the call may end by deadline overrun before
;; reaching the memory limit. Both fail closed; a test asserting the memory
;; limit itself should set a small limits.memory (e.g. 2 MiB) or a longer
;; limits.call_deadline.

(module
  (memory (export "memory") 1)   ;; no maximum

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  ;; Grows memory one page at a time until refused, then traps.
  (func $hog
    (loop $more
      (br_if $more
        (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (unreachable))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (call $hog)
    (unreachable))   ;; never reached

  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (call $hog)
    (unreachable))   ;; never reached
)
