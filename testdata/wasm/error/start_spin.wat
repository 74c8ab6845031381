;; start_spin: propolis_start never returns (an infinite loop).
;; The host must bound the start call (ten call deadlines, at least 2 s),
;; mark the extension failed, and go on loading the others: the broker
;; must open its listeners.
(module
  (memory (export "memory") 1)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_start") (param $len i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
  ;; never reached: answers ALLOW so a host that lets it through is caught
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1)))
