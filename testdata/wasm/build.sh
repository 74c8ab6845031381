#!/bin/sh
# Rebuilds every testdata/wasm/**/*.wat, and host/conformance/*.wat, into
# the .wasm beside it, with plain
# `wat2wasm FILE.wat -o FILE.wasm` (default features, no debug names: the
# output depends only on the .wat and the wabt version), then checks each
# .wasm with wasm-validate. A .wat whose first line is
# `;; wat2wasm-flags: FLAGS` (e.g. --enable-threads, for a fixture of a
# feature the host refuses) is built and validated with those flags too.
#
#   testdata/wasm/build.sh          rebuild in place
#   testdata/wasm/build.sh -check   rebuild into a temporary folder and fail
#                                   if a committed .wasm differs from its .wat
#
# Needs WABT (wat2wasm, wasm-validate): apt-get install wabt
set -eu

cd "$(dirname "$0")"

for tool in wat2wasm wasm-validate; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build.sh: $tool not found; install WABT: apt-get install wabt" >&2
		exit 1
	fi
done

check=0
case "${1:-}" in
"") ;;
-check) check=1 ;;
*) echo "usage: $0 [-check]" >&2; exit 2 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

status=0
# ../../host/conformance: the conformance kit's own module (admit.wat),
# embedded in the propolis binary.
for wat in $(find . ../../host/conformance -name '*.wat' | LC_ALL=C sort); do
	wasm="${wat%.wat}.wasm"
	out="$tmp/out.wasm"
	flags=$(sed -n '1s/^;; wat2wasm-flags: //p' "$wat")
	wat2wasm $flags "$wat" -o "$out"
	wasm-validate $flags "$out"
	if [ "$check" = 1 ]; then
		if ! cmp -s "$out" "$wasm"; then
			echo "build.sh: $wasm is not up to date with $wat" >&2
			status=1
		fi
	else
		cp "$out" "$wasm"
	fi
done
exit $status
