#!/usr/bin/env bash
# Builds the libFuzzer harnesses (ASan + UBSan) into build/: fuzz_classify
# (classifier, rewrite) and fuzz_dns (DNS answers in C).
#   fuzz/build.sh && build/fuzz_classify -max_total_time=60 fuzz/corpus
#                 && build/fuzz_dns -max_total_time=60 fuzz/corpus-dns
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cc=${CLANG:-clang-14}
command -v "$cc" >/dev/null || { echo "fuzz/build.sh: $cc not found (scripts/install.sh installs it)" >&2; exit 1; }
mkdir -p "$top/build"
# the dataplane's sources and flags: the same lists as the extension build
mapfile -t srcs < <(grep -v '^#' "$top/csrc/SOURCES" | sed "s|^|$top/csrc/|")
mapfile -t cflags < <(grep -v '^#' "$top/csrc/CFLAGS")
for h in fuzz_classify fuzz_dns; do
	# shellcheck disable=SC2046  # pkg-config's words are meant to split
	"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		"${cflags[@]}" $(pkg-config --cflags libdpdk) -I"$top/csrc" \
		"$top/fuzz/$h.c" "${srcs[@]}" $(pkg-config --libs libdpdk) -o "$top/build/$h"
	echo "fuzz/build.sh: built $top/build/$h"
done
