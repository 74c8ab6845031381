#!/usr/bin/env bash
# Builds and tests the Rust SDK with plain rustc (no cargo, no registry).
#
#   build.sh -find          print the rustc and Wasm target it would use;
#                           exit 1, saying why, when there is none
#   build.sh -test          the SDK's unit tests, the shared ABI vectors and
#                           the example's unit tests, natively
#   build.sh OUTDIR         the example extensions, for Wasm, into
#                           OUTDIR/<id>/ (<id>.wasm and propolis-extension.yaml)
#   build.sh -guest SRC OUT one crate (its src/lib.rs at SRC) for Wasm, into the
#                           file OUT: the test guests of testdata/
#
# The rustc used is $RUSTC if set, else the first of /usr/bin/rustc and the
# rustc in PATH whose sysroot holds the Rust standard library for
# wasm32-wasi (Debian: rustc libstd-rust-dev-wasm32) or wasm32-wasip1 (its
# name from Rust 1.78 on). The code keeps to Rust 1.63.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
examples=(rate-cap)

find_rustc() {
  local cands=()
  if [ -n "${RUSTC:-}" ]; then cands=("$RUSTC"); else
    cands=(/usr/bin/rustc)
    if command -v rustc >/dev/null 2>&1; then cands+=("$(command -v rustc)"); fi
  fi
  local r sysroot t
  for r in "${cands[@]}"; do
    [ -x "$r" ] || continue
    sysroot="$("$r" --print sysroot 2>/dev/null)" || continue
    for t in wasm32-wasi wasm32-wasip1; do
      if [ -d "$sysroot/lib/rustlib/$t/lib" ]; then
        RUSTC_BIN="$r" TARGET="$t" REACTOR="$sysroot/lib/rustlib/$t/lib/self-contained/crt1-reactor.o"
        return 0
      fi
    done
  done
  return 1
}

if ! find_rustc; then
  echo "rustc with the wasm32-wasi target not found (install rustc libstd-rust-dev-wasm32)" >&2
  exit 1
fi

# wasm_sdk builds the SDK for Wasm into $work; wasm_crate SRC OUT builds one
# cdylib crate against it.
wasm_sdk() {
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # A WASI reactor: _initialize runs once per instance (ABI.md section 2),
  # instead of the command model's constructors around every export call.
  link=()
  if [ -f "$REACTOR" ]; then link=(-C "link-arg=$REACTOR"); fi
  wrc=("$RUSTC_BIN" --edition 2021 --target "$TARGET" -C opt-level=s -C strip=debuginfo)
  "${wrc[@]}" --crate-type rlib --crate-name propolis -o "$work/libpropolis.rlib" "$here/src/lib.rs"
}

wasm_crate() {
  local name
  name="$(basename "$(dirname "$(dirname "$1")")")"
  "${wrc[@]}" --crate-type cdylib --crate-name "${name//-/_}" -L "$work" --extern propolis="$work/libpropolis.rlib" \
    "${link[@]}" -o "$2" "$1"
}

case "${1:-}" in
-find)
  echo "$RUSTC_BIN $TARGET"
  ;;
-test)
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  rc=("$RUSTC_BIN" --edition 2021 -C debuginfo=0)
  "${rc[@]}" --test --crate-name propolis -o "$work/sdk-unit" "$here/src/lib.rs"
  "$work/sdk-unit" -q
  "${rc[@]}" --crate-type rlib --crate-name propolis -o "$work/libpropolis.rlib" "$here/src/lib.rs"
  "${rc[@]}" --test -L "$work" --extern propolis="$work/libpropolis.rlib" -o "$work/sdk-vectors" "$here/tests/vectors.rs"
  PROPOLIS_ABI_TESTDATA="${PROPOLIS_ABI_TESTDATA:-$here/../../abi/testdata}" "$work/sdk-vectors" -q
  for ex in "${examples[@]}"; do
    "${rc[@]}" --test -L "$work" --extern propolis="$work/libpropolis.rlib" -o "$work/$ex-unit" "$here/examples/$ex/src/lib.rs"
    "$work/$ex-unit" -q
  done
  ;;
-guest)
  [ $# -eq 3 ] || { echo "usage: build.sh -guest SRC OUT" >&2; exit 2; }
  wasm_sdk
  mkdir -p "$(dirname "$3")"
  wasm_crate "$2" "$3"
  ;;
""|-*)
  echo "usage: build.sh -find | -test | -guest SRC OUT | OUTDIR" >&2
  exit 2
  ;;
*)
  out="$1"
  wasm_sdk
  for ex in "${examples[@]}"; do
    mkdir -p "$out/$ex"
    wasm_crate "$here/examples/$ex/src/lib.rs" "$out/$ex/$ex.wasm"
    cp "$here/examples/$ex/propolis-extension.yaml" "$out/$ex/"
  done
  ;;
esac
