;; bad_import.wat: an extension importing a host function with the wrong
;; signature.
;;
;; Simulates: a guest built against a drifted or mistyped ABI: it imports
;; propolis_v1.add_permission as (i32) -> i32 instead of (i32, i32) -> i32.
;; Its propolis_authenticate would call it and ALLOW (1).
;; Expects (ABI.md section 2): valid Wasm, refused at load with an error
;; naming the function, e.g.
;;   import propolis_v1.add_permission: got (i32)->i32, want (i32,i32)->i32
;; The extension does not start, and no client is ever let in by it.

(module
  (import "propolis_v1" "add_permission"
    (func $add_permission (param i32) (result i32)))   ;; wrong: (i32 i32)
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (drop (call $add_permission (i32.const 0)))
    (i32.const 1))                                       ;; ALLOW
)
