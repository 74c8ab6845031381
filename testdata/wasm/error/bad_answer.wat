;; bad_answer.wat: an extension that answers with decisions ABI.md does not
;; define for the callback.
;;
;; Simulates: a guest that mis-encodes its answers: propolis_authenticate
;; returns DISCONNECT (3), which section 3 allows only for the authorize
;; callbacks; propolis_authorize_publish returns 0x00010001 (bits 16-31 set).
;; Expects (ABI.md section 7): the module loads; each call is an invalid
;; answer: the instance is discarded, the decision fails closed (0x80), and
;; the host's call observer sees the outcome "invalid".
(module
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 3))
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (i32.const 0x10001)))
