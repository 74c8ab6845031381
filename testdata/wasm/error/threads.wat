;; wat2wasm-flags: --enable-threads
;; threads.wat: a module using the threads proposal (a shared memory and an
;; atomic load), which Propolis does not support (ABI.md section 2, "Wasm
;; features"). Otherwise a valid security extension that ALLOWs (1) every
;; CONNECT, so a host that loaded it would let clients in.
;;
;; Expects: refused at load with an error naming the extension's module
;; and the feature ("threads"); the rest of the folder loads.
;; The first line gives build.sh the wat2wasm flags it needs.

(module
  (memory (export "memory") 1 1 shared)
  (func (export "propolis_abi_v1") (result i32) (i32.const 0))
  (func (export "propolis_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $size) (i32.const 61440))
      (then (i32.const 0)) (else (i32.const 4096))))
  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (drop (i32.atomic.load (i32.const 0)))
    (i32.const 1)))
