#!/bin/sh
# SPDX-License-Identifier: MIT
# Run a libFuzzer target for a bounded time from the seed corpus in the tree;
# what it finds goes to a temporary directory, never into the source tree.
# The fuzzer's status is ours: non-zero when it found a crash, a leak or a hang.
# usage: run.sh FUZZER SECONDS SEED_DIR
set -u
work=$(mktemp -d "${TMPDIR:-/tmp}/sk-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/corpus"
"$1" -max_total_time="$2" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$work/" "$work/corpus" "$3" \
    >"$work/log" 2>&1
status=$?
grep -E "stat::number_of_executed_units|stat::new_units_added" "$work/log"
if [ "$status" -ne 0 ]; then
    tail -n 60 "$work/log"
    for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-*; do
        [ -e "$f" ] && echo "input: $(od -An -c "$f" | head -c 2000)"
    done
fi
exit "$status"
