#!/usr/bin/env bash
# The fuzzers for longer than CI runs them (default 10 min each), one job per
# CPU, each from a copy of its seed corpus; prints libFuzzer's stats.
#   bench/fuzz_long.sh [SECONDS] [HARNESS...]   (fuzz_classify fuzz_dns)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-600}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(fuzz_classify fuzz_dns)
"$top/fuzz/build.sh"
for h in "${harnesses[@]}"; do
	case $h in
	fuzz_classify) seeds=corpus ;;
	fuzz_dns) seeds=corpus-dns ;;
	*) echo "bench/fuzz_long.sh: no harness $h (fuzz_classify, fuzz_dns)" >&2; exit 2 ;;
	esac
	work=$(mktemp -d)
	cp -r "$top/fuzz/$seeds" "$work/corpus"
	(cd "$work" && "$top/build/$h" -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 \
		-jobs="$(nproc)" -workers="$(nproc)" corpus)
	grep -h "stat::number_of_executed_units\|Done" "$work"/fuzz-*.log || true
	echo "bench/fuzz_long.sh: $h corpus now $(find "$work/corpus" -type f | wc -l) files in $work/corpus"
done
