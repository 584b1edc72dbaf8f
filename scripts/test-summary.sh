#!/usr/bin/env bash
# Prints what scripts/test.sh promises at its end, whatever happened before: the tests that could
# not run here (one line per test, its first reason) and
#   tests: N passed, N failed, N skipped
# each skipped test counted once, even if it wrote several skip lines.
#   scripts/test-summary.sh OUTPUT_LOG SKIP_LOG STATUS
# OUTPUT_LOG is `cargo test`'s output, SKIP_LOG the skip lines (`skipped: <test>: <why>`; may be
# absent), STATUS cargo test's exit status, which is also this script's.
# No `set -e`: a missing file or a grep without a match must not cut the summary short.
set -u
out=${1:?output log}
skips=${2:?skip log}
status=${3:?exit status}

skipped_tests=$(sed -n 's/^skipped: \([^:]*\):.*/\1/p' "$skips" 2>/dev/null | sort -u)
if [ -n "$skipped_tests" ]; then
  echo "== tests that could not run here"
  sort -u "$skips" | awk -F': ' '!seen[$2]++'
fi
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$out" 2>/dev/null | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$out" 2>/dev/null | awk '{s+=$6} END {print s+0}')
skipped=$(printf '%s' "$skipped_tests" | grep -c .)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # A target that failed to build or crashed has no result line: count it as a failure.
  failed=1
fi
# cargo counts a skipped test (it returns early) as passed.
echo "tests: $((passed - skipped)) passed, $failed failed, $skipped skipped"
exit "$status"
