#!/usr/bin/env bash
# Builds the libFuzzer harness (ASan + UBSan) into build/fuzz_classify.
#   fuzz/build.sh && build/fuzz_classify -max_total_time=60 fuzz/corpus
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cc=${CLANG:-clang-14}
command -v "$cc" >/dev/null || { echo "fuzz/build.sh: $cc not found (scripts/install.sh installs it)" >&2; exit 1; }
mkdir -p "$top/build"
# the dataplane's sources and flags: the same lists as the extension build
mapfile -t srcs < <(grep -v '^#' "$top/csrc/SOURCES" | sed "s|^|$top/csrc/|")
mapfile -t cflags < <(grep -v '^#' "$top/csrc/CFLAGS")
# shellcheck disable=SC2046  # pkg-config's words are meant to split
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	"${cflags[@]}" $(pkg-config --cflags libdpdk) -I"$top/csrc" \
	"$top/fuzz/fuzz_classify.c" "${srcs[@]}" $(pkg-config --libs libdpdk) -o "$top/build/fuzz_classify"
echo "fuzz/build.sh: built $top/build/fuzz_classify"
