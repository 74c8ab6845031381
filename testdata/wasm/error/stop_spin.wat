;; stop_spin: starts and allows every CONNECT, but propolis_stop never
;; returns. Disabling it must still take effect promptly: the host bounds
;; the stop call and closes the instance.
(module
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_stop")
    (loop $forever (br $forever)))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1)))
