#!/usr/bin/env bash
# Runs a libFuzzer target for SDTUNE_FUZZ_SECONDS (default 30) on a scratch copy of the seed corpus, so the
# committed corpus never changes behind anyone's back. Prints the executions done.
set -euo pipefail
target=$1 seeds=$2
seconds=${SDTUNE_FUZZ_SECONDS:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$seeds"/* "$work"/
"$target" -max_total_time="$seconds" -print_final_stats=1 -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/" "$work" 2>"$work/log" || {
    tail -n 60 "$work/log"
    for crash in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
        [ -e "$crash" ] && { echo "reproducer ($crash):"; od -c "$crash" | head -n 20; }
    done
    exit 1
}
grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work/log" || true
