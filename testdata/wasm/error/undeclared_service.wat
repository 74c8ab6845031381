;; undeclared_service.wat: an extension that calls a host service its
;; manifest does not grant.
;;
;; Simulates: an author who imports storage_get (service storage) but
;; forgot to list storage in the manifest's services. Every
;; propolis_authorize_publish looks up the key "seen" and answers NEXT
;; whatever the status.
;; Expects: installed with a manifest without services, the host refuses
;; each call with NOT_PERMITTED (-3) and logs it; the conformance kit fails
;; its static check "services" (imports storage_get of service storage,
;; which the manifest does not grant) and its run check "authorize_publish:
;; uses only granted services".
(module
  (import "propolis_v1" "storage_get" (func $storage_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "seen")
  (func (export "propolis_abi_v1") (result i32) (i32.const 1))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authorize_publish") (param $len i32) (result i32)
    (drop (call $storage_get (i32.const 1024) (i32.const 4) (i32.const 2048) (i32.const 1024)))
    (i32.const 0)))
