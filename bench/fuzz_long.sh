#!/usr/bin/env bash
# The classifier/rewrite fuzzer for longer than CI runs it (default 10 min),
# one job per CPU, from a copy of the seed corpus; prints libFuzzer's stats.
#   bench/fuzz_long.sh [SECONDS]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-600}
"$top/fuzz/build.sh"
work=$(mktemp -d)
cp -r "$top/fuzz/corpus" "$work/corpus"
cd "$work"
"$top/build/fuzz_classify" -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 \
	-jobs="$(nproc)" -workers="$(nproc)" corpus
grep -h "stat::number_of_executed_units\|Done" fuzz-*.log || true
echo "bench/fuzz_long.sh: corpus now $(find corpus -type f | wc -l) files in $work/corpus"
