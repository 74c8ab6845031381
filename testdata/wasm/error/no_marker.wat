;; no_marker.wat: a module that is not a Propolis extension.
;;
;; Simulates: a Wasm module without the required marker export
;; propolis_abi_v1 (ABI.md section 2), e.g. built for another host or with
;; the SDK left out. It exports a propolis_authenticate that would ALLOW (1).
;; Expects: valid Wasm, refused at load by the host's ABI check, with an
;; error naming propolis_abi_v1. The extension does not start, and no client
;; is ever let in by it.

(module
  (memory (export "memory") 1)

  ;; one fixed buffer at offset 4096, 60 KiB
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))                                       ;; ALLOW
)
