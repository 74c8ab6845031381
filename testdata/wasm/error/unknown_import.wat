;; unknown_import.wat: an extension importing a host function that does not
;; exist.
;;
;; Simulates: a guest built for a later ABI (or a typo): it imports
;; propolis_v1.teleport (i32) -> i32, which no 1.x host provides. Its
;; propolis_authenticate would call it and ALLOW (1).
;; Expects (ABI.md section 2): valid Wasm, refused at load with an error
;; naming the missing host function (propolis_v1.teleport). The extension
;; does not start, and no client is ever let in by it.

(module
  (import "propolis_v1" "teleport"
    (func $teleport (param i32) (result i32)))
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (drop (call $teleport (i32.const 0)))
    (i32.const 1))                                       ;; ALLOW
)
