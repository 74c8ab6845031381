;; bad_export.wat: an extension exporting a known callback with the wrong
;; signature.
;;
;; Simulates: a guest exporting propolis_authenticate as
;; (i32, i32) -> i32 instead of (len: i32) -> i32. It would ALLOW (1).
;; Expects (ABI.md sections 2 and 3): valid Wasm, refused at load with an
;; error naming propolis_authenticate and both signatures, e.g.
;;   export propolis_authenticate: got (i32,i32)->i32, want (i32)->i32
;; The extension does not start, and no client is ever let in by it.

(module
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  ;; one fixed buffer at offset 4096, 60 KiB (a valid answer)
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  ;; wrong: one parameter expected
  (func (export "propolis_authenticate") (param $ptr i32) (param $len i32)
                                         (result i32)
    (i32.const 1))                                       ;; ALLOW
)
