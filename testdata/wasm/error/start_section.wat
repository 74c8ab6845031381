;; start_section.wat: a module whose Wasm start section never returns.
;;
;; Simulates: a start function (section 8, not _initialize or
;; propolis_start) that loops forever. It runs inside instantiation,
;; before the host can reach any instance.
;; Expects: the host does not rewrite such a module (interrupt.go) and
;; runs it under wazero's guard, so instantiation ends at the host's
;; instantiate timeout (10 s); the extension is marked failed, named in
;; the log and status; the rest load.

(module
  (memory (export "memory") 1)

  (func $spin
    (loop $l (br $l)))
  (start $spin)

  (func (export "propolis_abi_v1") (result i32)
    (i32.const 0))

  (func (export "propolis_buffer") (param $size i32) (result i32)
    (i32.const 4096))

  (func (export "propolis_authenticate") (param $len i32) (result i32)
    (i32.const 1))   ;; ALLOW: must never be reached
)
