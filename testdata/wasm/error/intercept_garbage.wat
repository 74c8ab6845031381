;; intercept_garbage.wat: an extension whose interceptors answer what the
;; ABI does not let them answer.
;;
;; Simulates: a guest bug in an interceptor's answer (ABI 1.2, ABI.md
;; section 3, "Decisions"), with a valid propolis_buffer:
;; - propolis_intercept_connect returns 2: DENY, which intercept_connect
;;   may not answer (NEXT only);
;; - propolis_intercept_connack returns 1: ALLOW, not an interceptor's;
;; - propolis_intercept_publish_inbound returns 0x0105: decision 5,
;;   undefined;
;; - propolis_intercept_publish_outbound returns 3: DISCONNECT, which no
;;   interceptor may answer;
;; - propolis_intercept_subscribe returns 0x7fffffff;
;; - propolis_intercept_disconnect returns 0x10000: bits 16-31 not 0.
;; Expects (ABI.md section 7): each answer is an invalid answer: the
;; instance is discarded, the failure counted and logged, and the packet
;; left as it was (interceptors never fail closed).

(module
  (memory (export "memory") 1)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 2))

  ;; one fixed buffer at offset 4096, 60 KiB
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))

  (func (export "propolis_intercept_connect") (param $len i32) (result i32)
    (i32.const 2))
  (func (export "propolis_intercept_connack") (param $len i32) (result i32)
    (i32.const 1))
  (func (export "propolis_intercept_publish_inbound") (param $len i32) (result i32)
    (i32.const 0x0105))
  (func (export "propolis_intercept_publish_outbound") (param $len i32) (result i32)
    (i32.const 3))
  (func (export "propolis_intercept_subscribe") (param $len i32) (result i32)
    (i32.const 0x7fffffff))
  (func (export "propolis_intercept_disconnect") (param $len i32) (result i32)
    (i32.const 0x10000))
)
