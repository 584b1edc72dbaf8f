#!/usr/bin/env bash
# Prints what scripts/test.sh promises at its end, whatever happened before: the tests that could
# not run here (one line per test, its first reason) and
#   tests: N passed, N failed, N skipped [(K in the kernel lane)]
# each skipped test counted once, even if it wrote several skip lines.
#   scripts/test-summary.sh OUTPUT_LOG SKIP_LOG STATUS [LANE_RESULTS LANE_STATUS]
# OUTPUT_LOG is `cargo test`'s output, SKIP_LOG the skip lines (`skipped: <test>: <why>`; may be
# absent), STATUS cargo test's exit status. LANE_RESULTS (scripts/kernel-lane/suite.sh) has
# `passed: <test>`, `failed: <test>` or `skipped: <test>: <why>` per kernel-lane test, LANE_STATUS
# is the lane's exit status (2: the lane could not run here). A test that skipped on the host and
# passed in the lane counts as passed, once. Exit status: STATUS, else 1 if the lane failed.
# No `set -e`: a missing file or a grep without a match must not cut the summary short.
set -u
out=${1:?output log}
skips=${2:?skip log}
status=${3:?exit status}
lane=${4:-}
lane_status=${5:-0}

names() { awk -F': ' -v k="$1" '$1 == k && NF > 1 {print $2}' "$2" 2>/dev/null | sort -u; }
host_skipped=$(names skipped "$skips")
lane_passed=$(names passed "$lane")
lane_failed=$(names failed "$lane")
# Skipped: in the lane (its reason first) or on the host, unless the lane ran it.
skip_lines=$( { grep '^skipped: ' "$lane" 2>/dev/null; sort -u "$skips" 2>/dev/null; } |
  awk -F': ' -v p="$lane_passed"$'\n'"$lane_failed" '
    BEGIN { n = split(p, a, "\n"); for (i = 1; i <= n; i++) ran[a[i]] = 1 }
    NF && !($2 in ran) && !seen[$2]++')
if [ -n "$skip_lines" ]; then
  echo "== tests that could not run here"
  printf '%s\n' "$skip_lines"
fi
count() { printf '%s' "$1" | grep -c .; }
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$out" 2>/dev/null | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$out" 2>/dev/null | awk '{s+=$6} END {print s+0}')
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # A target that failed to build or crashed has no result line: count it as a failure.
  failed=1
fi
if [ -n "$lane_failed" ]; then
  echo "== failed in the kernel lane (output above and in target/kernel-lane-output.log)"
  printf '%s\n' "$lane_failed"
fi
failed=$((failed + $(count "$lane_failed")))
if [ "$lane_status" -ne 0 ] && [ "$lane_status" -ne 2 ]; then
  [ -n "$lane_failed" ] || failed=$((failed + 1)) # the guest hung or crashed: no test result
  [ "$status" -ne 0 ] || status=1
fi
# cargo counts a test that skipped on the host (it returns early) as passed.
passed=$((passed - $(count "$host_skipped") + $(count "$lane_passed")))
line="tests: $passed passed, $failed failed, $(count "$skip_lines") skipped"
[ -z "$lane" ] || line="$line ($(count "$lane_passed") in the kernel lane)"
echo "$line"
exit "$status"
