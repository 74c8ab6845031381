#!/bin/sh
# Compiles a C extension to a wasm32-wasi reactor module with the Propolis C
# SDK (this folder on the include path):
#
#   sdk/c/build.sh OUT.wasm SOURCE.c [more sources or clang flags, e.g. -Werror]
#   sdk/c/build.sh --check     # is a clang with the wasm32-wasi target here?
#
# The compiler is $WASM_CC, else clang, else clang-14 (Debian: apt-get install
# clang lld wasi-libc libclang-rt-dev-wasm32).
set -eu
sdk=$(cd "$(dirname "$0")" && pwd)
cc=${WASM_CC:-}
if [ -z "$cc" ]; then
	for c in clang clang-14; do
		if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
	done
fi
flags="--target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Wl,--strip-all"
if [ "${1:-}" = "--check" ]; then
	[ -n "$cc" ] || { echo "clang not found"; exit 1; }
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	printf '#include "propolis.h"\nstatic int32_t s(const propolis_start *p) { return (int32_t)p->instance; }\nPROPOLIS_START(s)\n' > "$tmp/t.c"
	# shellcheck disable=SC2086
	if ! out=$("$cc" $flags -I "$sdk" -o "$tmp/t.wasm" "$tmp/t.c" 2>&1); then
		echo "$cc cannot build for wasm32-wasi: $(echo "$out" | head -n 1)"
		exit 1
	fi
	exit 0
fi
[ $# -ge 2 ] || { echo "usage: $0 OUT.wasm SOURCE.c..." >&2; exit 2; }
[ -n "$cc" ] || { echo "$0: clang not found (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)" >&2; exit 1; }
out=$1
shift
# shellcheck disable=SC2086
exec "$cc" $flags -I "$sdk" -o "$out" "$@"
