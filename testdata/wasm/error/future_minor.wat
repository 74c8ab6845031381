;; future_minor.wat: an extension built for a newer minor ABI version.
;;
;; Simulates: a module built against ABI 1.7: its marker propolis_abi_v1
;; returns 7, newer than the host's minor version 0. Its
;; propolis_authenticate would ALLOW (1).
;; Expects (ABI.md section 2): valid Wasm, refused at load with an error
;; naming propolis_abi_v1 and the two versions (module 1.7, host 1.0). The
;; extension does not start, and no client is ever let in by it.
;; (When the host reaches ABI 1.7, raise the marker above the host's minor.)

(module
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 7))                                       ;; ABI 1.7

  ;; one fixed buffer at offset 4096, 60 KiB
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))                                       ;; ALLOW
)
