;; admit.wat: the conformance kit's admit-all authenticator (ABI 1.0).
;;
;; `propolis extensions check --mqtt` installs it beside an extension that
;; does not authenticate (an interceptor, an authorize_publish gate, an
;; event listener), so that the embedded broker, which refuses every
;; CONNECT without a security extension, lets the kit's clients in and the
;; extension is driven. It allows every CONNECT with no permissions (every
;; topic) and takes nothing else. Built by testdata/wasm/build.sh.

(module
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  ;; one fixed buffer at 4096, 60 KiB; 0 ("cannot") for a larger record,
  ;; which the host then fails closed
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  ;; ALLOW (1), no reason code
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1)))
